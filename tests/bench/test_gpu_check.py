"""bench/gpu_check.py: refuses clearly where there is no GPU, and runs where there is one."""

from __future__ import annotations

import importlib.util
import subprocess
import sys
from pathlib import Path

import pytest

from bench import gpu_check
from export.acestep15.networks import FRAME_BUCKETS
from export.tensorrt import length_profiles

ROOT = Path(__file__).resolve().parents[2]


def _has_gpu() -> bool:
    return not gpu_check.missing_requirements()


def test_without_a_gpu_it_exits_2_naming_what_is_missing() -> None:
    if _has_gpu():
        pytest.skip("this machine has a CUDA device and tensorrt: the refusal cannot be observed here")
    proc = subprocess.run(
        [sys.executable, "-m", "bench.gpu_check", "--out", "unused.md"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == gpu_check.EXIT_NO_GPU, proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1, proc.stderr
    assert lines[0].startswith("gpu_check: cannot run here: ")
    if importlib.util.find_spec("tensorrt") is None:
        assert "no tensorrt module" in lines[0]
    import torch

    if not torch.cuda.is_available():
        assert "no CUDA device" in lines[0]
    assert proc.stdout == "" and not (ROOT / "unused.md").exists()


@pytest.mark.parametrize("per_bucket", [False, True])
def test_checked_shapes_are_served_buckets_and_covered_by_the_profiles(per_bucket: bool) -> None:
    assert set(gpu_check.FRAMES) <= set(FRAME_BUCKETS)
    contracts = gpu_check.check_contracts(per_bucket)
    profiles = length_profiles(contracts["dit"])
    assert len(profiles) == (3 if per_bucket else 1)
    for frames in gpu_check.FRAMES:
        for batch in gpu_check.BATCHES:
            assert any(
                p["frames"][0] <= frames <= p["frames"][2]
                and p["batch"][0] <= batch <= p["batch"][2]
                and p["encoder"][0] <= gpu_check.ENCODER_LEN <= p["encoder"][2]
                for p in profiles
            ), (frames, batch)
    assert contracts["dit"].precision == "bf16" and contracts["vae_decoder"].precision == "fp32"
    assert contracts["vae_decoder"].axis("batch").max == 2


def test_the_report_is_a_markdown_table() -> None:
    checks = [{"network": "dit", "sizes": {"batch": 2, "frames": 750}, "rel_error": 0.01, "finite": True, "ok": True}]
    steps = [{"seconds": 30, "batch": 1, "torch_bf16_ms": 20.0, "trt_ms": 10.0}]
    song = {"total_s": 3.2, "audio_s": 240.0, "finite": True, "calls": {"dit": (8, 0.8)}}
    text = gpu_check.report(checks, steps, song)
    assert "| dit | batch 2 × frames 750 | 1.00e-02 | True | 0.05 | True |" in text
    assert "| 30 s | 1 | 20.0 | 10.0 | 2.00× |" in text
    assert "240 s of audio" in text and "dit 8× 0.80 s" in text


@pytest.mark.gpu
@pytest.mark.skipif(not _has_gpu(), reason="needs a CUDA device and the tensorrt module (gpu_check refuses without)")
def test_gpu_check_runs(tmp_path: Path) -> None:
    out = tmp_path / "gpu-check.md"
    proc = subprocess.run(
        [sys.executable, "-m", "bench.gpu_check", "--out", str(out), "--work", str(tmp_path / "work")],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert proc.returncode == 0, proc.stderr[-4000:]
    table = out.read_text()
    assert "## One DiT step" in table and table.count("| 240 s |") == len(gpu_check.BATCHES)
