"""Child processes that never outlive their launcher, free ports, and process-group clean-up.

:func:`spawn` starts a child in its own session (so that stopping it can take its whole group, Python-backend stubs
included) that nevertheless dies with the launcher, whatever kills the launcher — ``kill -9`` from a supervisor
included: the child asks the kernel for ``SIGKILL`` when its parent goes (``prctl(PR_SET_PDEATHSIG)``, Linux). The
kernel ties that to the *thread* that forked, so every child is forked by one long-lived spawner thread, never by a
short-lived worker thread (``asyncio.to_thread``) whose exit would kill the child early. A child whose parent died
between fork and ``prctl`` notices (its parent pid changed) and exits. The server's own children (the stubs) watch
their parent and exit when it is gone.
"""

from __future__ import annotations

import concurrent.futures
import ctypes
import logging
import os
import queue
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from typing import Any

logger = logging.getLogger(__name__)

_PR_SET_PDEATHSIG = 1


def _libc_prctl() -> Callable[..., int] | None:
    if not sys.platform.startswith("linux"):
        return None
    try:
        return ctypes.CDLL(None, use_errno=True).prctl  # type: ignore[no-any-return]
    except (OSError, AttributeError):  # pragma: no cover - not glibc/musl
        return None


_PRCTL = _libc_prctl()  # resolved before any fork: the child only calls it


def _die_with_parent(parent_pid: int) -> Callable[[], None]:
    def preexec() -> None:  # runs in the child between fork and exec: no allocation-heavy work here
        if _PRCTL is not None:
            _PRCTL(_PR_SET_PDEATHSIG, signal.SIGKILL)
        if os.getppid() != parent_pid:  # the launcher died before prctl took effect
            os._exit(1)

    return preexec


class _Spawner:
    """One daemon thread that forks every child (the parent-death signal follows the forking thread)."""

    def __init__(self) -> None:
        self._jobs: queue.SimpleQueue[tuple[Callable[[], Any], concurrent.futures.Future[Any]]] = queue.SimpleQueue()
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()

    def _run(self) -> None:
        while True:
            fn, future = self._jobs.get()
            if not future.set_running_or_notify_cancel():
                continue
            try:
                future.set_result(fn())
            except BaseException as exc:  # handed to the caller
                future.set_exception(exc)

    def call(self, fn: Callable[[], Any]) -> Any:
        with self._lock:
            if self._thread is None or not self._thread.is_alive():
                self._thread = threading.Thread(target=self._run, name="tritone-spawner", daemon=True)
                self._thread.start()
        future: concurrent.futures.Future[Any] = concurrent.futures.Future()
        self._jobs.put((fn, future))
        return future.result()


_SPAWNER = _Spawner()


def spawn(argv: list[str], **popen_kwargs: Any) -> subprocess.Popen[bytes]:
    """``subprocess.Popen(argv, start_new_session=True, **popen_kwargs)`` whose child gets SIGKILL when this process
    dies (any way). ``preexec_fn`` and ``start_new_session`` are set here."""
    if "preexec_fn" in popen_kwargs or "start_new_session" in popen_kwargs:
        raise TypeError("spawn() sets preexec_fn and start_new_session itself; do not pass them")
    parent = os.getpid()

    def start() -> subprocess.Popen[bytes]:
        return subprocess.Popen(argv, start_new_session=True, preexec_fn=_die_with_parent(parent), **popen_kwargs)

    process: subprocess.Popen[bytes] = _SPAWNER.call(start)
    return process


# --------------------------------------------------------------------------------------------------------------------
# Ports
# --------------------------------------------------------------------------------------------------------------------


def free_port() -> int:
    """A TCP port on 127.0.0.1 that was free a moment ago."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def free_ports(count: int) -> list[int]:
    """``count`` distinct free ports (the sockets are held open together so the OS cannot hand one out twice)."""
    socks = []
    try:
        for _ in range(count):
            sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            socks.append(sock)
            sock.bind(("127.0.0.1", 0))
        return [int(s.getsockname()[1]) for s in socks]
    finally:
        for sock in socks:
            sock.close()


# --------------------------------------------------------------------------------------------------------------------
# Process groups
# --------------------------------------------------------------------------------------------------------------------


def wait_group_gone(pgid: int, wait: float = 5.0) -> None:
    """Wait until no process of ``pgid`` remains (SIGKILL again meanwhile), at most ``wait`` seconds."""
    deadline = time.monotonic() + wait
    while True:
        try:
            os.killpg(pgid, signal.SIGKILL)
        except ProcessLookupError:
            return
        except PermissionError:  # pragma: no cover - the id was reused by a foreign process
            return
        if time.monotonic() > deadline:
            logger.warning("process group %s still has members after SIGKILL (zombies not reaped by init?)", pgid)
            return
        time.sleep(0.05)


def group_alive(pgid: int) -> bool:
    """True while any process of group ``pgid`` exists (signal 0 probes without touching it)."""
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # pragma: no cover - reused by a foreign process
        return True
    return True
