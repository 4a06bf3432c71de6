"""A real orchestrator process for the multi-process tests: the full app under uvicorn on a free port, with the
in-process stage runner (``doubles.StageRunnerDouble``) as its gateway, so that it runs jobs without models.

Usage: python -m tests.orchestrator.worker_process SETTINGS_JSON GATEWAY_JSON
Prints ``READY <port>`` once serving; SIGTERM stops it gracefully (running jobs go back to the queue), SIGKILL
simulates a crash.
"""

from __future__ import annotations

import json
import socket
import sys
from pathlib import Path

import uvicorn

from orchestrator.app import create_app
from orchestrator.settings import Settings
from tests.orchestrator.doubles import StageRunnerDouble


def main() -> None:
    settings = Settings(**json.loads(sys.argv[1]))
    options = json.loads(sys.argv[2])
    gateway = StageRunnerDouble(
        step_delay=float(options.get("step_delay", 0.0)),
        log_path=Path(options["log_path"]) if options.get("log_path") else None,
        name=f"double-{options.get('name', 'worker')}",
    )
    hold = options.get("hold")  # a stage to stay in until the process is killed (the crash drills)
    if hold == "post":
        import time

        from orchestrator.services.jobs import post

        encode = post.encode_audio

        def stuck_encode(*args, **kwargs):  # type: ignore[no-untyped-def]
            time.sleep(3600)
            return encode(*args, **kwargs)

        post.encode_audio = stuck_encode  # type: ignore[assignment]
    elif hold:
        gateway.gate(hold)  # never opened: the model's stream blocks before its final event
    app = create_app(settings, gateway=gateway)
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    server = uvicorn.Server(uvicorn.Config(app, log_level="warning", lifespan="on"))

    original_startup = server.startup

    async def startup(sockets=None):  # type: ignore[no-untyped-def]
        await original_startup(sockets=sockets)
        print(f"READY {port}", flush=True)

    server.startup = startup  # type: ignore[method-assign]
    server.run(sockets=[sock])


if __name__ == "__main__":
    main()
