"""Stems in a Triton model repository: one separation network per source count and the decoupled ``separator``.

Layout (beside the families, :mod:`export.repository`)::

    repo/stems/config.pbtxt, repo/stems/1/model.onnx (or model.plan)    4 sources (htdemucs, htdemucs_ft)
    repo/stems_6s/...                                                   6 sources (htdemucs_6s)
    repo/separator/config.pbtxt, repo/separator/1/model.py              decoupled BLS model: one song in, stems out
    repo/separator/1/assets/stems.json                                  the networks and their signal facts

A checkpoint is what :func:`export.stems.checkpoint.load` reads (a ``.th`` Demucs package, a ``.safetensors`` or a
bag folder); the tiny preset is two such files (4 and 6 sources) written under ``work/presets/stems-tiny``.
"""

from __future__ import annotations

import functools
from collections.abc import Iterable
from pathlib import Path

from export.repository import FamilyExport, NetworkSet
from export.stems.checkpoint import SeparationModel, StemsCheckpointError, load
from export.stems.networks import NETWORK_FOR_SOURCES, build_contract, wrapper
from model_repository.stems import manifest
from model_repository.stems.manifest import StemsNetwork
from model_repository.triton_models import install_entry_point

SEPARATOR = "separator"
TRACE_SIZES = {"batch": 2}
LAYOUT_HINT = "an HT-Demucs .th/.safetensors file or a bag folder (htdemucs_ft.yaml + its .th files)"


def network_set(model: SeparationModel, version: int = 1) -> NetworkSet:
    contract = build_contract(model)
    return NetworkSet({contract.name: contract}, {contract.name: wrapper(model)}, version, (contract.name,),
                      dict(TRACE_SIZES))


def describe(model: SeparationModel, version: int = 1) -> StemsNetwork:
    contract = build_contract(model)
    return StemsNetwork(
        model=contract.name,
        checkpoint=model.name,
        sources=model.sources,
        samplerate=model.samplerate,
        audio_channels=model.audio_channels,
        segment_samples=model.segment_samples,
        nfft=model.nfft,
        hop_length=model.hop_length,
        max_batch_size=contract.max_batch_size,
        version=version,
    )


def separator_config(*, max_songs: int = 16, rows_per_call: int = 4, calls_in_flight: int = 2) -> str:
    """Decoupled (progress events, then one response per stem, then ``done``), ``max_batch_size: 0``: batching
    happens one level down, where every song's segments meet in the ``stems`` network's dynamic batcher."""
    return f"""name: "{SEPARATOR}"
backend: "python"
max_batch_size: 0
model_transaction_policy {{ decoupled: true }}
input [
  {{ name: "request" data_type: TYPE_STRING dims: [ 1 ] }},
  {{ name: "audio" data_type: TYPE_FP32 dims: [ 2, -1 ] }}
]
output [
  {{ name: "event" data_type: TYPE_STRING dims: [ 1 ] }},
  {{ name: "audio" data_type: TYPE_FP32 dims: [ 2, -1 ] }}
]
instance_group [ {{ count: 1 kind: KIND_CPU }} ]
parameters: {{ key: "max_concurrent_songs" value: {{ string_value: "{max_songs}" }} }}
parameters: {{ key: "rows_per_call" value: {{ string_value: "{rows_per_call}" }} }}
parameters: {{ key: "calls_in_flight" value: {{ string_value: "{calls_in_flight}" }} }}
"""


def write_separator(*, repo: Path, networks: Iterable[StemsNetwork]) -> Path:
    """The separator model (entry point, config) and its manifest, merged with networks already listed."""
    version_dir = repo / SEPARATOR / "1"
    install_entry_point(SEPARATOR, version_dir)
    (repo / SEPARATOR / "config.pbtxt").write_text(separator_config())
    return manifest.write(version_dir / "assets", {n.model: n for n in networks})


def plan(models: Iterable[SeparationModel], version: int = 1) -> FamilyExport:
    """The networks of ``models`` (one per source count) and the separator writer."""
    models = list(models)
    by_network: dict[str, SeparationModel] = {}
    for model in models:
        name = NETWORK_FOR_SOURCES[len(model.sources)]
        if name in by_network:
            raise StemsCheckpointError(
                f"stems checkpoints {by_network[name].path} and {model.path} both have {len(model.sources)} sources "
                f"(network '{name}'); export one of them"
            )
        by_network[name] = model
    write = functools.partial(write_separator, networks=[describe(m, version) for m in models])
    return FamilyExport([network_set(m, version) for m in models], [write])


def from_checkpoints(paths: Iterable[Path], *, version: int = 1) -> FamilyExport:
    return plan([load(p) for p in paths], version)


def tiny(work: Path) -> FamilyExport:
    """The tiny 4-source and 6-source presets, saved as Demucs packages and loaded back like an operator's files."""
    from export.stems.presets import build_tiny

    folder = Path(work) / "presets" / "stems-tiny"
    paths = [build_tiny(folder, sources=n) for n in sorted(NETWORK_FOR_SOURCES)]
    print(f"tiny stems: exporting {', '.join(NETWORK_FOR_SOURCES.values())} from {folder}", flush=True)
    return from_checkpoints(paths)
