"""Shared by the stems tests: where the tiny stems presets of the session's repository are, and a reference."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import torch

from export.stems.checkpoint import SeparationModel, load
from export.stems.presets import SIGNATURES, build_tiny


def preset_folder(tiny_work: Path) -> Path:
    """``work/presets/stems-tiny`` of the session's tiny export (or of TRITONE_TEST_REPOSITORY's export)."""
    reuse = os.environ.get("TRITONE_TEST_REPOSITORY")
    work = Path(reuse).parent / f".{Path(reuse).name}-work" if reuse else tiny_work
    return work / "presets" / "stems-tiny"


def tiny_model(folder: Path, sources: int) -> SeparationModel:
    return load(next(folder.glob(f"{SIGNATURES[sources]}-*.th")))


def tiny_bag(tmp_path: Path) -> SeparationModel:
    """A bag of two tiny 4-source members (htdemucs_ft's layout: a .yaml and its members) with per-source weights."""
    bag = tmp_path / "bag"
    bag.mkdir()
    for i, seed in enumerate((1, 2)):
        member = build_tiny(tmp_path / str(i), sources=4, seed=seed)
        (bag / f"m{i}-{member.stem.split('-')[1]}.th").write_bytes(member.read_bytes())
    (bag / "tiny_ft.yaml").write_text("models: ['m0', 'm1']\nweights: [[1., 0., 0.5, 0.], [0., 1., 0.5, 1.]]\n")
    return load(bag)


def reference(model: SeparationModel, audio: np.ndarray, overlap: float = 0.25) -> np.ndarray:
    """``demucs_infer.apply.apply_model`` (deterministic: no random shifts) on [2, samples] -> [S, 2, samples]."""
    from demucs_infer.apply import apply_model

    with torch.no_grad():
        out = apply_model(model.reference(), torch.from_numpy(audio)[None], shifts=0, split=True, overlap=overlap)
    return out[0].numpy()


def song(seconds: float, rate: int = 44100, seed: int = 0) -> np.ndarray:
    """A stereo test signal: a few partials, a pulse train and noise, scaled like music (peak ~0.5)."""
    rng = np.random.default_rng(seed)
    t = np.arange(int(seconds * rate)) / rate
    tone = sum(np.sin(2 * np.pi * f * t + rng.uniform(0, 6)) / (i + 1) for i, f in enumerate((110, 220, 330, 880)))
    pulse = (np.sin(2 * np.pi * 2 * t) > 0.95).astype(np.float64)
    left = 0.2 * tone + 0.3 * pulse + 0.05 * rng.standard_normal(t.size)
    right = 0.2 * np.roll(tone, 37) + 0.3 * pulse + 0.05 * rng.standard_normal(t.size)
    return np.stack([left, right]).astype(np.float32)


def relative_error(got: np.ndarray, want: np.ndarray) -> float:
    return float(np.abs(got.astype(np.float64) - want).max() / max(np.abs(want).max(), 1e-12))
