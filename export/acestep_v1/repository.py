"""The ACE-Step v1 family in a Triton model repository: its six ``v1_*`` networks and the sampler's v1 assets.

Layout (beside the 1.5 family, :mod:`export.repository`)::

    repo/v1_<network>/config.pbtxt, repo/v1_<network>/<version>/model.onnx (or model.plan)
    repo/sampler/1/assets/acestep_v1/pipeline.json         dims, buckets, version sets, default set
    repo/sampler/1/assets/acestep_v1/<version-set>/tokenizer/   the UMT5 caption tokenizer of that set

The lyric tokenizer (vocabulary + language detection) is code and data of ``model_repository.acestep_v1.lyrics``,
the same for every checkpoint. A checkpoint is recognised by its folders (``ace_step_transformer/``,
``music_dcae_f8c8/``, ``music_vocoder/``, ``umt5-base/``).
"""

from __future__ import annotations

import functools
import json
import logging
from collections.abc import Iterable, Mapping
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from export.acestep_v1.checkpoint import COMPONENT_DIRS
from export.acestep_v1.networks import (
    ENCODER_BUCKETS,
    FRAME_BUCKETS,
    LYRIC_BUCKETS,
    MAX_FRAMES,
    NETWORKS,
    TEXT_BUCKETS,
    TRACE_SIZES,
    V1Dims,
    build_contracts,
    wrappers,
)
from export.repository import FamilyExport, NetworkSet, install_sampler
from model_repository.facts.families import ACESTEP_V1
from model_repository.facts.manifest import SamplerManifest

logger = logging.getLogger(__name__)

FAMILY = ACESTEP_V1
DEFAULT_VERSION_SET = "base"  # the released ACE-Step-v1-3.5B is the base model
# UMT5 captions are truncated at 256 tokens (the original's text_max_length).
MAX_TEXT_TOKENS = 256
# Audio rates: the vocoder's 44.1 kHz, resampled to the service's 48 kHz; one latent frame = 8 mel frames x 512.
VOCODER_SAMPLE_RATE = 44100
SAMPLE_RATE = 48000
SAMPLES_PER_LATENT = 4096
# The checkpoint's trained length: 240 s -> int(240 * 44100 / 4096) = 2583 latent frames.
TRAINED_FRAMES = 2583


LAYOUT_HINT = "the ACE-Step v1 folders " + " ".join(f"{name}/" for name in COMPONENT_DIRS)


def is_checkpoint(root: str | Path) -> bool:
    """True when ``root`` has the ACE-Step v1 folder layout."""
    return all((Path(root) / name).is_dir() for name in COMPONENT_DIRS)



@dataclass
class LoadedV1:
    """A loaded v1 checkpoint: the export wrappers' models and the caption tokenizer."""

    root: Path
    transformer: Any
    text_encoder: Any
    tokenizer: Any
    music: Any
    dims: V1Dims


def load_v1(root: str | Path) -> LoadedV1:
    from export.acestep_v1.checkpoint import load_music_dcae, load_text_encoder, load_transformer

    root = Path(root)
    transformer = load_transformer(root)
    text_encoder, tokenizer = load_text_encoder(root)
    music = load_music_dcae(root)
    return LoadedV1(root, transformer, text_encoder, tokenizer, music, V1Dims.from_models(transformer, text_encoder))


def network_set(loaded: LoadedV1, version: int, networks: Iterable[str] = NETWORKS) -> NetworkSet:
    """The v1 networks of a loaded checkpoint, for :func:`export.repository.export_network_sets`."""
    return NetworkSet(
        build_contracts(loaded.dims),
        wrappers(loaded.transformer, loaded.text_encoder, loaded.music),
        version,
        tuple(networks),
        dict(TRACE_SIZES),
    )


def tiny_preset(work: Path, seed: int = 0) -> Path:
    """The tiny v1 preset under ``work/presets`` (built once; the same seed gives the same bytes)."""
    from export.acestep_v1.presets import PRESET_FILE, build_tiny_v1

    folder = work / "presets" / "acestep_v1-tiny"
    marker = folder / PRESET_FILE
    if marker.is_file() and json.loads(marker.read_text()).get("seed") == seed:
        return folder
    return build_tiny_v1(folder, seed=seed)


def write_v1_sampler(
    *, repo: Path, loaded: LoadedV1, version_set: str, versions: Mapping[str, int], variant: str = "base"
) -> Path:
    """The sampler model (if absent) and the v1 assets of one version set; returns the set's folder."""
    missing = sorted(set(NETWORKS) - set(versions))
    if missing:
        raise ValueError(f"version set {version_set!r} names no version for {missing}")
    folder = SamplerManifest.folder(install_sampler(repo), FAMILY)
    manifest = SamplerManifest.read_or_new(
        folder,
        family=FAMILY,
        dims=asdict(loaded.dims)
        | {
            "sample_rate": SAMPLE_RATE,
            "vocoder_sample_rate": VOCODER_SAMPLE_RATE,
            "samples_per_latent": SAMPLES_PER_LATENT,
            "max_frames": MAX_FRAMES,
            "trained_frames": TRAINED_FRAMES,
            "max_text_tokens": MAX_TEXT_TOKENS,
        },
        buckets={"frames": FRAME_BUCKETS, "text": TEXT_BUCKETS, "lyric": LYRIC_BUCKETS, "encoder": ENCODER_BUCKETS},
    )
    manifest.add_version_set(version_set, {name: versions[name] for name in NETWORKS}, variant=variant)
    set_dir = folder / version_set
    set_dir.mkdir(parents=True, exist_ok=True)
    loaded.tokenizer.save_pretrained(str(set_dir / "tokenizer"))
    manifest.write(folder)
    return set_dir


def from_checkpoint(folder: Path, *, version: int, version_set: str | None) -> FamilyExport:
    """Every v1 network of one checkpoint at ``version``, as version set ``version_set`` (default "base")."""
    loaded = load_v1(folder)
    write = functools.partial(
        write_v1_sampler,
        loaded=loaded,
        version_set=version_set or DEFAULT_VERSION_SET,
        versions={name: version for name in NETWORKS},
    )
    return FamilyExport([network_set(loaded, version)], [write])


def tiny(work: Path) -> FamilyExport:
    """Version set "base": every ``v1_*`` network of the tiny preset at version 1."""
    print(f"tiny acestep_v1: exporting {', '.join(NETWORKS)} as version 1", flush=True)
    return from_checkpoint(tiny_preset(work), version=1, version_set=DEFAULT_VERSION_SET)
