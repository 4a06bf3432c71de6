"""The tritonserver launcher and the ``tritone triton`` command, against the real bundled server."""

from __future__ import annotations

import json
import os
import queue
import signal
import subprocess
import sys
import threading
import time
import urllib.request
from pathlib import Path

import numpy as np
import pytest

from model_repository.launcher import server as server_mod
from model_repository.launcher.server import TritonServer, find_triton, free_port, prepare_backend_dir
from tests.markers import needs_triton, triton_missing

MODEL = "add"
CONFIG = """
name: "add"
backend: "python"
max_batch_size: 4
input [ { name: "x" data_type: TYPE_FP32 dims: [ -1 ] } ]
output [ { name: "y" data_type: TYPE_FP32 dims: [ -1 ] } ]
instance_group [ { count: 1 kind: KIND_CPU } ]
"""
# A model whose version folders differ only in the constant they add: the answer says which version served it.
MODEL_PY = """
import numpy as np
import triton_python_backend_utils as pb_utils

ADD = {add}


class TritonPythonModel:
    def initialize(self, args):
        if ADD < 0:
            raise RuntimeError("refusing to load: ADD is negative (boom-{add})")

    def execute(self, requests):
        out = []
        for request in requests:
            x = pb_utils.get_input_tensor_by_name(request, "x").as_numpy()
            out.append(pb_utils.InferenceResponse([pb_utils.Tensor("y", (x + ADD).astype(np.float32))]))
        return out
"""


def _write_version(repo: Path, version: int, add: float) -> None:
    folder = repo / MODEL / str(version)
    folder.mkdir(parents=True, exist_ok=True)
    (repo / MODEL / "config.pbtxt").write_text(CONFIG)
    (folder / "model.py").write_text(MODEL_PY.format(add=add))


@pytest.fixture
def repo(tmp_path: Path) -> Path:
    root = tmp_path / "repo"
    _write_version(root, 1, 1.0)
    return root


def _infer(url: str, x: np.ndarray) -> np.ndarray:
    import tritonclient.http as httpclient

    client = httpclient.InferenceServerClient(url)
    try:
        inp = httpclient.InferInput("x", list(x.shape), "FP32")
        inp.set_data_from_numpy(x)
        result: np.ndarray = client.infer(MODEL, [inp]).as_numpy("y")
        return result
    finally:
        client.close()  # an open keep-alive connection would hold the server's shutdown for --exit-timeout-secs


def _status(url: str) -> int:
    try:
        with urllib.request.urlopen(f"http://{url}", timeout=5) as resp:
            return int(resp.status)
    except urllib.error.HTTPError as exc:
        return int(exc.code)


def _group_gone(pgid: int) -> bool:
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return True
    return False


def _group_members(pgid: int) -> list[int]:
    members = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                stat = (entry / "stat").read_text()
            except OSError:
                continue
            # Fields after the ")" that closes the command name: state, ppid, pgrp, ...
            if int(stat.rsplit(")", 1)[1].split()[2]) == pgid:
                members.append(int(entry.name))
    return members


# --------------------------------------------------------------------------------------------------------------------
# Without starting a server
# --------------------------------------------------------------------------------------------------------------------


def test_free_port_is_bindable() -> None:
    import socket

    port = free_port()
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", port))


def test_missing_repository_is_named(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match=f"model repository folder {tmp_path / 'nope'} does not exist"):
        TritonServer(tmp_path / "nope")


def test_bad_arguments_are_refused(repo: Path) -> None:
    with pytest.raises(ValueError, match="model_control='auto'; allowed"):
        TritonServer(repo, model_control="auto")  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="sequence of model names"):
        TritonServer(repo, load_models="add")


