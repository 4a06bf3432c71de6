"""Start and stop a real ``tritonserver``: the stock 2.51 binary bundled in the ``nvidia-pytriton`` wheel.

The wheel ships the server, the Python backend and one backend stub per CPython version, but not in the layout the
server expects. :func:`prepare_backend_dir` assembles ``<cache>/<pytriton version>-py3.11/python/`` once (the backend
library plus the stub for this interpreter, exec bits kept) and the server is pointed at it with
``--backend-directory``. The stub embeds the system ``libpython3.11.so.1.0`` and takes its interpreter from ``PATH``,
so this interpreter's ``bin`` goes first on ``PATH``: model code then imports this environment's packages.

Typical use (tests and the ``tritone triton`` command)::

    with TritonServer(repo, load_models=["dit"]) as server:
        client = tritonclient.http.InferenceServerClient(server.http_url)
        ...

Every server runs in its own process group; :meth:`TritonServer.stop` interrupts it, waits, then kills whatever is
left of the group (Python-backend stubs included), so nothing outlives a test. The server also dies with the process
that started it, even one killed with SIGKILL (``process.spawn``: the parent-death signal), so a supervisor's
``kill -9`` of ``tritone triton`` or ``tritone serve`` leaves no orphan holding the ports.
"""

from __future__ import annotations

import atexit
import contextlib
import ctypes.util
import importlib.metadata
import importlib.util
import logging
import os
import shutil
import signal
import subprocess
import sys
import sysconfig
import tempfile
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Literal

from model_repository.launcher.http_api import TritonHttpApi
from model_repository.launcher.process import free_port, free_ports, spawn, wait_group_gone

__all__ = ["TritonInstall", "TritonServer", "find_triton", "free_port", "prepare_backend_dir"]

logger = logging.getLogger(__name__)

PYTHON_VERSION = f"{sys.version_info.major}.{sys.version_info.minor}"
_LIBPYTHON = f"libpython{PYTHON_VERSION}.so.1.0"
_PYTRITON_DIST = "nvidia-pytriton"
# How much of the server log a start-up failure quotes.
_LOG_TAIL_CHARS = 4000
# How often start() polls readiness, in seconds.
_POLL_S = 0.1
# Start-up retries when an automatically chosen port was taken by someone else between picking and binding.
_PORT_RETRIES = 3

ModelControl = Literal["none", "explicit", "poll"]


# --------------------------------------------------------------------------------------------------------------------
# Locating the bundled server and preparing its backend directory
# --------------------------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class TritonInstall:
    """Where the pieces of the bundled server live."""

    version: str  # the nvidia-pytriton wheel version
    tritonserver: Path  # the server binary
    libs: Path  # the wheel's shared libraries, for LD_LIBRARY_PATH
    python_backend: Path  # backends/python in the wheel (libtriton_python.so + triton_python_backend_utils.py)
    stub: Path  # triton_python_backend_stub for this interpreter's version


def find_triton() -> TritonInstall:
    """Locate the server in the installed ``nvidia-pytriton`` wheel; raise ``RuntimeError`` saying what is missing."""
    spec = importlib.util.find_spec("pytriton")
    if spec is None or not spec.submodule_search_locations:
        raise RuntimeError(
            f"the {_PYTRITON_DIST} wheel is not installed in {sys.prefix}; it bundles tritonserver. "
            f"Fix: {sys.executable} -m pip install {_PYTRITON_DIST}==0.7.0 (or `make setup`)"
        )
    package = Path(next(iter(spec.submodule_search_locations)))
    root = package / "tritonserver"
    install = TritonInstall(
        version=importlib.metadata.version(_PYTRITON_DIST),
        tritonserver=root / "bin" / "tritonserver",
        libs=package.parent / "nvidia_pytriton.libs",
        python_backend=root / "backends" / "python",
        stub=root / "python_backend_stubs" / PYTHON_VERSION / "triton_python_backend_stub",
    )
    for what, path in (
        ("tritonserver binary", install.tritonserver),
        ("bundled shared libraries", install.libs),
        ("Python backend", install.python_backend / "libtriton_python.so"),
        (f"Python {PYTHON_VERSION} backend stub", install.stub),
    ):
        if not path.exists():
            raise RuntimeError(
                f"the {_PYTRITON_DIST} {install.version} wheel has no {what} at {path}. "
                f"Fix: reinstall it: {sys.executable} -m pip install --force-reinstall {_PYTRITON_DIST}==0.7.0"
            )
    if _own_libpython() is None and ctypes.util.find_library(f"python{PYTHON_VERSION}") is None:
        raise RuntimeError(
            f"{_LIBPYTHON} is not installed: Triton's Python-backend stub embeds it. "
            f"Fix: apt-get install libpython{PYTHON_VERSION} (or `make system-deps`)"
        )
    return install


