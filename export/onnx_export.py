"""ONNX export driven by a :class:`~export.contracts.NetworkContract`, with an ONNX Runtime parity check."""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Mapping
from pathlib import Path

import numpy as np
import torch

from export.contracts import NetworkContract

logger = logging.getLogger(__name__)

OPSET = 18


def export_onnx(
    module: torch.nn.Module,
    contract: NetworkContract,
    path: Path,
    *,
    sizes: Mapping[str, int],
    seed: int = 0,
) -> Path:
    """Export ``module`` with the contract's names and dynamic axes (torch's dynamo exporter) to ``path``.

    ``sizes`` are the axis sizes of the example inputs; every axis the contract calls dynamic stays symbolic in the
    graph. Written atomically: a crash never leaves a half-written ``model.onnx`` that a re-run would skip.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    module = module.eval()
    sample = contract.sample_inputs(sizes, seed=seed)
    args = tuple(torch.from_numpy(sample[name]) for name in contract.input_names)
    dynamic_shapes = {spec.name: {i: torch.export.Dim.DYNAMIC for i in spec.dynamic_axes} for spec in contract.inputs}
    tmp = path.with_suffix(".tmp.onnx")
    started = time.perf_counter()
    with torch.no_grad():
        program = torch.onnx.export(
            module,
            args,
            input_names=contract.input_names,
            output_names=contract.output_names,
            dynamic_shapes=dynamic_shapes,
            opset_version=OPSET,
            dynamo=True,
            external_data=False,
            optimize=True,
            verbose=False,
        )
    if program is None:  # pragma: no cover - dynamo=True always returns a program
        raise RuntimeError(f"{contract.name}: torch.onnx.export returned nothing")
    program.save(str(tmp), external_data=_needs_external_data(module))
    os.replace(tmp, path)
    _move_external_data(tmp, path)
    logger.info("exported %s to %s in %.1f s", contract.name, path, time.perf_counter() - started)
    return path


def _needs_external_data(module: torch.nn.Module) -> bool:
    # Protobuf caps a single file at 2 GiB; real DiT/text-encoder weights exceed it.
    size = sum(p.numel() * p.element_size() for p in module.parameters())
    return size > 1_800_000_000


def _move_external_data(tmp: Path, final: Path) -> None:
    data = Path(str(tmp) + ".data")
    if data.exists():
        os.replace(data, Path(str(final) + ".data"))


def onnx_session(path: Path, threads: int = 1):
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    return ort.InferenceSession(str(path), sess_options=options, providers=["CPUExecutionProvider"])


def run_torch(module: torch.nn.Module, contract: NetworkContract, inputs: Mapping[str, np.ndarray]) -> list[np.ndarray]:
    with torch.no_grad():
        out = module(*(torch.from_numpy(inputs[name]) for name in contract.input_names))
    outs = out if isinstance(out, tuple) else (out,)
    return [o.detach().cpu().numpy() for o in outs]


def relative_error(got: np.ndarray, want: np.ndarray) -> float:
    """max |got - want| / max |want| (0 for an exact match; 'relative' to the output's scale)."""
    want64, got64 = want.astype(np.float64), got.astype(np.float64)
    scale = max(float(np.abs(want64).max(initial=0.0)), 1e-12)
    return float(np.abs(got64 - want64).max(initial=0.0)) / scale


def check_parity(
    module: torch.nn.Module,
    contract: NetworkContract,
    onnx_path: Path,
    *,
    sizes: Mapping[str, int],
    seed: int = 1,
) -> dict[str, float]:
    """Relative error of ONNX Runtime vs torch per output, on fresh random inputs at ``sizes``."""
    inputs = contract.sample_inputs(sizes, seed=seed)
    want = run_torch(module, contract, inputs)
    got = onnx_session(onnx_path).run(contract.output_names, inputs)
    errors: dict[str, float] = {}
    for name, g, w in zip(contract.output_names, got, want, strict=True):
        if g.shape != w.shape:
            raise AssertionError(f"{contract.name}.{name}: ONNX shape {g.shape} != torch shape {w.shape}")
        if g.dtype.kind == "f":
            errors[name] = relative_error(g, w)
        else:
            errors[name] = float(np.mean(g != w))
    return errors
