"""No orphan tritonserver: ``tritone triton`` and ``tritone serve`` killed with SIGKILL (what a supervisor does) take
their tritonserver with them (the parent-death signal, ``model_repository/launcher/process.py``), and its ports are
free again."""

from __future__ import annotations

import os
import re
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.markers import needs_triton
from tests.orchestrator.toy_models import write_echo_repository

pytestmark = [pytest.mark.triton, needs_triton]
ROOT = Path(__file__).resolve().parents[2]


def _tritonservers(grpc_port: int) -> list[int]:
    """Live (not zombie) tritonserver processes serving ``grpc_port``."""
    return _live(f"--grpc-port={grpc_port}")


def _live(needle: str) -> list[int]:
    """Live (not zombie) processes whose command line contains ``needle``."""
    found = []
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            cmdline = (proc / "cmdline").read_bytes().split(b"\0")
            state = (proc / "stat").read_text().rsplit(")", 1)[1].split()[0]
        except OSError:
            continue
        if state != "Z" and any(needle.encode() in arg for arg in cmdline):
            found.append(int(proc.name))
    return found


def _port_free(port: int) -> bool:
    with socket.socket() as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            return False
        return True


def _launch(argv: list[str], pattern: str, log: Path, timeout: float = 120) -> tuple[subprocess.Popen[str], int]:
    """Start ``argv``; return it and the gRPC port its output names (``pattern`` has one group)."""
    proc = subprocess.Popen(argv, cwd=ROOT, stdout=subprocess.PIPE, stderr=open(log, "w"), text=True)
    deadline = time.monotonic() + timeout
    assert proc.stdout is not None
    for line in proc.stdout:
        match = re.search(pattern, line)
        if match:
            return proc, int(match.group(1))
        if time.monotonic() > deadline:
            break
    proc.kill()
    raise AssertionError(f"{argv[3]} did not report its server: {log.read_text()[-3000:]}")


def _killed_takes_the_server(proc: subprocess.Popen[str], grpc_port: int, repo: Path) -> None:
    assert _tritonservers(grpc_port), "no tritonserver found for the port the command printed"
    os.kill(proc.pid, signal.SIGKILL)  # the launcher only: no handler runs, no clean-up code
    proc.wait(10)
    deadline = time.monotonic() + 20
    while _tritonservers(grpc_port) and time.monotonic() < deadline:
        time.sleep(0.1)
    left = _tritonservers(grpc_port)
    for pid in left:  # do not leave it behind even when the test fails
        os.kill(pid, signal.SIGKILL)
    assert not left, f"tritonserver {left} outlived its SIGKILLed launcher"
    deadline = time.monotonic() + 10
    while not _port_free(grpc_port) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert _port_free(grpc_port), f"port {grpc_port} is still taken"
    # The Python-backend stubs notice their server is gone by themselves (a heartbeat; ~10 s).
    deadline = time.monotonic() + 45
    while _live(str(repo)) and time.monotonic() < deadline:
        time.sleep(0.5)
    stubs = _live(str(repo))
    for pid in stubs:
        os.kill(pid, signal.SIGKILL)
    assert not stubs, f"backend stubs {stubs} outlived their server"


def test_tritone_triton_sigkilled_leaves_no_tritonserver(tmp_path: Path) -> None:
    repo = write_echo_repository(tmp_path / "repository")
    argv = [sys.executable, "-m", "orchestrator.cli", "triton", "--repository", str(repo), "--model", "echo"]
    proc, grpc_port = _launch(argv, r"grpc:\s+127\.0\.0\.1:(\d+)", tmp_path / "launcher.log")
    try:
        _killed_takes_the_server(proc, grpc_port, repo)
    finally:
        if proc.poll() is None:
            proc.kill()


def test_tritone_serve_sigkilled_leaves_no_tritonserver(tmp_path: Path) -> None:
    repo = write_echo_repository(tmp_path / "repository")
    argv = [
        sys.executable,
        "-m",
        "orchestrator.cli",
        "serve",
        "--repository",
        str(repo),
        "--model",
        "echo",
        "--port",
        "0",
        "--data-dir",
        str(tmp_path / "data"),
        "--log-level",
        "warning",
    ]
    proc, grpc_port = _launch(argv, r"tritonserver ready: grpc 127\.0\.0\.1:(\d+)", tmp_path / "serve.log")
    try:
        _killed_takes_the_server(proc, grpc_port, repo)
    finally:
        if proc.poll() is None:
            proc.kill()
