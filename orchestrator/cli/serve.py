"""``tritone serve``: tritonserver on a model repository (unless ``--triton-url`` points at running ones) plus the
orchestrator under uvicorn; Ctrl-C stops both. :func:`orchestrator_process` runs it in a child process (the demo, the
end-to-end tests).

A dev-machine convenience: the launcher (``model_repository.launcher``) is imported here, inside the commands, never
by the service code.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import signal
import subprocess
import sys
import time
import types
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

DEFAULT_REPOSITORY = Path("build/repository")


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = subparsers.add_parser(
        "serve",
        help="run the stack: tritonserver on a model repository + the orchestrator (API and web page)",
        description="Start tritonserver on --repository (unless --triton-url names running servers), then the "
        "orchestrator with uvicorn. Ctrl-C stops both. Other settings come from TRITONE_* environment variables.",
    )
    parser.add_argument(
        "--repository", type=Path, default=DEFAULT_REPOSITORY, help=f"model repository ({DEFAULT_REPOSITORY})"
    )
    parser.add_argument("--host", default="127.0.0.1", help="address for the orchestrator (127.0.0.1; 0.0.0.0: all)")
    parser.add_argument("--port", type=int, default=8080, help="orchestrator port (8080; 0: a free port)")
    parser.add_argument(
        "--triton-url",
        action="append",
        dest="triton_urls",
        metavar="HOST:PORT",
        help="gRPC address of a running tritonserver (repeatable); skips starting one",
    )
    parser.add_argument("--data-dir", type=Path, default=None, help="audio, covers and SQLite (TRITONE_DATA_DIR)")
    parser.add_argument("--triton-log", type=Path, default=None, help="tritonserver log file (default: temp folder)")
    parser.add_argument("--model", action="append", dest="models", metavar="NAME", help="load only these models")
    parser.add_argument("--log-level", default="info", choices=["debug", "info", "warning", "error"])
    parser.add_argument("--log-json", action="store_true", help="one JSON object per log line (with request_id)")
    parser.set_defaults(func=run_serve)


def _settings(**overrides: Any):  # -> Settings
    """Settings from TRITONE_* environment variables, with the command line's values on top."""
    from orchestrator.settings import Settings

    # Keyword arguments win over the environment; the environment fills in everything else.
    return Settings(**{k: v for k, v in overrides.items() if v is not None})


def _make_app(settings):  # -> FastAPI
    try:
        from orchestrator.app import create_app
    except ImportError as exc:
        raise RuntimeError(f"the orchestrator app is not available ({exc}); is orchestrator/app.py installed?") from exc
    return create_app(settings)


@contextlib.contextmanager
def triton_server(
    repository: Path, *, log_path: Path | None, models: Sequence[str] | None, grace_s: float = 10.0
) -> Iterator[Any]:
    from model_repository.launcher.server import TritonServer

    if not repository.is_dir():
        raise FileNotFoundError(
            f"model repository {repository} does not exist; make one with "
            f"`tritone export --preset tiny --target cpu --out {repository}` or pass --triton-url"
        )
    server = TritonServer(repository, log_path=log_path, model_control="explicit", load_models=models or ("*",))
    print(f"starting tritonserver on {repository} …", file=sys.stderr, flush=True)
    try:
        server.start()
        print(f"tritonserver ready: grpc {server.grpc_url}, http {server.http_url}, log {server.log_path}", flush=True)
        yield server
    finally:
        server.stop(timeout=grace_s)
        print("tritonserver stopped", file=sys.stderr, flush=True)


