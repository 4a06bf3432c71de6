"""Write a complete Triton model repository: ACE-Step 1.5 and ACE-Step v1 networks, the shared ``sampler`` model (plus
the LLM models, :mod:`export.llm`). The v1 specifics are in :mod:`export.acestep_v1.repository`.

Steps are re-runnable: each artifact is written atomically and skipped when present, so an interrupted export resumes
where it stopped. Layout (``--target cpu``; ``gpu`` puts ``model.plan`` where ``model.onnx`` is and the configs say
``tensorrt_plan``)::

    repo/<network>/config.pbtxt              generated from the network's contract
    repo/<network>/<version>/model.onnx      (+ model.py: the ONNX Runtime Python model, CPU only)
    repo/sampler/config.pbtxt                decoupled Python model: the flow-matching loop
    repo/sampler/1/model.py
    repo/sampler/1/assets/pipeline.json      dimensions + version sets (which network versions belong together)
    repo/sampler/1/assets/<version-set>/     tokenizer, null condition, silence latent of that set
    repo/sampler/1/assets/acestep_v1/        the v1 family's pipeline.json and version sets (UMT5 tokenizer)
"""

from __future__ import annotations

import json
import logging
import multiprocessing
import os
import shutil
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np

import model_repository
from export.contracts import NetworkContract

logger = logging.getLogger(__name__)

Target = Literal["cpu", "gpu"]
NETWORKS = (
    "text_encoder",
    "condition_encoder",
    "dit",
    "vae_decoder",
    "vae_encoder",
    "audio_tokenizer",
    "audio_detokenizer",
)
# Sizes of the example inputs the exporter traces with (any valid sizes work; the axes stay dynamic).
TRACE_SIZES = {"batch": 2, "frames": 250, "text": 40, "lyric": 70, "encoder": 111, "samples": 1920 * 20, "codes": 50}
MODEL_SOURCES = Path(model_repository.__file__).resolve().parent
FAMILY = "acestep15"
# Sub-folders of sampler/1/assets that belong to other families (ACE-Step v1 keeps its manifest and sets there).
RESERVED_ASSET_NAMES = ("acestep_v1",)


def _progress(msg: str) -> None:
    print(msg, flush=True)


def write_config(repo: Path, contract: NetworkContract, target: Target) -> None:
    folder = repo / contract.name
    folder.mkdir(parents=True, exist_ok=True)
    text = contract.triton_config(platform=target, version_policy="{ all { } }")
    (folder / "config.pbtxt").write_text(text)


def install_python_model(src_name: str, dest_version_dir: Path) -> None:
    """Copy ``model_repository/<src_name>/model.py`` into a version folder (it imports its library code from the
    installed ``model_repository`` package, so the copy is only the thin Triton entry point)."""
    src = MODEL_SOURCES / src_name / "model.py"
    if not src.exists():
        raise FileNotFoundError(f"missing Python model source {src}")
    dest_version_dir.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(src, dest_version_dir / "model.py")


@dataclass(frozen=True)
class NetworkSet:
    """The networks of one loaded checkpoint to export at one version: contracts + wrapper factories (any family)."""

    contracts: Mapping[str, NetworkContract]
    factories: Mapping[str, Callable[[], Any]]
    version: int
    networks: tuple[str, ...]
    trace_sizes: Mapping[str, int] = field(default_factory=lambda: dict(TRACE_SIZES))


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
    networks: Iterable[str] | None = None,
    jobs: int | None = None,
    trace_sizes: Mapping[str, int] = TRACE_SIZES,
) -> dict[str, float]:
    """ONNX (and on GPU, engines) for each network into ``repo/<network>/<version>/``. Returns seconds per network.

    ``contracts`` and ``factories`` (a wrapper module per network) come from a family's ``networks`` module, e.g.
    ``export.acestep15.networks.build_contracts/wrappers``; ``networks`` defaults to all of ``contracts``."""
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
                install_python_model("onnx_runtime", version_dir)
            write_config(repo, contract, target)
    return timings