def test_missing_pieces_are_named(monkeypatch: pytest.MonkeyPatch) -> None:
    if triton_missing():
        pytest.skip(f"no tritonserver: {triton_missing()}")
    monkeypatch.setattr(server_mod, "PYTHON_VERSION", "3.99")
    with pytest.raises(RuntimeError, match=r"no Python 3\.99 backend stub .* Fix: reinstall"):
        find_triton()
    monkeypatch.undo()
    monkeypatch.setattr(server_mod.ctypes.util, "find_library", lambda name: None)
    monkeypatch.setattr(server_mod, "_own_libpython", lambda: None)
    with pytest.raises(RuntimeError, match=r"libpython3\.\d+\.so\.1\.0 is not installed.*apt-get install libpython"):
        find_triton()


@needs_triton
def test_backend_dir_is_prepared_once_under_concurrency(tmp_path: Path) -> None:
    results: list[Path] = []
    errors: list[BaseException] = []

    def prepare() -> None:
        try:
            results.append(prepare_backend_dir(cache=tmp_path))
        except BaseException as exc:  # noqa: BLE001 - surfaced by the assertion below
            errors.append(exc)

    threads = [threading.Thread(target=prepare) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    assert len(set(results)) == 1
    backend = results[0]
    stub = backend / "python" / "triton_python_backend_stub"
    assert os.access(stub, os.X_OK) and (backend / "python" / "libtriton_python.so").is_file()
    assert sorted(p.name for p in backend.parent.iterdir()) == [backend.name]  # no temp folders left behind


# --------------------------------------------------------------------------------------------------------------------
# A real server
# --------------------------------------------------------------------------------------------------------------------


@needs_triton
@pytest.mark.triton
def test_start_serve_stop(repo: Path, tmp_path: Path) -> None:
    server = TritonServer(repo, load_models=[MODEL], log_path=tmp_path / "logs" / "triton.log")
    ports = {server.http_port, server.grpc_port, server.metrics_port}
    assert len(ports) == 3
    with server:
        assert server.is_ready()
        assert _status(f"{server.http_url}/v2/health/ready") == 200
        assert _status(f"{server.http_url}/v2/models/{MODEL}/ready") == 200
        np.testing.assert_array_equal(_infer(server.http_url, np.arange(3, dtype=np.float32)[None]), [[1, 2, 3]])
        with urllib.request.urlopen(f"http://{server.metrics_url}/metrics", timeout=5) as resp:
            assert 'nv_inference_count{model="add",version="1"} 1' in resp.read().decode()
        stats = server.model_statistics(MODEL)["model_stats"][0]
        assert (stats["name"], int(stats["inference_count"])) == (MODEL, 1)
        pgid = server.pgid
        assert pgid is not None and pgid == server.pid
        assert len(_group_members(pgid)) >= 2  # the server and the model's Python stub share its group
    assert not server.is_running()
    assert _group_gone(pgid), f"left behind: {_group_members(pgid)}"
    server.stop()  # idempotent
    log = server.log_path.read_text()
    assert "Started HTTPService" in log and "successfully loaded 'add'" in log


@needs_triton
@pytest.mark.triton
def test_repository_api_loads_versions_added_at_runtime(repo: Path) -> None:
    with TritonServer(repo, load_models=()) as server:  # explicit control, nothing loaded
        assert server.is_ready()
        assert _status(f"{server.http_url}/v2/models/{MODEL}/ready") != 200
        server.load(MODEL)
        np.testing.assert_array_equal(_infer(server.http_url, np.zeros((1, 2), np.float32)), [[1, 1]])

        _write_version(repo, 2, 10.0)  # a new version folder while the server runs
        server.load(MODEL)  # default policy: the latest version
        np.testing.assert_array_equal(_infer(server.http_url, np.zeros((1, 2), np.float32)), [[10, 10]])
        assert _status(f"{server.http_url}/v2/models/{MODEL}/versions/1/ready") != 200

        # A config override pins version 1 again (the override replaces config.pbtxt, so it is complete).
        override = {
            "name": MODEL,
            "backend": "python",
            "max_batch_size": 4,
            "input": [{"name": "x", "data_type": "TYPE_FP32", "dims": [-1]}],
            "output": [{"name": "y", "data_type": "TYPE_FP32", "dims": [-1]}],
            "version_policy": {"specific": {"versions": [1]}},
        }
        server.load(MODEL, config=json.dumps(override))
        np.testing.assert_array_equal(_infer(server.http_url, np.zeros((1, 2), np.float32)), [[1, 1]])
        # Statistics are recorded after the response is sent: give a loaded machine a moment.
        deadline = time.monotonic() + 10
        while int(server.model_statistics(MODEL, "1")["model_stats"][0]["inference_count"]) < 1:
            assert time.monotonic() < deadline, "version 1 never counted the inference it answered"
            time.sleep(0.1)
        states = {(e["name"], e.get("version")): e.get("state") for e in server.repository_index()}
        assert states[(MODEL, "1")] == "READY"

        server.unload(MODEL)
        assert _status(f"{server.http_url}/v2/models/{MODEL}/ready") != 200
        with pytest.raises(RuntimeError, match="load failed.*no_such_model"):
            server.load("no_such_model")
        with pytest.raises(json.JSONDecodeError):
            server.load(MODEL, config="{not json")
        # A failed load leaves an UNAVAILABLE entry, so strict readiness turns false; the server is still live.
        assert server.is_running() and _status(f"{server.http_url}/v2/health/live") == 200


@needs_triton
@pytest.mark.triton
def test_failed_start_quotes_the_log_and_leaves_nothing(tmp_path: Path) -> None:
    repo = tmp_path / "repo"
    _write_version(repo, 1, -7)  # initialize() raises "boom--7"
    server = TritonServer(repo, load_models=[MODEL])
    with pytest.raises(RuntimeError, match=r"(?s)tritonserver exited with code \d+ during start-up.*boom--7"):
        server.start(timeout=60)
    assert server.pgid is not None and _group_gone(server.pgid)
    assert not server.is_running()


# --------------------------------------------------------------------------------------------------------------------
# tritone triton
# --------------------------------------------------------------------------------------------------------------------


def _cli() -> list[str]:
    """The ``tritone`` console script of this environment (``python -m orchestrator.cli`` where it is not installed)."""
    script = Path(sys.executable).with_name("tritone")
    return [str(script)] if script.exists() else [sys.executable, "-m", "orchestrator.cli"]


def test_cli_missing_repository_is_one_line(tmp_path: Path) -> None:
    proc = subprocess.run(
        [*_cli(), "triton", "--repository", str(tmp_path / "missing")], capture_output=True, text=True, timeout=60
    )
    assert proc.returncode == 2
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and str(tmp_path / "missing") in lines[0] and "does not exist" in lines[0], proc.stderr


@needs_triton
@pytest.mark.triton
def test_cli_serves_and_exits_cleanly_on_sigint(repo: Path, tmp_path: Path) -> None:
    log_file = tmp_path / "cli.log"
    proc = subprocess.Popen(
        [*_cli(), "triton", "--repository", str(repo), "--model", MODEL, "--log-file", str(log_file)],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    lines: queue.Queue[str] = queue.Queue()

    def pump() -> None:
        for line in proc.stdout or []:
            lines.put(line)

    threading.Thread(target=pump, daemon=True).start()
    seen: list[str] = []
    try:
        while not any(line.strip().startswith("log:") for line in seen):
            seen.append(lines.get(timeout=120))
        fields = dict(line.strip().split(":", 1) for line in seen if line.startswith("  "))
        http_url, metrics_url = fields["http"].strip(), fields["metrics"].strip()
        server_pid = int(next(line for line in seen if "ready (pid" in line).split("pid ")[1].rstrip(")\n"))
        assert fields["log"].strip() == str(log_file)
        np.testing.assert_array_equal(_infer(http_url, np.ones((2, 1), np.float32)), [[2], [2]])
        assert _status(f"{metrics_url}/metrics") == 200
        proc.send_signal(signal.SIGINT)
        assert proc.wait(timeout=60) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert _group_gone(server_pid)
    assert log_file.stat().st_size > 0