def _own_libpython() -> Path | None:
    """This interpreter's own shared libpython (pyenv/conda builds ship one), if it has one."""
    libdir = sysconfig.get_config_var("LIBDIR")
    path = Path(libdir) / _LIBPYTHON if libdir else None
    return path if path is not None and path.exists() else None


def cache_root() -> Path:
    """``$TRITONE_CACHE_DIR`` or ``$XDG_CACHE_HOME/tritone`` or ``~/.cache/tritone``."""
    if explicit := os.environ.get("TRITONE_CACHE_DIR"):
        return Path(explicit)
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "tritone"


def prepare_backend_dir(install: TritonInstall | None = None, cache: Path | None = None) -> Path:
    """The ``--backend-directory`` for this interpreter: ``<cache>/triton-backends/<version>-py<X.Y>`` holding
    ``python/`` (backend library, utils module and stub). Built once; concurrent callers race safely because the
    directory is assembled under a temporary name and renamed into place."""
    install = install or find_triton()
    parent = (cache or cache_root()) / "triton-backends"
    final = parent / f"{install.version}-py{PYTHON_VERSION}"
    stub = final / "python" / install.stub.name
    if stub.exists() and os.access(stub, os.X_OK):
        return final
    parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{final.name}-", dir=parent))
    try:
        # copytree/copy2 keep permission bits: the stub must stay executable.
        shutil.copytree(install.python_backend, tmp / "python", ignore=shutil.ignore_patterns("__pycache__"))
        shutil.copy2(install.stub, tmp / "python" / install.stub.name)
        try:
            os.rename(tmp, final)
            logger.info("prepared Triton backend directory %s", final)
        except OSError:
            # Another process won the race (the target exists and is not empty): use its copy.
            if not stub.exists():
                raise
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return final


# --------------------------------------------------------------------------------------------------------------------
# The server
# --------------------------------------------------------------------------------------------------------------------

_RUNNING: set[TritonServer] = set()
_RUNNING_LOCK = threading.Lock()


@atexit.register
def _stop_all() -> None:
    """Last line of defence against orphans: stop servers a crashed test or script never stopped."""
    with _RUNNING_LOCK:
        servers = list(_RUNNING)
    for server in servers:
        with contextlib.suppress(Exception):
            server.stop(timeout=5.0)


