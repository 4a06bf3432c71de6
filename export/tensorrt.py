"""TensorRT engine builds from the exported ONNX files, driven by the same contracts.

Each network gets one optimization profile per length range (``length_profiles``), so a 10 s song and a 600 s song
both run at a kernel selection tuned for their size; Triton's TensorRT backend picks the profile whose range covers a
request's shapes. Precision follows ``NetworkContract.precision`` (bf16 for the DiT and encoders; fp32 for the VAE,
whose audio decoder overflows in fp16). A timing cache is shared across builds so re-builds take seconds.

Nothing here runs without an NVIDIA GPU and the ``tensorrt`` package; :func:`require_tensorrt` says so clearly.
"""

from __future__ import annotations

import logging
import os
import shutil
import time
from pathlib import Path

from export.contracts import NetworkContract

logger = logging.getLogger(__name__)

# Length ranges (in each contract's bucketed axes) that get their own optimization profile.
PROFILE_SPLITS = 3


class TensorRTUnavailable(RuntimeError):
    pass


def require_tensorrt():
    """Import TensorRT or explain what is missing."""
    if shutil.which("nvidia-smi") is None and not Path("/dev/nvidia0").exists():
        raise TensorRTUnavailable(
            "building TensorRT engines needs an NVIDIA GPU (none found: no nvidia-smi, no /dev/nvidia0); "
            "use `--target cpu` here, or run `tritone export --target gpu` inside the Triton image on the GPU host"
        )
    try:
        import tensorrt as trt
    except ImportError:
        raise TensorRTUnavailable(
            "the `tensorrt` Python package is not installed; run the export inside the NGC tritonserver image "
            "(docker/triton.Dockerfile) or `pip install tensorrt` matching the host's CUDA"
        ) from None
    return trt


def length_profiles(
    contract: NetworkContract, *, splits: int = PROFILE_SPLITS
) -> list[dict[str, tuple[int, int, int]]]:
    """Per-profile (min, opt, max) for every dynamic axis. The first bucketed axis (the one that sets the cost: the
    DiT's frames) is split into ``splits`` contiguous bucket ranges; every other axis — batch, further bucketed axes
    such as the encoder length, unbucketed ones — spans its full range in every profile, so any combination of, say,
    a short song and long lyrics has a profile (TensorRT picks the first profile that fits)."""
    bucketed = [a for a in contract.axes if a.buckets]
    primary = bucketed[0] if bucketed else None
    n = max(1, min(splits, len(primary.buckets))) if primary is not None else 1
    profiles = []
    for k in range(n):
        prof: dict[str, tuple[int, int, int]] = {}
        batch = contract.axis("batch")
        prof["batch"] = (batch.min, batch.opt, batch.max)
        for axis in contract.axes:
            if axis is primary:
                parts = _split(axis.buckets, n)
                chunk = parts[k]
                low = axis.min if k == 0 else parts[k - 1][-1] + 1
                prof[axis.name] = (low, chunk[len(chunk) // 2], chunk[-1])
            else:
                prof[axis.name] = (axis.min, axis.opt, axis.max)
        profiles.append(prof)
    return profiles


def _split(buckets: tuple[int, ...], n: int) -> list[tuple[int, ...]]:
    size = -(-len(buckets) // n)
    parts = [buckets[i : i + size] for i in range(0, len(buckets), size)]
    while len(parts) < n:
        parts.append(parts[-1])
    return parts


def _shape(contract: NetworkContract, name: str, sizes: dict[str, int]) -> tuple[int, ...]:
    spec = next(s for s in contract.inputs if s.name == name)
    return spec.concrete_shape(sizes)


def build_engine(
    onnx_path: Path,
    contract: NetworkContract,
    plan_path: Path,
    *,
    timing_cache: Path,
    workspace_gib: int = 8,
) -> Path:
    """Build ``plan_path`` from ``onnx_path``. Refuses clearly without a GPU/TensorRT."""
    trt = require_tensorrt()
    started = time.perf_counter()
    trt_logger = trt.Logger(trt.Logger.WARNING)
    builder = trt.Builder(trt_logger)
    network = builder.create_network(0)
    parser = trt.OnnxParser(network, trt_logger)
    if not parser.parse_from_file(str(onnx_path)):
        errors = "; ".join(str(parser.get_error(i)) for i in range(parser.num_errors))
        raise RuntimeError(f"{contract.name}: TensorRT could not parse {onnx_path}: {errors}")
    config = builder.create_builder_config()
    config.set_memory_pool_limit(trt.MemoryPoolType.WORKSPACE, workspace_gib << 30)
    if contract.precision == "bf16":
        config.set_flag(trt.BuilderFlag.BF16)
    elif contract.precision == "fp16":
        config.set_flag(trt.BuilderFlag.FP16)
    cache_bytes = timing_cache.read_bytes() if timing_cache.exists() else b""
    cache = config.create_timing_cache(cache_bytes)
    config.set_timing_cache(cache, ignore_mismatch=False)
    for sizes in length_profiles(contract):
        profile = builder.create_optimization_profile()
        lo = {k: v[0] for k, v in sizes.items()}
        opt = {k: v[1] for k, v in sizes.items()}
        hi = {k: v[2] for k, v in sizes.items()}
        for spec in contract.inputs:
            profile.set_shape(
                spec.name,
                _shape(contract, spec.name, lo),
                _shape(contract, spec.name, opt),
                _shape(contract, spec.name, hi),
            )
        config.add_optimization_profile(profile)
    serialized = builder.build_serialized_network(network, config)
    if serialized is None:
        raise RuntimeError(f"{contract.name}: TensorRT engine build failed (see the TensorRT log above)")
    plan_path.parent.mkdir(parents=True, exist_ok=True)
    tmp = plan_path.with_suffix(".tmp")
    tmp.write_bytes(bytes(serialized))
    os.replace(tmp, plan_path)
    timing_cache.parent.mkdir(parents=True, exist_ok=True)
    timing_cache.write_bytes(bytes(config.get_timing_cache().serialize()))
    logger.info("built %s (%s) in %.1f s", plan_path, contract.precision, time.perf_counter() - started)
    return plan_path