def acestep15_networks(pipe: Any, dims: Any, version: int, networks: Iterable[str] = NETWORKS) -> NetworkSet:
    """The ACE-Step 1.5 networks of a loaded ``AceStepPipeline``."""
    from export.acestep15.networks import build_contracts, wrappers

    return NetworkSet(build_contracts(dims), wrappers(pipe), version, tuple(networks))


def write_sampler(*, repo: Path, pipe, dims, version_set: str, versions: dict[str, int], variant: str) -> None:
    """The sampler model and the assets of one version set (tokenizer, null condition, silence latent)."""
    from export.acestep15.networks import ENCODER_BUCKETS, FRAME_BUCKETS, LYRIC_BUCKETS, TEXT_BUCKETS

    if version_set in RESERVED_ASSET_NAMES:
        raise ValueError(f"version set name {version_set!r} is reserved (a family's asset folder); choose another")
    assets = install_sampler(repo)
    set_dir = assets / version_set
    set_dir.mkdir(parents=True, exist_ok=True)
    pipe.tokenizer.save_pretrained(set_dir / "tokenizer")
    cond = pipe.condition_encoder
    np.save(set_dir / "null_condition_emb.npy", cond.null_condition_emb.detach().float().numpy())
    # The timbre branch reads 30 s (750 frames) of it; cover/repaint tile it to the song length.
    np.save(set_dir / "silence_latent.npy", cond.silence_latent.detach().float().numpy()[0])
    manifest_path = assets / "pipeline.json"
    manifest = json.loads(manifest_path.read_text()) if manifest_path.exists() else {"version_sets": {}}
    manifest["family"] = FAMILY
    manifest["buckets"] = {
        "frames": list(FRAME_BUCKETS),
        "text": list(TEXT_BUCKETS),
        "lyric": list(LYRIC_BUCKETS),
        "encoder": list(ENCODER_BUCKETS),
    }
    manifest["dims"] = {k: v for k, v in asdict(dims).items() if k != "is_turbo"}
    manifest["version_sets"][version_set] = {
        "versions": {k: str(v) for k, v in versions.items()},
        "is_turbo": bool(dims.is_turbo),
        "variant": variant,
    }
    manifest.setdefault("default_version_set", version_set)
    tmp = manifest_path.with_suffix(".tmp")
    tmp.write_text(json.dumps(manifest, indent=2, sort_keys=True))
    tmp.replace(manifest_path)


def install_sampler(repo: Path) -> Path:
    """The ``sampler`` model (both families share it) and its config; returns its assets folder."""
    sampler = repo / "sampler"
    version_dir = sampler / "1"
    install_python_model("sampler", version_dir)
    (sampler / "config.pbtxt").write_text(sampler_config())
    assets = version_dir / "assets"
    assets.mkdir(parents=True, exist_ok=True)
    return assets


def sampler_config(max_songs: int = 64) -> str:
    """The sampler is decoupled (one request streams progress then audio) and runs each song on its own thread, so
    ``max_batch_size: 0``: batching happens one level down, where every song's DiT step meets the others in ``dit``'s
    dynamic batcher."""
    return f"""name: "sampler"
backend: "python"
max_batch_size: 0
model_transaction_policy {{ decoupled: true }}
input [
  {{ name: "request" data_type: TYPE_STRING dims: [ 1 ] }},
  {{ name: "src_audio" data_type: TYPE_FP32 dims: [ 2, -1 ] optional: true }},
  {{ name: "reference_audio" data_type: TYPE_FP32 dims: [ 2, -1 ] optional: true }}
]
output [
  {{ name: "event" data_type: TYPE_STRING dims: [ 1 ] }},
  {{ name: "audio" data_type: TYPE_FP32 dims: [ -1, 2, -1 ] }}
]
instance_group [ {{ count: 1 kind: KIND_CPU }} ]
parameters: {{ key: "max_concurrent_songs" value: {{ string_value: "{max_songs}" }} }}
"""
