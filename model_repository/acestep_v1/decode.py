"""Overlapped (chunked) decoding of ACE-Step v1 latents for songs past the trained length, on callables.

Serving-time library code (the sampler plugs in its ``v1_dcae_decoder``/``v1_vocoder`` calls; the export package plugs
in the torch modules): latents -> log-mel by overlapping DCAE windows, log-mel -> 44.1 kHz by fixed vocoder windows
joined with a linear crossfade (the original's ``decode_overlap``). Memory stays bounded at any length.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F

# The DCAE compresses time by 8 (f8c8), the vocoder hop is 512 samples: one latent frame = 4096 samples at 44.1 kHz,
# i.e. 44100 / 4096 = 10.77 latent frames per second.
MEL_FRAMES_PER_LATENT = 8
HOP_LENGTH = 512
SAMPLES_PER_LATENT = MEL_FRAMES_PER_LATENT * HOP_LENGTH
# The vocoder's native rate and the service's output rate.
VOCODER_SAMPLE_RATE = 44100
OUTPUT_SAMPLE_RATE = 48000

# DCAE windows of 512 latent frames advanced by 256 with a quarter window (128 latents = 1024 mel frames) trimmed at
# inner edges; vocoder windows of 512 mel frames (262144 samples) advanced by 262144 - 2 * 1024 samples, joined with a
# 128-sample linear crossfade.
DCAE_WINDOW = 512
VOCODER_WINDOW_FRAMES = 512
VOCODER_OVERLAP = 1024
CROSSFADE = 128


def overlapped_mel(latents: torch.Tensor, decode: Any, window: int = DCAE_WINDOW) -> torch.Tensor:
    """Latents [1, 8, 16, L] -> log-mel [1, 2, 128, 8L] by windows of ``window`` latent frames.

    ``decode`` maps a latent window [1, 8, 16, w] to its mel [1, 2, 128, 8w] (e.g. :meth:`MusicDCAE.latents_to_mel`).
    Windows start every ``window / 2`` frames; each keeps its centre, a quarter window is trimmed at inner edges.
    """
    length = latents.shape[-1]
    if length == 0:
        raise ValueError("latents have no frames")
    offset, hop, trim = window // 4, window // 2, window // 4 * MEL_FRAMES_PER_LATENT
    anchors = list(range(offset, length - offset, hop)) or [offset]
    pieces = []
    for i, anchor in enumerate(anchors):
        start = max(0, anchor - offset)
        segment = latents[..., start : min(length, start + window)]
        mel = decode(segment)
        first, last = i == 0, i == len(anchors) - 1
        if first and last:
            mel = mel[..., : segment.shape[-1] * MEL_FRAMES_PER_LATENT]
        elif first:
            mel = mel[..., :-trim]
        elif last:
            mel = mel[..., trim:]
        else:
            mel = mel[..., trim:-trim]
        pieces.append(mel)
    return torch.cat(pieces, dim=-1)


def overlapped_wave(mel: torch.Tensor, vocode: Any, window_frames: int = VOCODER_WINDOW_FRAMES,
                    overlap: int = VOCODER_OVERLAP, crossfade: int = CROSSFADE) -> torch.Tensor:
    """Log-mel [N, 128, M] (one channel per row) -> 44.1 kHz waveform [N, 512 M] by fixed vocoder windows.

    ``vocode`` maps [N, 128, window_frames] to [N, 1, 512 * window_frames]; short windows are zero-padded to that
    size (fixed shapes). Inner edges lose ``overlap`` samples and are joined with a linear crossfade.
    """
    frames = mel.shape[-1]
    total = frames * HOP_LENGTH
    window = window_frames * HOP_LENGTH
    hop = window - 2 * overlap

    def block(start_frame: int) -> torch.Tensor:
        chunk = mel[..., start_frame : start_frame + window_frames]
        if chunk.shape[-1] < window_frames:
            chunk = F.pad(chunk, (0, window_frames - chunk.shape[-1]))
        return vocode(chunk).reshape(mel.shape[0], -1)

    out = block(0)[:, :-overlap]
    fade_out = torch.linspace(1, 0, crossfade, dtype=out.dtype, device=out.device)
    fade_in = torch.linspace(0, 1, crossfade, dtype=out.dtype, device=out.device)
    pos = hop
    while pos < total:
        start_frame = pos // HOP_LENGTH
        if start_frame >= frames:
            break
        new = block(start_frame)
        cf = min(crossfade, out.shape[-1], new.shape[-1] - (overlap - crossfade))
        if cf > 0:
            mixed = out[:, -cf:] * fade_out[:cf] + new[:, overlap - cf : overlap] * fade_in[:cf]
            out = torch.cat([out[:, :-cf], mixed], dim=-1)
        tail = new[:, overlap:] if pos + hop >= total else new[:, overlap:-overlap]
        out = torch.cat([out, tail], dim=-1)
        pos += hop
    return out[:, :total]
