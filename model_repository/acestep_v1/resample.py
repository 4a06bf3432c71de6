"""Band-limited resampling (windowed sinc, Hann window) in torch: the ACE-Step v1 vocoder's 44.1 kHz output to the
service's 48 kHz, and uploads back to 44.1 kHz for the v1 DCAE encoder.

Semantics of torchaudio's ``Resample`` with ``sinc_interp_hann`` (6 zero crossings, rolloff 0.99), which the original
pipeline uses; torchaudio has no CPU wheel for this environment, so it is written here and matches it to float
precision (``tests/export/acestep_v1/test_audio.py`` checks it against the reference data). Serving-time library
code: no export-side imports.
"""

from __future__ import annotations

import math
from functools import lru_cache

import torch
import torch.nn.functional as F


@lru_cache(maxsize=8)
def _sinc_kernel(orig: int, new: int, width_zero_crossings: int, rolloff: float) -> tuple[torch.Tensor, int]:
    """Polyphase kernel [new, 1, 2 * width + orig] (float32) for rates already divided by their gcd."""
    base = min(orig, new) * rolloff
    width = math.ceil(width_zero_crossings * orig / base)
    idx = torch.arange(-width, width + orig, dtype=torch.float64)[None, None] / orig
    t = (torch.arange(0, -new, -1)[:, None, None] / new).to(torch.float64) + idx
    t = (t * base).clamp(-width_zero_crossings, width_zero_crossings)
    window = torch.cos(t * math.pi / width_zero_crossings / 2) ** 2
    t = t * math.pi
    kernel = torch.where(t == 0, torch.ones_like(t), torch.sin(t) / torch.where(t == 0, torch.ones_like(t), t))
    return (kernel * window * (base / orig)).to(torch.float32), width


def resample(
    wave: torch.Tensor, orig_sr: int, new_sr: int, zero_crossings: int = 6, rolloff: float = 0.99
) -> torch.Tensor:
    """Band-limited resampling along the last axis; output length ``ceil(N * new / orig)``."""
    if orig_sr == new_sr:
        return wave
    g = math.gcd(int(orig_sr), int(new_sr))
    orig, new = int(orig_sr) // g, int(new_sr) // g
    kernel, width = _sinc_kernel(orig, new, zero_crossings, rolloff)
    shape = wave.shape
    flat = wave.reshape(-1, shape[-1])
    length = flat.shape[-1]
    padded = F.pad(flat, (width, width + orig))
    out = F.conv1d(padded[:, None], kernel.to(flat.dtype).to(flat.device), stride=orig)
    out = out.transpose(1, 2).reshape(flat.shape[0], -1)
    target = math.ceil(new * length / orig)
    return out[..., :target].reshape(*shape[:-1], -1)
