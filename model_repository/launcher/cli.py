"""``tritone triton``: serve a model repository with the bundled tritonserver until interrupted."""

from __future__ import annotations

import argparse
import logging
import signal
import sys
import threading
from pathlib import Path
from types import FrameType

logger = logging.getLogger(__name__)


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = subparsers.add_parser(
        "triton",
        help="serve a model repository with the bundled tritonserver",
        description="Start tritonserver (explicit model control) on a model repository, print its URLs once ready, "
        "and run until SIGINT/SIGTERM. The server dies with this command, even if it is killed with SIGKILL.",
    )
    parser.add_argument("--repository", type=Path, required=True, help="model repository folder")
    parser.add_argument("--http-port", type=int, default=None, help="HTTP port (default: a free port)")
    parser.add_argument("--grpc-port", type=int, default=None, help="gRPC port (default: a free port)")
    parser.add_argument("--metrics-port", type=int, default=None, help="metrics port (default: a free port)")
    parser.add_argument("--address", default="127.0.0.1", help="address to bind (default 127.0.0.1; 0.0.0.0: all)")
    parser.add_argument("--log-file", type=Path, default=None, help="server log (default: a file in a temp folder)")
    parser.add_argument(
        "--model",
        action="append",
        dest="models",
        metavar="NAME",
        help="model to load at start (repeatable; default: every model in the repository)",
    )
    parser.add_argument("--timeout", type=float, default=180.0, help="seconds to wait for readiness (default 180)")
    parser.add_argument(
        "--grace",
        type=float,
        default=10.0,
        help="seconds SIGINT/SIGTERM gives the server to unload before it is killed (default 10)",
    )
    parser.set_defaults(func=run_triton)


def run_triton(args: argparse.Namespace) -> int:
    from model_repository.launcher.server import TritonServer

    repository: Path = args.repository
    if not repository.is_dir():
        raise FileNotFoundError(f"model repository folder {repository} does not exist")
    stop = threading.Event()
    received: list[int] = []

    def on_signal(signum: int, frame: FrameType | None) -> None:
        received.append(signum)
        stop.set()

    previous = {sig: signal.signal(sig, on_signal) for sig in (signal.SIGINT, signal.SIGTERM)}
    server = TritonServer(
        repository,
        http_port=args.http_port,
        grpc_port=args.grpc_port,
        metrics_port=args.metrics_port,
        log_path=args.log_file,
        model_control="explicit",
        load_models=args.models or ("*",),
        address=args.address,
    )
    try:
        server.start(timeout=args.timeout)
        print(f"tritonserver ready (pid {server.pid})", flush=True)
        print(f"  http:    {server.http_url}", flush=True)
        print(f"  grpc:    {server.grpc_url}", flush=True)
        print(f"  metrics: {server.metrics_url}", flush=True)
        print(f"  log:     {server.log_path}", flush=True)
        while not stop.wait(0.5):
            if not server.is_running():
                raise RuntimeError(f"tritonserver exited unexpectedly; log {server.log_path}:\n{server.log_tail()}")
        logger.info("received signal %s; stopping tritonserver", received[0] if received else "?")
    finally:
        server.stop(timeout=args.grace)
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    print("tritonserver stopped", flush=True)
    return 0


def main(argv: list[str] | None = None) -> int:
    """``python -m model_repository.launcher.cli triton ...``: the same command without the other ``tritone``
    commands."""
    parser = argparse.ArgumentParser(prog="python -m model_repository.launcher.cli")
    register(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    try:
        return int(args.func(args))
    except (FileNotFoundError, RuntimeError) as exc:
        print(f"tritone {args.command}: error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
