from __future__ import annotations

import subprocess
import sys

from export.acestep15.checkpoint import read_dims
from export.acestep15.networks import build_contracts
from export.acestep15.repository import NETWORKS
from export.acestep_v1.networks import NETWORKS as V1_NETWORKS


def _tritone(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "orchestrator.cli", *args], capture_output=True, text=True, timeout=600
    )


def test_rerun_skips_finished_artifacts(tiny_repository, tiny_work):
    before = {p: p.stat().st_mtime_ns for p in tiny_repository.rglob("model.onnx")}
    done = _tritone("export", "--preset", "tiny", "--out", str(tiny_repository), "--work", str(tiny_work), "--skip-llm")
    assert done.returncode == 0, done.stderr
    for name in NETWORKS:
        assert f"{name} v1: onnx exists, skipped" in done.stdout
    assert "dit v2: onnx exists, skipped" in done.stdout  # the SFT DiT
    for name in V1_NETWORKS:
        assert f"{name} v1: onnx exists, skipped" in done.stdout
    assert "onnx exported" not in done.stdout and "exporting ONNX" not in done.stdout
    assert {p: p.stat().st_mtime_ns for p in tiny_repository.rglob("model.onnx")} == before


def test_repository_configs_are_the_contracts(tiny_repository, tiny_preset_dirs):
    contracts = build_contracts(read_dims(tiny_preset_dirs["turbo"]))
    for name in NETWORKS:
        written = (tiny_repository / name / "config.pbtxt").read_text()
        assert written == contracts[name].triton_config(platform="cpu", version_policy="{ all { } }")
        assert (tiny_repository / name / "1" / "model.py").exists()
    sampler = (tiny_repository / "sampler" / "config.pbtxt").read_text()
    assert "decoupled: true" in sampler


def test_missing_checkpoint_is_one_readable_line(tmp_path):
    done = _tritone("export", "--checkpoint", str(tmp_path / "nope"), "--out", str(tmp_path / "repo"))
    assert done.returncode == 2
    assert "does not exist" in done.stderr and "Traceback" not in done.stderr
