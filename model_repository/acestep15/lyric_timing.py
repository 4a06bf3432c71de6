"""The DiT's inputs padded to the buckets, and the lyric-timing request a song yields after its last step.

:func:`dit_inputs` is shared by the velocity calls (``dit``) and the timing call (``dit_align``), so both see the
same padding and masks. :func:`align_lyrics` follows upstream ACE-Step 1.5: the final latent re-noised to the last
step's level (``t = 1 / steps``, noise from each item's seed), one ``dit_align`` evaluation with the conditional
rows, and :func:`model_repository.acestep15.alignment.align` per item. The request goes through the step scheduler
like any other, so the timing calls of songs that finish together share one batched call; the alignment numpy is
yielded as host work, so the scheduler runs it off its loop thread while other songs keep stepping.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import torch

from model_repository.acestep15 import alignment
from model_repository.facts.families import ACESTEP15
from model_repository.sampler.protocol import Calls, bucket, host_work, network
from model_repository.sampler.request import RequestError

logger = logging.getLogger(__name__)

ALIGN_NETWORK = "dit_align"


def dit_inputs(
    buckets: Mapping[str, Sequence[int]], x: np.ndarray, t: float, encoder: np.ndarray, context: np.ndarray,
    *, encoder_lengths: Sequence[int] | None = None,
) -> dict[str, np.ndarray]:
    """``dit``'s inputs for these rows, padded to the frame and encoder buckets with masks (``encoder_lengths``: each
    row's valid encoder positions; None = all of ``encoder``'s)."""
    rows, frames, channels = x.shape
    fb = bucket(frames, buckets["frames"], "the song", ACESTEP15)
    eb = bucket(encoder.shape[1], buckets["encoder"], "the caption + lyrics condition", ACESTEP15)
    hidden = np.zeros((rows, fb, channels), np.float32)
    hidden[:, :frames] = x
    ctx = np.zeros((rows, fb, context.shape[-1]), np.float32)
    ctx[:, :frames] = context
    enc = np.zeros((rows, eb, encoder.shape[-1]), np.float32)
    enc[:, : encoder.shape[1]] = encoder
    latent_mask = np.zeros((rows, fb), np.int64)
    latent_mask[:, :frames] = 1
    lengths = np.full(rows, encoder.shape[1]) if encoder_lengths is None else np.asarray(encoder_lengths)
    enc_mask = (np.arange(eb)[None] < lengths[:, None]).astype(np.int64)
    ts = np.full((rows, 1), t, np.float32)
    return {
        "hidden_states": hidden,
        "timestep": ts,
        "timestep_r": ts,
        "encoder_hidden_states": enc,
        "encoder_attention_mask": enc_mask,
        "context_latents": ctx,
        "latent_mask": latent_mask,
    }


def align_lyrics(
    *,
    versions: Mapping[str, str],
    buckets: Mapping[str, Sequence[int]],
    tokens: alignment.LyricTokens,
    lyrics: str,
    latents: torch.Tensor,
    encoder: np.ndarray,
    context: np.ndarray,
    seeds: Sequence[int],
    steps: int,
    duration_s: float,
    patch_size: int = 2,
) -> Calls[list[dict[str, Any]]]:
    """Per item ``{lrc, aligned_lyrics, alignment_score}`` (``encoder``: the conditional rows [B, S, H])."""
    batch = latents.shape[0]
    n = len(tokens.positions)
    if n == 0:
        return [{"lrc": "", "aligned_lyrics": [], "alignment_score": 0.0} for _ in range(batch)]
    if ALIGN_NETWORK not in versions:
        raise RequestError(
            f"sampler: field 'align_lyrics' needs the '{ALIGN_NETWORK}' network, which this repository's version set "
            f"does not list; re-export the ACE-Step 1.5 checkpoint with `tritone export` (or send align_lyrics false)"
        )
    t = 1.0 / max(steps, 1)
    noise = torch.cat([torch.randn((1, *latents.shape[1:]), generator=torch.Generator().manual_seed(s)) for s in seeds])
    noisy = (t * noise + (1.0 - t) * latents).numpy()
    inputs = dit_inputs(buckets, noisy, t, encoder, context)
    lb = bucket(n, buckets["lyric"], "field 'lyrics'", ACESTEP15)
    positions = np.zeros((batch, lb), np.int64)
    positions[:, :n] = tokens.positions
    inputs["lyric_positions"] = positions
    out = yield from network(ALIGN_NETWORK, versions[ALIGN_NETWORK], inputs, ["cross_attention"], "decode")
    patches = -(-latents.shape[1] // patch_size)
    # [B, heads, patches, lyric] -> per item [heads, tokens, patches], valid part only.
    maps = np.ascontiguousarray(out["cross_attention"][:, :, :patches, :n].transpose(0, 1, 3, 2))
    # The DTW and the rest (~0.24 s per 30 s song on CPU) as host work: off the step scheduler's loop thread.
    aligned: list[dict[str, Any]] = yield from host_work(
        lambda: [alignment.align(maps[i], tokens, lyrics, duration_s) for i in range(batch)]
    )
    return aligned