class TritonServer(TritonHttpApi):
    """One ``tritonserver`` process serving ``repository``.

    Ports left as ``None`` are picked free (and re-picked if another process grabs one during start-up). With
    ``model_control="explicit"`` the server loads exactly ``load_models`` (``"*"``: all); more can be loaded and
    unloaded later with :meth:`load` / :meth:`unload`. Server and model output go to ``log_path``.
    """

    def __init__(
        self,
        repository: Path,
        *,
        http_port: int | None = None,
        grpc_port: int | None = None,
        metrics_port: int | None = None,
        log_path: Path | None = None,
        model_control: ModelControl = "explicit",
        load_models: Sequence[str] = ("*",),
        extra_args: Sequence[str] = (),
        env: Mapping[str, str] | None = None,
        address: str = "127.0.0.1",
    ) -> None:
        self.repository = Path(repository).resolve()
        if not self.repository.is_dir():
            raise FileNotFoundError(
                f"model repository folder {self.repository} does not exist (or is not a folder); "
                "create it with `tritone export` or pass the right --repository"
            )
        if model_control not in ("none", "explicit", "poll"):
            raise ValueError(f"model_control={model_control!r}; allowed: 'none', 'explicit', 'poll'")
        if isinstance(load_models, str):
            raise TypeError(f"load_models must be a sequence of model names, got the string {load_models!r}")
        self.model_control: ModelControl = model_control
        self.load_models = tuple(load_models)
        self.extra_args = tuple(extra_args)
        self.env = dict(env or {})
        self.address = address
        self._fixed_ports = (http_port, grpc_port, metrics_port)
        self._pick_ports()
        self._own_log_dir: Path | None = None
        if log_path is None:
            self._own_log_dir = Path(tempfile.mkdtemp(prefix="tritonserver-"))
            log_path = self._own_log_dir / "tritonserver.log"
        self.log_path = Path(log_path)
        self._process: subprocess.Popen[bytes] | None = None
        self._pgid: int | None = None

    # ---------------------------------------------------------------- addresses
    def _pick_ports(self) -> None:
        picked = iter(free_ports(sum(p is None for p in self._fixed_ports)))
        self.http_port, self.grpc_port, self.metrics_port = (
            p if p is not None else next(picked) for p in self._fixed_ports
        )

    @property
    def _shm_prefix(self) -> str:
        return f"tritone_{os.getpid()}_{self.http_port}_"

    @property
    def _host(self) -> str:
        # Clients reach a server bound to all interfaces through the loopback address.
        return "127.0.0.1" if self.address in ("0.0.0.0", "::") else self.address

    @property
    def http_url(self) -> str:
        return f"{self._host}:{self.http_port}"

    @property
    def grpc_url(self) -> str:
        return f"{self._host}:{self.grpc_port}"

    @property
    def metrics_url(self) -> str:
        return f"{self._host}:{self.metrics_port}"

    @property
    def pid(self) -> int | None:
        return self._process.pid if self._process is not None else None

    @property
    def pgid(self) -> int | None:
        """The server's process group (it leads its own session); stays set after :meth:`stop` for checks."""
        return self._pgid

    # ---------------------------------------------------------------- lifecycle
    def command(self, backend_dir: Path, tritonserver: Path | str = "tritonserver") -> list[str]:
        """The server's argv."""
        cmd = [
            str(tritonserver),
            f"--model-repository={self.repository}",
            f"--backend-directory={backend_dir}",
            f"--http-address={self.address}",
            f"--grpc-address={self.address}",
            f"--metrics-address={self.address}",
            f"--http-port={self.http_port}",
            f"--grpc-port={self.grpc_port}",
            f"--metrics-port={self.metrics_port}",
            "--allow-metrics=true",
            "--log-verbose=0",
            "--exit-timeout-secs=3",
            # Python-backend shared-memory regions are named by this prefix: unique per server, so that several
            # servers on one machine (parallel tests) never collide.
            f"--backend-config=python,shm-region-prefix-name={self._shm_prefix}",
            f"--model-control-mode={self.model_control}",
        ]
        if self.model_control == "explicit":
            cmd += [f"--load-model={name}" for name in self.load_models]
        elif self.model_control == "poll":
            cmd.append("--repository-poll-secs=1")
        return cmd + list(self.extra_args)

    def _environment(self, install: TritonInstall) -> dict[str, str]:
        env = dict(os.environ)
        # The stub embeds a libpython; it must be the one this interpreter's standard library was built with, or
        # extension modules such as _ssl fail with undefined symbols. Prefer this interpreter's own shared libpython
        # (pyenv/conda builds ship one) over the system copy.
        own_lib = _own_libpython()
        ld_path = [str(install.libs)]
        if own_lib is not None:
            ld_path.append(str(own_lib.parent))
        ld_path += [p for p in env.get("LD_LIBRARY_PATH", "").split(os.pathsep) if p]
        env["LD_LIBRARY_PATH"] = os.pathsep.join(ld_path)
        # The stub runs the first `python3` on PATH: this interpreter's, so models import this environment's packages.
        env["PATH"] = os.pathsep.join([str(Path(sys.executable).parent), env.get("PATH", os.defpath)])
        env.update(self.env)
        return env

    def start(self, timeout: float = 180.0) -> TritonServer:
        """Start the server and return once it and every named model are ready.

        Raises ``RuntimeError`` quoting the end of the server log when the server exits or is not ready in time.
        """
        if self.is_running():
            return self
        install = find_triton()
        backend_dir = prepare_backend_dir(install)
        auto_ports = None in self._fixed_ports
        for attempt in range(1, _PORT_RETRIES + 1):
            try:
                self._launch(install, backend_dir)
                self._wait_ready(timeout)
                return self
            except RuntimeError as exc:
                self.stop()
                port_clash = "address already in use" in str(exc).lower() or "failed to start" in str(exc).lower()
                if auto_ports and port_clash and attempt < _PORT_RETRIES:
                    logger.warning("tritonserver could not bind its ports (attempt %s); retrying", attempt)
                    self._pick_ports()
                    continue
                raise
        raise AssertionError("unreachable")  # pragma: no cover

    def _launch(self, install: TritonInstall, backend_dir: Path) -> None:
        cmd = self.command(backend_dir, install.tritonserver)
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        logger.info("starting tritonserver: http %s, grpc %s, log %s", self.http_url, self.grpc_url, self.log_path)
        logger.debug("tritonserver argv: %s", cmd)
        with open(self.log_path, "ab") as log:
            self._process = spawn(
                cmd,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                env=self._environment(install),
                cwd=str(self.repository),
            )
        self._pgid = self._process.pid  # spawn: the server leads its own session and process group
        with _RUNNING_LOCK:
            _RUNNING.add(self)

    def _wait_ready(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        pending = ["" if name == "*" else name for name in self.load_models] if self.model_control == "explicit" else []
        paths = ["/v2/health/ready"] + [f"/v2/models/{urllib.parse.quote(m)}/ready" for m in pending if m]
        while paths:
            assert self._process is not None
            code = self._process.poll()
            if code is not None:
                raise RuntimeError(
                    f"tritonserver exited with code {code} during start-up (repository {self.repository}); "
                    f"log {self.log_path}:\n{self.log_tail()}"
                )
            if self._get_status(paths[0]) == 200:
                paths.pop(0)
                continue
            if time.monotonic() > deadline:
                raise RuntimeError(
                    f"tritonserver was not ready within {timeout:.0f} s (waiting for GET {paths[0]}); "
                    f"log {self.log_path}:\n{self.log_tail()}"
                )
            time.sleep(_POLL_S)
        logger.info("tritonserver ready at http %s / grpc %s", self.http_url, self.grpc_url)

    def is_running(self) -> bool:
        return self._process is not None and self._process.poll() is None

    def is_ready(self) -> bool:
        return self.is_running() and self._get_status("/v2/health/ready") == 200

    def stop(self, timeout: float = 30.0) -> None:
        """Interrupt the server (it unloads models and stops their stubs), wait up to ``timeout`` seconds, then kill
        whatever is left of its process group. Idempotent."""
        process, pgid = self._process, self._pgid
        if process is None or pgid is None:
            return
        if process.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                process.send_signal(signal.SIGINT)
            try:
                process.wait(timeout)
            except subprocess.TimeoutExpired:
                logger.warning(
                    "tritonserver (pid %s) did not exit within %.0f s; killing its group", process.pid, timeout
                )
        # Whatever is left (a stuck server, stubs of a crashed one) goes with SIGKILL; the leader is reaped first so
        # that its zombie does not keep the group alive.
        with contextlib.suppress(ProcessLookupError):
            os.killpg(pgid, signal.SIGKILL)
        process.wait()
        wait_group_gone(pgid)
        # A killed stub cannot unlink its shared-memory region; the prefix is this server's alone.
        for region in Path("/dev/shm").glob(f"{self._shm_prefix}*"):
            with contextlib.suppress(OSError):
                region.unlink()
        self._process = None
        with _RUNNING_LOCK:
            _RUNNING.discard(self)
        if self._own_log_dir is not None:
            logger.debug("tritonserver log kept at %s", self.log_path)

    def __enter__(self) -> TritonServer:
        return self.start()

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()

    def __repr__(self) -> str:
        state = "running" if self.is_running() else "stopped"
        return f"TritonServer({self.repository}, http={self.http_url}, grpc={self.grpc_url}, {state})"

    # ---------------------------------------------------------------- log
    def log_tail(self, chars: int = _LOG_TAIL_CHARS) -> str:
        try:
            with open(self.log_path, "rb") as f:
                f.seek(0, os.SEEK_END)
                f.seek(max(0, f.tell() - chars))
                return f.read().decode("utf-8", "replace")
        except OSError as exc:
            return f"(no log: {exc})"