def run_serve(args: argparse.Namespace) -> int:
    import uvicorn

    from model_repository.launcher.server import free_port

    def interrupt(signum: int, frame: types.FrameType | None) -> None:
        raise KeyboardInterrupt

    port = args.port or free_port()
    _configure_logging(args.log_level, json_lines=args.log_json)
    # SIGTERM behaves like Ctrl-C: uvicorn shuts down gracefully and re-raises the signal; this handler turns it into
    # KeyboardInterrupt so that tritonserver is stopped too (the default action would kill only this process).
    previous = signal.signal(signal.SIGTERM, interrupt)
    try:
        with contextlib.ExitStack() as stack:
            urls = args.triton_urls
            grace_s = _settings().shutdown_grace_s
            if not urls:
                triton = stack.enter_context(
                    triton_server(args.repository, log_path=args.triton_log, models=args.models, grace_s=grace_s)
                )
                urls = [triton.grpc_url]
            settings = _settings(triton_urls=urls, data_dir=args.data_dir, listen_host=args.host)
            app = _make_app(settings)
            print(f"orchestrator: http://{args.host}:{port}/  (API docs /docs; Triton {', '.join(urls)})", flush=True)
            # Open connections get the grace period; the app's own shutdown (jobs handed back) is bounded by it too.
            config = uvicorn.Config(
                app,
                host=args.host,
                port=port,
                log_level=args.log_level,
                lifespan="on",
                timeout_graceful_shutdown=max(1, int(grace_s)),
            )
            uvicorn.Server(config).run()
    except KeyboardInterrupt:
        pass  # a requested stop: everything above has been shut down by now
    finally:
        signal.signal(signal.SIGTERM, previous)
    print("stopped", flush=True)
    return 0


def _configure_logging(level: str, *, json_lines: bool) -> None:
    """The orchestrator's log lines with their request id (``services/logcontext.py``), plain or JSON."""
    import logging

    from orchestrator.services import logcontext

    logcontext.install()
    handler = logging.StreamHandler()
    handler.setFormatter(logcontext.JsonFormatter() if json_lines else logging.Formatter(logcontext.LOG_FORMAT))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())


@contextlib.contextmanager
def orchestrator_process(
    *,
    triton_urls: Sequence[str],
    data_dir: Path,
    api_key: str,
    user: str = "demo",
    log_path: Path,
    timeout_s: float = 90.0,
    extra_env: dict[str, str] | None = None,
) -> Iterator[str]:
    """``tritone serve --triton-url …`` in a child process on a free port, with an API key for ``user`` (and any
    other ``TRITONE_*`` settings in ``extra_env``); yields the base URL once ``/health`` answers, and stops it
    (SIGINT, then SIGKILL) on exit."""
    import httpx

    from model_repository.launcher.process import spawn
    from model_repository.launcher.server import free_port

    port = free_port()
    argv = [
        sys.executable,
        "-m",
        "orchestrator.cli",
        "serve",
        "--port",
        str(port),
        "--data-dir",
        str(data_dir),
        "--log-level",
        "warning",
    ]
    for url in triton_urls:
        argv += ["--triton-url", url]
    env = {**os.environ, "TRITONE_API_KEYS": json.dumps({api_key: user}), **(extra_env or {})}
    log_path.parent.mkdir(parents=True, exist_ok=True)
    with log_path.open("ab") as log:
        # spawn: its own session (stopped as a group) that dies with this process, even on SIGKILL.
        proc = spawn(argv, stdout=log, stderr=subprocess.STDOUT, env=env)
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + timeout_s
        while True:
            if proc.poll() is not None:
                tail = log_path.read_text(errors="replace")[-3000:]
                raise RuntimeError(f"the orchestrator exited with code {proc.returncode}; log {log_path}:\n{tail}")
            try:
                if httpx.get(f"{base}/health", timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if time.monotonic() > deadline:
                raise RuntimeError(f"the orchestrator did not answer on {base} within {timeout_s:g} s; log {log_path}")
            time.sleep(0.25)
        yield base
    finally:
        _stop_process(proc)


def _stop_process(proc: subprocess.Popen[bytes], wait_s: float = 20.0) -> None:
    if proc.poll() is None:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGINT)
        try:
            proc.wait(wait_s)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(5)
