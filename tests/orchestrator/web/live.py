"""A live orchestrator over HTTP for the page tests: uvicorn in a thread serving ``create_app`` with the in-process
stage runner (``tests/orchestrator/doubles.py``), so the browser and the generated snippets talk to a real HTTP
server in seconds, without models."""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx
import uvicorn

from orchestrator.app import create_app
from tests.orchestrator.doubles import StageRunnerDouble
from tests.orchestrator.support import make_settings


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@contextmanager
def live_orchestrator(data_dir: Path, **overrides: Any) -> Iterator[str]:
    """Yields the base URL of an orchestrator on a free port (users alice/bob, API key ``key-carol-123``)."""
    settings = make_settings(data_dir, poll_interval_sec=1, **overrides)
    app = create_app(settings, gateway=StageRunnerDouble(step_delay=0.01))
    port = _free_port()
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning", lifespan="on"))
    thread = threading.Thread(target=server.run, name="live-orchestrator", daemon=True)
    thread.start()
    base = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        try:
            if httpx.get(base + "/health", timeout=1).status_code == 200:
                break
        except httpx.HTTPError:
            pass
        time.sleep(0.1)
    else:
        raise RuntimeError("the live orchestrator did not start")
    try:
        yield base
    finally:
        server.should_exit = True
        thread.join(timeout=15)
