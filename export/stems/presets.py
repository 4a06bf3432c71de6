"""The ``tiny`` stems presets: ``demucs_infer.htdemucs.HTDemucs`` at toy size, seeded, saved as Demucs packages
(``<signature>-<sha256 prefix>.th``, the format and naming of Meta's files), so tests, benches and real deployments
share one loading path (:func:`export.stems.checkpoint.load`).

Sizes: depth 3 over a 4096-point STFT leaves 2048 / 4^3 = 32 frequency rows at the transformer, and a 1 s segment
44 frames, about 1,400 tokens (the real ``htdemucs``: depth 4, 7.8 s, about 2,700). Depth 2 would leave ~11,000
tokens and an attention matrix of several GB per segment.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

from export.stems.checkpoint import save_package
from model_repository.stems.sets import STEM_SETS

TINY = dict(
    audio_channels=2,
    channels=8,
    depth=3,
    t_layers=1,
    t_hidden_scale=1.0,
    t_heads=2,
    bottom_channels=0,
    samplerate=44100,
    segment=1,
)
SIGNATURES = {4: "tinyhtdemucs", 6: "tinyhtdemucs6s"}


def build_tiny_model(*, sources: int = 4, seed: int = 0):
    """The tiny HTDemucs in memory (deterministic in ``seed``)."""
    import torch
    from demucs_infer.htdemucs import HTDemucs

    torch.manual_seed(seed)
    return HTDemucs(sources=list(STEM_SETS[sources]), **TINY).eval()


def build_tiny(folder: Path, *, sources: int = 4, seed: int = 0) -> Path:
    """Write the tiny preset into ``folder`` (skipped when present); returns the ``.th`` file."""
    folder = Path(folder)
    signature = SIGNATURES[sources]
    existing = sorted(folder.glob(f"{signature}-*.th"))
    if existing:
        return existing[0]
    tmp = save_package(build_tiny_model(sources=sources, seed=seed), folder / f"{signature}.th")
    digest = hashlib.sha256(tmp.read_bytes()).hexdigest()[:8]
    return tmp.rename(folder / f"{signature}-{digest}.th")
