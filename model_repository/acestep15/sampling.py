"""The sampler's math for ACE-Step 1.5: timestep schedule, guidance (APG, ADG), Euler steps, output normalisation.

Pure functions over torch tensors in the unpadded song layout [B, T, C]; the served sampler and the tests import this
module directly. Where diffusers has the code (the flow-matching Euler scheduler, APG's ``normalized_guidance`` and its
momentum buffer) it is imported, not rewritten. ADG — "angle-based dynamic guidance", ``use_adg`` in the ACE-Step 1.5
sources — is not in diffusers and is implemented here from its formula.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
from diffusers.guiders.adaptive_projected_guidance import MomentumBuffer, normalized_guidance
from diffusers.schedulers import FlowMatchEulerDiscreteScheduler

# APG as ACE-Step 1.5 base/SFT run it (diffusers' AceStepPipeline uses the same constants).
APG_MOMENTUM = -0.75
APG_NORM_THRESHOLD = 2.5
# ADG clips the rotated angle at pi/6; ACE-Step writes the constant as 3.14 / 6.
ADG_ANGLE_CLIP = 3.14 / 6
# Output loudness: peak-normalise to -1 dBFS after an anti-clip pass (what AceStepPipeline does).
TARGET_PEAK = 10.0 ** (-1.0 / 20.0)


def timestep_schedule(num_steps: int, shift: float, timesteps: Sequence[float] | None = None) -> list[float]:
    """Sigmas from 1 (noise) towards 0, terminal 0 excluded: ``t' = s t / (1 + (s - 1) t)`` on a linear grid.

    Explicit ``timesteps`` override steps and shift. Computed in float32 like the pipeline, so the floats match.
    """
    if timesteps is not None:
        return [float(t) for t in torch.tensor(list(timesteps), dtype=torch.float32)]
    t = torch.linspace(1.0, 0.0, num_steps + 1, dtype=torch.float32)
    if shift != 1.0:
        t = shift * t / (1 + (shift - 1) * t)
    return [float(v) for v in t[:-1]]


def make_scheduler(sigmas: Sequence[float]) -> FlowMatchEulerDiscreteScheduler:
    """diffusers' flow-matching Euler scheduler, consuming the sigmas verbatim (it appends the terminal 0)."""
    scheduler = FlowMatchEulerDiscreteScheduler(num_train_timesteps=1, shift=1.0)
    scheduler.set_timesteps(sigmas=list(sigmas))
    return scheduler


def cfg_active(t: float, start: float, end: float) -> bool:
    """Guidance applies when the denoising progress ``1 - t`` lies in [start, end]."""
    ratio = 1.0 - t
    return start <= ratio <= end


def new_momentum() -> MomentumBuffer:
    return MomentumBuffer(momentum=APG_MOMENTUM)


def apg(cond: torch.Tensor, uncond: torch.Tensor, guidance_scale: float, momentum: MomentumBuffer) -> torch.Tensor:
    """Adaptive projected guidance as ACE-Step 1.5 uses it: ``cond + (scale - 1) * update`` with a momentum-averaged
    difference, clipped to norm 2.5 along time, keeping only its component orthogonal to ``cond``."""
    return normalized_guidance(
        pred_cond=cond,
        pred_uncond=uncond,
        guidance_scale=guidance_scale - 1.0,
        momentum_buffer=momentum,
        eta=0.0,
        norm_threshold=APG_NORM_THRESHOLD,
        use_original_formulation=True,
        norm_dim=(1,),
    )


def adg(
    latents: torch.Tensor,
    cond: torch.Tensor,
    uncond: torch.Tensor,
    sigma: float | torch.Tensor,
    guidance_scale: float,
    angle_clip: float = ADG_ANGLE_CLIP,
) -> torch.Tensor:
    """Angle-based dynamic guidance for flow matching.

    Each frame's predicted clean sample ``x0 = x - sigma * v`` is a vector over channels. ADG rotates the conditional
    prediction away from the unconditional one by the angle between them scaled by ``w = max(scale - 1, 0) + 1e-3``
    (clipped to ``angle_clip``), instead of extrapolating along their difference:

        theta = angle(x0_c, x0_u);  theta' = clip(w * theta, -clip, clip)
        x0' = cos(theta') * x0_c + perp * sin(theta') / sin(theta)      (perp * w where sin(theta) <= 1e-3)

    with ``perp`` the part of ``x0_c - x0_u`` orthogonal to ``x0_u``; the guided velocity is ``(x - x0') / sigma``.
    """
    batch, frames, channels = cond.shape
    sig = torch.as_tensor(sigma, dtype=torch.float64).reshape(-1, 1, 1)
    weight = guidance_scale - 1.0
    weight = weight * (weight > 0) + 1e-3
    x = latents.double()
    x0_cond = x - sig * cond.double()
    x0_uncond = x - sig * uncond.double()
    diff = x0_cond - x0_uncond
    norms = torch.linalg.vector_norm(x0_cond, dim=-1, keepdim=True) * torch.linalg.vector_norm(
        x0_uncond, dim=-1, keepdim=True
    )
    cos = (x0_cond * x0_uncond).sum(-1, keepdim=True) / norms
    theta = torch.acos(cos.clamp(-1.0 + 1e-6, 1.0 - 1e-6))
    theta_new = torch.clamp(weight * theta, -angle_clip, angle_clip)
    parallel = (diff * x0_uncond).sum(-1, keepdim=True) / ((x0_uncond * x0_uncond).sum(-1, keepdim=True) + 1e-8)
    perp = diff - parallel * x0_uncond
    sin = torch.sin(theta)
    safe = sin > 1e-3
    rotated = torch.where(
        safe, perp * torch.sin(theta_new) / torch.where(safe, sin, torch.ones_like(sin)), perp * weight
    )
    x0_new = torch.cos(theta_new) * x0_cond + rotated
    guided = (x - x0_new) / sig
    return guided.reshape(batch, frames, channels).to(latents.dtype)


def normalize_audio(audio: torch.Tensor) -> torch.Tensor:
    """[B, 2, S] -> anti-clip (divide by a peak above 1) then peak-normalise each item to -1 dBFS."""
    audio = audio.float()
    peak = audio.abs().amax(dim=[1, 2], keepdim=True)
    if bool(torch.any(peak > 1.0)):
        audio = audio / peak.clamp(min=1.0)
    peak = audio.abs().amax(dim=[1, 2], keepdim=True).clamp(min=1e-6)
    return audio * (TARGET_PEAK / peak)


def latent_frames(duration_s: float, frames_per_second: float) -> int:
    """Frames for a duration: ceil(duration * 25) for 48 kHz audio at 1920 samples per frame."""
    return math.ceil(duration_s * frames_per_second)
