"""Putting an edit back together with its source, sample-exact (pure numpy, 48 kHz stereo ``[2, samples]``).

- :func:`splice` — ``extend`` and ``replace_section``: outside the edited windows the result IS the source (the
  samples are copied, so it equals the source up to the output format's quantisation); inside, the generated audio,
  reached by a linear crossfade of :data:`CROSSFADE_S` that lies inside the window, next to each kept region.
- :func:`mix` — the swaps: the kept stem plus the new one, scaled down together only where the sum would clip.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

# The crossfade between kept source and generated audio, inside the edited window (docs/edits.md).
CROSSFADE_S = 0.1


def edit_weight(
    samples: int, windows: Sequence[tuple[float, float]], *, rate: int, crossfade_s: float = CROSSFADE_S
) -> np.ndarray:
    """[samples] float32: 0 where the source is kept, 1 inside the edited ``windows`` (seconds, end exclusive), a
    linear ramp of ``crossfade_s`` at each window edge that borders kept audio (not at the song's own ends)."""
    weight = np.zeros(samples, np.float32)
    fade = max(1, int(round(crossfade_s * rate)))
    for start_s, end_s in windows:
        start, end = max(0, int(round(start_s * rate))), min(samples, int(round(end_s * rate)))
        if end <= start:
            continue
        w = np.ones(end - start, np.float32)
        n = min(fade, (end - start) // 2)
        ramp = (np.arange(1, n + 1, dtype=np.float32) / (n + 1)) if n else np.zeros(0, np.float32)
        if start > 0 and n:
            w[:n] = ramp
        if end < samples and n:
            w[-n:] = np.minimum(w[-n:], ramp[::-1])
        weight[start:end] = np.maximum(weight[start:end], w)
    return weight


def _fit(audio: np.ndarray, length: int) -> np.ndarray:
    """``audio`` [..., S] cut or zero-padded to ``length`` samples."""
    out = np.zeros((*audio.shape[:-1], length), np.float32)
    n = min(length, audio.shape[-1])
    out[..., :n] = audio[..., :n]
    return out


def splice(
    source: np.ndarray, generated: np.ndarray, windows: Sequence[tuple[float, float]], *, rate: int,
    crossfade_s: float = CROSSFADE_S, length: int | None = None,
) -> np.ndarray:
    """``generated`` [B, 2, S] with the source [2, S'] kept outside ``windows``, ``length`` samples long (None:
    ``generated``'s; a family whose decoder rounds to its own frame size is cut back to the source's). Past the
    source's end (what an extend adds) counts as edited."""
    length = generated.shape[-1] if length is None else length
    n = min(length, source.shape[-1])
    covered = list(windows) + ([(n / rate, length / rate)] if n < length else [])
    w = edit_weight(length, covered, rate=rate, crossfade_s=crossfade_s)
    return (_fit(source, length)[None] * (1.0 - w) + _fit(generated, length) * w).astype(np.float32)


def mix(kept: np.ndarray, new: np.ndarray) -> np.ndarray:
    """``kept`` [2, S] + each of ``new`` [B, 2, S'] (cut or padded to S); scaled by one factor per item only if
    the sum would exceed full scale, so the kept stem's share stays exact otherwise."""
    out = kept[None].astype(np.float32) + _fit(new, kept.shape[-1])
    peak = np.abs(out).reshape(out.shape[0], -1).max(axis=1)
    scale = np.where(peak > 1.0, 1.0 / np.maximum(peak, 1e-9), 1.0).astype(np.float32)
    return out * scale[:, None, None]
