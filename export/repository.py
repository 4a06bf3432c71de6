"""Write a complete Triton model repository, for any family: the networks of each family's checkpoints (ONNX, and on
GPU TensorRT engines) and the shared ``sampler`` model, whose assets each family writes itself
(:mod:`export.acestep15.repository`, :mod:`export.acestep_v1.repository`; the LLM models: :mod:`export.llm`).

A family's export module offers ``is_checkpoint(folder)``, ``from_checkpoint(folder, version=, version_set=)`` and
``tiny(work)``, each answering a :class:`FamilyExport` (network sets + sampler-asset writers); :data:`EXPORTERS` lists
them. Steps are re-runnable: each artifact is written atomically and skipped when present, so an interrupted export
resumes where it stopped. Layout (``--target cpu``; ``gpu`` puts ``model.plan`` where ``model.onnx`` is and the
configs say ``tensorrt_plan``)::

    repo/<network>/config.pbtxt              generated from the network's contract
    repo/<network>/<version>/model.onnx      (+ model.py: the ONNX Runtime Python model, CPU only)
    repo/sampler/config.pbtxt                decoupled Python model: the flow-matching loop
    repo/sampler/1/model.py
    repo/sampler/1/assets/<family dir>/pipeline.json   a family's manifest (model_repository.facts.manifest)
"""

from __future__ import annotations

import importlib
import logging
import multiprocessing
import os
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from export.contracts import NetworkContract
from model_repository.triton_models import install_entry_point

logger = logging.getLogger(__name__)

Target = Literal["cpu", "gpu"]
# family -> its export module (is_checkpoint, from_checkpoint, tiny). A new family adds one line here.
EXPORTERS: dict[str, str] = {
    "acestep15": "export.acestep15.repository",
    "acestep_v1": "export.acestep_v1.repository",
}


def _progress(msg: str) -> None:
    print(msg, flush=True)


def write_config(repo: Path, contract: NetworkContract, target: Target) -> None:
    folder = repo / contract.name
    folder.mkdir(parents=True, exist_ok=True)
    text = contract.triton_config(platform=target, version_policy="{ all { } }")
    (folder / "config.pbtxt").write_text(text)


@dataclass(frozen=True)
class NetworkSet:
    """The networks of one loaded checkpoint to export at one version: contracts + wrapper factories (any family)."""

    contracts: Mapping[str, NetworkContract]
    factories: Mapping[str, Callable[[], Any]]
    version: int
    networks: tuple[str, ...]
    # Sizes of the example inputs the exporter traces with (any valid sizes work; the axes stay dynamic).
    trace_sizes: Mapping[str, int]


@dataclass
class FamilyExport:
    """What one family exports: its network sets, then writers of the sampler's assets (each called with the
    repository folder once the networks are in place)."""

    sets: list[NetworkSet]
    writers: list[Callable[..., Any]]

    def write_assets(self, repo: Path) -> None:
        for write in self.writers:
            write(repo=repo)


def exporter(family: str) -> Any:
    """The export module of ``family`` (see :data:`EXPORTERS`)."""
    try:
        return importlib.import_module(EXPORTERS[family])
    except KeyError:
        raise ValueError(f"no exporter registered for family {family!r}; registered: {sorted(EXPORTERS)}") from None


# What forked export workers read (set just before the fork; the children inherit it without pickling modules).
_FORK_STATE: dict[str, Any] = {}


def _export_one(job: tuple[int, str, str]) -> tuple[int, str, float]:
    import torch

    from export.onnx_export import export_onnx

    torch.set_num_threads(1)
    index, name, path = job
    net_set: NetworkSet = _FORK_STATE["sets"][index]
    started = time.perf_counter()
    export_onnx(net_set.factories[name](), net_set.contracts[name], Path(path), sizes=net_set.trace_sizes)
    return index, name, time.perf_counter() - started


def export_networks(
    *,
    contracts: Mapping[str, NetworkContract],
    factories: Mapping[str, Callable[[], Any]],
    repo: Path,
    work: Path,
    version: int,
    target: Target,
    trace_sizes: Mapping[str, int],
    networks: Iterable[str] | None = None,
    jobs: int | None = None,
) -> dict[str, float]:
    """ONNX (and on GPU, engines) for each network into ``repo/<network>/<version>/``. Returns seconds per network.

    ``contracts`` and ``factories`` (a wrapper module per network) come from a family's ``networks`` module, e.g.
    ``export.acestep15.networks.build_contracts/wrappers``; ``networks`` defaults to all of ``contracts``;
    ``trace_sizes``: the family's (e.g. ``export.acestep15.repository.TRACE_SIZES``)."""
    names = tuple(networks) if networks is not None else tuple(contracts)
    net_set = NetworkSet(contracts, factories, version, names, dict(trace_sizes))
    timings = export_network_sets([net_set], repo=repo, work=work, target=target, jobs=jobs)
    return {name: seconds for (name, _), seconds in timings.items()}


