"""ACE-Step v1 edits of a source song: the repaint window and the extension window (``extend``: audio added before or
after the song, the part past the DiT's 240 s kept aside unchanged)."""

from __future__ import annotations

from dataclasses import dataclass

import torch

from model_repository.acestep_v1.decode import SAMPLES_PER_LATENT, VOCODER_SAMPLE_RATE
from model_repository.sampler.request import RequestError, SamplerRequest


@dataclass
class EditWindow:
    """A repaint/extend edit: the source ``x0`` (zero-padded where the song grows), the start noise ``z0``, the mask
    of generated frames, and source frames kept aside past 240 s."""

    x0: torch.Tensor  # [1, 8, 16, T]
    z0: torch.Tensor  # [B, 8, 16, T]
    mask: torch.Tensor  # [1, 1, 1, T] bool
    keep_left: torch.Tensor
    keep_right: torch.Tensor


def frame(seconds: float) -> int:
    return int(seconds * VOCODER_SAMPLE_RATE / SAMPLES_PER_LATENT)

def is_window(req: SamplerRequest, frames: int) -> bool:
    """False when the repaint window covers the whole song (then it is a retake)."""
    assert req.repaint_start is not None and req.repaint_end is not None
    return frame(req.repaint_end) - frame(req.repaint_start) != frames

def edit_window(req: SamplerRequest, task: str, source: torch.Tensor, noise: torch.Tensor, retake: torch.Tensor,
            variance: torch.Tensor, *, max_frames: int) -> EditWindow:
    """The repaint/extend window of a request over the source latents [1, 8, 16, T]; request errors name the field."""
    assert req.repaint_start is not None and req.repaint_end is not None
    length = source.shape[-1]
    start, end = frame(req.repaint_start), frame(req.repaint_end)
    source_seconds = length * SAMPLES_PER_LATENT / VOCODER_SAMPLE_RATE
    empty = source[..., :0]
    if task == "repaint":
        if end > length:
            raise RequestError(
                f"sampler: field 'repaint_end' ({req.repaint_end:g} s) lies past the source's end "
                f"({source_seconds:.2f} s); to add audio after it use task_type 'extend'"
            )
        mask = torch.zeros((1, 1, 1, length), dtype=torch.bool)
        mask[..., start:end] = True
        mixed = torch.cos(variance) * noise + torch.sin(variance) * retake
        return EditWindow(source, torch.where(mask, mixed, noise), mask, empty, empty)
    left, right = max(0, -start), max(0, end - length)
    if left == 0 and right == 0:
        raise RequestError(
            "sampler: task_type 'extend' needs 'repaint_start' < 0 (seconds added before the song) or "
            f"'repaint_end' > the source's length ({source_seconds:.2f} s)"
        )
    for name, pad in (("repaint_start", left), ("repaint_end", right)):
        if pad > length:
            raise RequestError(
                f"sampler: field '{name}' extends the song by {pad} frames; at most the source's length "
                f"({source_seconds:.2f} s, {length} frames) can be added on one side"
            )
    limit = max_frames
    padded = torch.nn.functional.pad(source, (left, right))
    # Past the DiT's 240 s the source part farthest from the new audio is kept aside, unchanged.
    over = max(0, padded.shape[-1] - limit)
    keep_left, keep_right = empty, empty
    left_trim = right_trim = 0
    if over and left:
        right_trim = min(over, length)
        keep_right = padded[..., padded.shape[-1] - right_trim :]
        padded = padded[..., : padded.shape[-1] - right_trim]
    elif over:
        left_trim = min(over, length)
        keep_left = padded[..., :left_trim]
        padded = padded[..., left_trim:]
    if padded.shape[-1] > limit:
        raise RequestError(
            f"sampler: extending by {left + right} frames on both sides needs {padded.shape[-1]} frames at once; "
            f"family acestep_v1 generates at most {limit} (240 s): extend one side at a time"
        )
    mask = torch.zeros((1, 1, 1, padded.shape[-1]), dtype=torch.bool)
    if left:
        mask[..., :left] = True
    if right:
        mask[..., padded.shape[-1] - right :] = True
    parts = [retake[..., :left]] if left else []
    parts.append(noise[..., left_trim : length - right_trim])
    if right:
        parts.append(retake[..., length - right :])
    return EditWindow(padded, torch.cat(parts, dim=-1), mask, keep_left, keep_right)
