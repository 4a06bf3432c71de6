from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest

from export.acestep15.checkpoint import read_dims
from export.acestep15.networks import FRAME_BUCKETS, build_contracts
from export.tensorrt import TensorRTUnavailable, build_engine, length_profiles
from model_repository.facts.families import MAX_BATCH, TRACK_CLASSES

HAS_GPU = shutil.which("nvidia-smi") is not None


def _contracts(tiny_preset_dirs):
    return build_contracts(read_dims(tiny_preset_dirs["turbo"]))


def test_profiles_cover_10_to_600_seconds_in_contiguous_length_ranges(tiny_preset_dirs):
    dit = _contracts(tiny_preset_dirs)["dit"]
    profiles = length_profiles(dit)
    assert len(profiles) == 3
    ranges = [p["frames"] for p in profiles]
    assert ranges[0][0] == 250 and ranges[-1][2] == 15_000  # 10 s .. 600 s at 25 frames/s
    for (lo, opt, hi), nxt in zip(ranges, ranges[1:] + [None], strict=True):
        assert lo <= opt <= hi and opt in FRAME_BUCKETS and hi in FRAME_BUCKETS
        if nxt is not None:
            assert nxt[0] == hi + 1  # no gap, no overlap
    # rows: two per guided song, and a guided 12-class extract (track_names) fits in one call
    assert dit.max_batch_size == 2 * max(MAX_BATCH, len(TRACK_CLASSES)) == 24
    assert all(p["batch"] == (1, 12, 24) for p in profiles)


@pytest.mark.skipif(HAS_GPU, reason="checks the refusal on machines without a GPU")
def test_engine_build_refuses_clearly_without_a_gpu(tiny_preset_dirs, tmp_path):
    dit = _contracts(tiny_preset_dirs)["dit"]
    with pytest.raises(TensorRTUnavailable, match="needs an NVIDIA GPU"):
        build_engine(tmp_path / "model.onnx", dit, tmp_path / "model.plan", timing_cache=tmp_path / "cache")


@pytest.mark.gpu
@pytest.mark.skipif(not HAS_GPU, reason="needs an NVIDIA GPU with TensorRT")
def test_dit_engine_matches_onnx_runtime(tiny_repository, tiny_preset_dirs, tmp_path):  # pragma: no cover - GPU only
    import tensorrt as trt
    import torch

    from export.onnx_export import onnx_session, relative_error

    dit = _contracts(tiny_preset_dirs)["dit"]
    onnx = Path(tiny_repository) / "dit" / "1" / "model.onnx"
    plan = build_engine(onnx, dit, tmp_path / "model.plan", timing_cache=tmp_path / "cache")
    engine = trt.Runtime(trt.Logger()).deserialize_cuda_engine(plan.read_bytes())
    context = engine.create_execution_context()
    inputs = dit.sample_inputs({"batch": 2, "frames": 500, "encoder": 128}, seed=3)
    want = onnx_session(onnx).run(["velocity"], inputs)[0]
    tensors = {k: torch.from_numpy(v).cuda() for k, v in inputs.items()}
    for name, t in tensors.items():
        context.set_input_shape(name, tuple(t.shape))
        context.set_tensor_address(name, t.data_ptr())
    out = torch.empty(want.shape, device="cuda")
    context.set_tensor_address("velocity", out.data_ptr())
    context.execute_async_v3(torch.cuda.current_stream().cuda_stream)
    torch.cuda.synchronize()
    assert relative_error(out.cpu().numpy(), want) < 2e-2  # bf16
    assert np.isfinite(out.cpu().numpy()).all()


def test_every_frames_profile_takes_every_encoder_length(tiny_preset_dirs):
    """A short song with long lyrics (and a long song with a short caption) must find a profile."""
    dit = _contracts(tiny_preset_dirs)["dit"]
    encoder = dit.axis("encoder")
    for profile in length_profiles(dit):
        assert profile["encoder"] == (encoder.min, encoder.opt, encoder.max)