def export_network_sets(
    sets: Sequence[NetworkSet], *, repo: Path, work: Path, target: Target, jobs: int | None = None
) -> dict[tuple[str, int], float]:
    """:func:`export_networks` for several sets (families, versions) in one worker pool. Returns seconds per
    (network, version).

    The ONNX step is CPU-bound Python tracing: it runs in ``jobs`` forked workers (default: one per core), one network
    each, so a family's small networks fill the gaps beside another's large ones; engines build one at a time (they
    use the whole GPU)."""
    timings: dict[tuple[str, int], float] = {}

    def onnx_path(name: str, version: int) -> Path:
        folder = repo / name / str(version) if target == "cpu" else work / "onnx" / name / str(version)
        return folder / "model.onnx"

    for net_set in sets:
        unknown = sorted(set(net_set.networks) - set(net_set.contracts))
        if unknown:
            raise ValueError(f"unknown network(s) {unknown}; this family has {sorted(net_set.contracts)}")
    pending: list[tuple[int, str, str]] = []
    for index, net_set in enumerate(sets):
        for name in net_set.networks:
            path = onnx_path(name, net_set.version)
            if path.exists():
                timings[(name, net_set.version)] = 0.0
                _progress(f"{name} v{net_set.version}: onnx exists, skipped")
            else:
                pending.append((index, name, str(path)))
    workers = min(jobs or os.cpu_count() or 1, len(pending))
    if pending:
        listed = ", ".join(f"{name} v{sets[index].version}" for index, name, _ in pending)
        _progress(f"exporting ONNX for {listed} ({workers} worker(s)) ...")
        _FORK_STATE.update(sets=list(sets))
        try:
            if workers > 1:
                with multiprocessing.get_context("fork").Pool(workers) as pool:
                    results = list(pool.imap_unordered(_export_one, pending))
            else:
                results = [_export_one(job) for job in pending]
        finally:
            _FORK_STATE.clear()
        for index, name, seconds in results:
            timings[(name, sets[index].version)] = seconds
            _progress(f"{name} v{sets[index].version}: onnx exported in {seconds:.1f} s")
    for net_set in sets:
        for name in net_set.networks:
            contract = net_set.contracts[name]
            version_dir = repo / name / str(net_set.version)
            if target == "gpu":
                from export.tensorrt import build_engine

                plan = version_dir / "model.plan"
                if plan.exists():
                    _progress(f"{name} v{net_set.version}: engine exists, skipped")
                else:
                    _progress(f"{name} v{net_set.version}: building TensorRT engine ({contract.precision}) ...")
                    started = time.perf_counter()
                    build_engine(onnx_path(name, net_set.version), contract, plan, timing_cache=work / "timing.cache")
                    timings[(name, net_set.version)] += time.perf_counter() - started
            else:
                install_entry_point("onnx_runtime", version_dir)
            write_config(repo, contract, target)
    return timings


def install_sampler(repo: Path) -> Path:
    """The ``sampler`` model (both families share it) and its config; returns its assets folder."""
    sampler = repo / "sampler"
    version_dir = sampler / "1"
    install_entry_point("sampler", version_dir)
    (sampler / "config.pbtxt").write_text(sampler_config())
    assets = version_dir / "assets"
    assets.mkdir(parents=True, exist_ok=True)
    return assets


def sampler_config(max_songs: int = 64) -> str:
    """The sampler is decoupled (one request streams progress then audio), so ``max_batch_size: 0``: batching happens
    inside it, where the step scheduler (``step_scheduler``) sends every active song's DiT step as one ``dit`` call of
    up to ``max_rows_per_call`` rows (0: each network's own ``max_batch_size``). ``max_concurrent_songs`` sizes the
    per-song threads of ``step_scheduler: "false"`` (the path that relies on ``dit``'s dynamic batcher)."""
    return f"""name: "sampler"
backend: "python"
max_batch_size: 0
model_transaction_policy {{ decoupled: true }}
input [
  {{ name: "request" data_type: TYPE_STRING dims: [ 1 ] }},
  {{ name: "src_audio" data_type: TYPE_FP32 dims: [ 2, -1 ] optional: true }},
  {{ name: "reference_audio" data_type: TYPE_FP32 dims: [ 2, -1 ] optional: true }},
  {{ name: "src_latents" data_type: TYPE_FP32 dims: [ -1, -1 ] optional: true }}
]
output [
  {{ name: "event" data_type: TYPE_STRING dims: [ 1 ] }},
  {{ name: "audio" data_type: TYPE_FP32 dims: [ -1, 2, -1 ] }},
  {{ name: "latents" data_type: TYPE_FP32 dims: [ -1, -1 ] }}
]
instance_group [ {{ count: 1 kind: KIND_CPU }} ]
parameters: {{ key: "step_scheduler" value: {{ string_value: "true" }} }}
parameters: {{ key: "max_rows_per_call" value: {{ string_value: "0" }} }}
parameters: {{ key: "max_concurrent_songs" value: {{ string_value: "{max_songs}" }} }}
"""
