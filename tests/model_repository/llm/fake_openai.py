"""A small OpenAI-compatible chat server for tests: ``/v1/chat/completions`` with ``stream: true`` (server-sent
events), on a free port of 127.0.0.1, answering a fixed song plan (requests with ``response_format``) or a fixed
brief (others)."""

from __future__ import annotations

import json
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from model_repository.launcher.server import free_port

PLAN = {
    "title": "Red Bicycle",
    "lyrics": "[Verse 1]\nWheels on the coast road\nSalt in the air\n[Chorus]\nRide to the sea\n",
    "caption": "lo-fi chillhop, warm strings",
    "bpm": 88,
    "key_scale": "D minor",
    "time_signature": 4,
    "duration": 100,
}
BRIEF = "A girl rides a red bicycle along the coast at dawn."


class FakeOpenAI:
    """``/v1/chat/completions`` with ``stream: true`` (server-sent events). ``fail_first`` answers HTTP 500 to the
    first request; ``delay_s`` waits before answering."""

    def __init__(self, *, fail_first: bool = False, delay_s: float = 0.0) -> None:
        self.fail_first = fail_first
        self.delay_s = delay_s
        self.requests: list[dict[str, Any]] = []
        owner = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: Any) -> None:
                pass

            def do_POST(self) -> None:  # noqa: N802 - http.server's naming
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                owner.requests.append({"path": self.path, "body": body})
                time.sleep(owner.delay_s)
                if owner.fail_first and len(owner.requests) == 1:
                    self.send_error(500, "warming up")
                    return
                try:
                    self._stream(json.dumps(PLAN) if "response_format" in body else BRIEF)
                except (BrokenPipeError, ConnectionResetError):
                    pass  # the client gave up (the timeout test)

            def _stream(self, text: str) -> None:
                self.send_response(200)
                self.send_header("Content-Type", "text/event-stream")
                self.end_headers()
                for i in range(0, len(text), 7):
                    chunk = {"choices": [{"index": 0, "delta": {"content": text[i : i + 7]}}]}
                    self.wfile.write(f"data: {json.dumps(chunk)}\n\n".encode())
                    self.wfile.flush()
                usage = {"choices": [], "usage": {"prompt_tokens": 21, "completion_tokens": 13}}
                self.wfile.write(f"data: {json.dumps(usage)}\n\ndata: [DONE]\n\n".encode())

        self.server = ThreadingHTTPServer(("127.0.0.1", free_port()), Handler)
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}/v1"

    def __enter__(self) -> FakeOpenAI:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.shutdown()
        self.server.server_close()
        self.thread.join(5)
