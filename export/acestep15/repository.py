"""The ACE-Step 1.5 family in a Triton model repository: its eight networks and the sampler's 1.5 assets.

Layout (beside the other families, :mod:`export.repository`)::

    repo/<network>/config.pbtxt, repo/<network>/<version>/model.onnx (or model.plan)
    repo/sampler/1/assets/pipeline.json                      dims, buckets, version sets, default set
    repo/sampler/1/assets/<version-set>/                     tokenizer, null condition, silence latent of that set

A checkpoint is a diffusers ``AceStepPipeline.save_pretrained`` folder.
"""

from __future__ import annotations

import functools
from collections.abc import Iterable, Mapping
from dataclasses import asdict
from pathlib import Path
from typing import Any

import numpy as np

from export.acestep15.networks import (
    ENCODER_BUCKETS,
    FRAME_BUCKETS,
    LYRIC_BUCKETS,
    MAX_LYRIC_TOKENS,
    MAX_TEXT_TOKENS,
    TEXT_BUCKETS,
    TIMBRE_FRAMES,
)
from export.repository import FamilyExport, NetworkSet, install_sampler
from model_repository.facts.families import ACESTEP15
from model_repository.facts.manifest import SamplerManifest

FAMILY = ACESTEP15
NETWORKS = (
    "text_encoder",
    "condition_encoder",
    "dit",
    "vae_decoder",
    "vae_encoder",
    "audio_tokenizer",
    "audio_detokenizer",
    "dit_align",
)
# Sizes of the example inputs the exporter traces with (any valid sizes work; the axes stay dynamic).
TRACE_SIZES = {"batch": 2, "frames": 250, "text": 40, "lyric": 70, "encoder": 111, "samples": 1920 * 20, "codes": 50}
LAYOUT_HINT = "a diffusers AceStepPipeline folder (model_index.json, transformer/, condition_encoder/, vae/ ...)"


def is_checkpoint(root: str | Path) -> bool:
    """True when ``root`` looks like a diffusers pipeline folder (the loader names anything missing)."""
    return (Path(root) / "model_index.json").is_file()


def network_set(
    pipe: Any, dims: Any, version: int, networks: Iterable[str] = NETWORKS, align_heads: list[Any] | None = None
) -> NetworkSet:
    """The ACE-Step 1.5 networks of a loaded ``AceStepPipeline``."""
    from export.acestep15.networks import build_contracts, wrappers

    return NetworkSet(build_contracts(dims), wrappers(pipe, align_heads), version, tuple(networks), dict(TRACE_SIZES))


def write_sampler(
    *, repo: Path, pipe: Any, dims: Any, version_set: str, versions: Mapping[str, int], variant: str,
    align_heads: list[Any] | None = None,
) -> Path:
    """The sampler model (if absent) and the assets of one version set (tokenizer, null condition, silence latent);
    returns the set's folder."""
    folder = SamplerManifest.folder(install_sampler(repo), FAMILY)
    manifest = SamplerManifest.read_or_new(
        folder,
        family=FAMILY,
        dims={k: v for k, v in asdict(dims).items() if k != "is_turbo"}
        | {"max_text_tokens": MAX_TEXT_TOKENS, "max_lyric_tokens": MAX_LYRIC_TOKENS, "timbre_frames": TIMBRE_FRAMES}
        # The (layer, head) pairs dit_align returns (export/acestep15/align.py: resolve_heads, alignment_heads.json).
        | {"align_heads": [list(pair) for pair in align_heads or []]},
        buckets={
            "frames": FRAME_BUCKETS,
            "text": TEXT_BUCKETS,
            "lyric": LYRIC_BUCKETS,
            "encoder": ENCODER_BUCKETS,
        },
    )
    manifest.add_version_set(version_set, versions, variant=variant, is_turbo=bool(dims.is_turbo))
    set_dir = folder / version_set
    set_dir.mkdir(parents=True, exist_ok=True)
    pipe.tokenizer.save_pretrained(set_dir / "tokenizer")
    cond = pipe.condition_encoder
    np.save(set_dir / "null_condition_emb.npy", cond.null_condition_emb.detach().float().numpy())
    # The timbre branch reads 30 s (750 frames) of it; cover/repaint tile it to the song length.
    np.save(set_dir / "silence_latent.npy", cond.silence_latent.detach().float().numpy()[0])
    manifest.write(folder)
    return set_dir


def _loaded(folder: Path, *, version: int, version_set: str | None, networks: Iterable[str] = NETWORKS,
            versions: Mapping[str, int] | None = None, variant: str | None = None) -> FamilyExport:
    from export.acestep15.align import resolve_heads
    from export.acestep15.checkpoint import load_pipeline, read_dims

    pipe = load_pipeline(folder)
    dims = read_dims(folder)
    heads = resolve_heads(pipe.transformer, folder)
    variant = variant or str(pipe.transformer.config.get("model_version") or ("turbo" if dims.is_turbo else "base"))
    write = functools.partial(
        write_sampler,
        pipe=pipe,
        dims=dims,
        version_set=version_set or variant,
        versions=dict(versions or {name: version for name in NETWORKS}),
        variant=variant,
        align_heads=heads,
    )
    return FamilyExport([network_set(pipe, dims, version, networks, heads)], [write])


def from_checkpoint(folder: Path, *, version: int, version_set: str | None) -> FamilyExport:
    """Every network of one checkpoint at ``version``, as version set ``version_set`` (default: its variant)."""
    return _loaded(folder, version=version, version_set=version_set)


# The tiny preset's version sets: (variant = set name, the DiT's version, the networks that variant exports).
TINY_SETS = (("turbo", 1, NETWORKS), ("sft", 2, ("dit", "dit_align")), ("base", 3, ("dit", "dit_align")))


def tiny(work: Path) -> FamilyExport:
    """Version set "turbo" = every network at version 1; "sft" and "base" = a DiT of that variant as ``dit`` (and
    ``dit_align``) version 2 and 3 with the same encoders and VAE — versions of one model, as in a real deployment that
    serves turbo, SFT and base weights. Only "base" runs the track tasks (extract, lego, complete)."""
    from export.acestep15.presets import build_tiny

    out = FamilyExport([], [])
    for variant, version, networks in TINY_SETS:
        folder = build_tiny(work / "presets" / f"acestep15-tiny-{variant}", variant=variant)  # type: ignore[arg-type]
        print(f"tiny {variant}: exporting {', '.join(networks)} as version {version}", flush=True)
        part = _loaded(
            folder,
            version=version,
            version_set=variant,
            networks=networks,
            versions={name: 1 for name in NETWORKS} | {"dit": version, "dit_align": version},
            variant=variant,
        )
        out.sets += part.sets
        out.writers += part.writers
    return out
