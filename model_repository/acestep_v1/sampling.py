"""Sampler math for the ACE-Step v1 (DCAE family) model: schedule, Euler step, guidance and seeded noise.

Library code for the v1 sampler model (and its tests): pure functions over torch tensors, no Triton imports. The
numbers reproduce the original ACE-Step v1 pipeline exactly (see ``shared/reference/acestep-v1/tiny/README.md``):

* **Schedule.** Flow matching with ``shift`` (3.0) applied *twice*: the scheduler's construction shifts its training
  sigmas, and ``set_timesteps`` spaces the inference sigmas linearly between the already-shifted ``sigma_max`` and
  ``sigma_min`` and shifts them again. So the last non-zero sigma of a 60-step schedule is 0.0089286, not 0.0029940.
* **Euler step with omega.** ``dx = (sigma_next - sigma) * v``; its mean ``m`` over *all* elements (batch included)
  is kept and the rest is scaled by ``omega' = 0.9 + 0.2 / (1 + exp(-0.1 * omega))``.
* **Guidance.** APG (momentum -0.75, norm threshold 2.5, projection in float64), CFG, CFG-zero* and the double
  condition (text / lyric) variant; guidance is applied only inside a centred interval of the steps, optionally with
  a linear decay towards ``min_guidance_scale``.
* **Noise.** One ``torch.Generator`` per batch row, ``randn`` drawn row by row (as diffusers' ``randn_tensor``).
"""

from __future__ import annotations

import logging
import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch

logger = logging.getLogger(__name__)

# The DiT was trained with 1000 discrete flow-matching timesteps; sigma = t / 1000.
NUM_TRAIN_TIMESTEPS = 1000
# The pipeline's scheduler shift.
DEFAULT_SHIFT = 3.0
# APG defaults of the original pipeline.
APG_MOMENTUM = -0.75
APG_NORM_THRESHOLD = 2.5
GUIDANCE_TYPES = ("apg", "cfg", "cfg_star")


def _shift(sigmas: np.ndarray | torch.Tensor, shift: float) -> np.ndarray | torch.Tensor:
    """The flow-matching timestep shift: ``shift * s / (1 + (shift - 1) * s)``."""
    return shift * sigmas / (1 + (shift - 1) * sigmas)


@dataclass(frozen=True)
class FlowSchedule:
    """An inference schedule. ``sigmas`` has one more entry than ``timesteps`` (the trailing 0)."""

    timesteps: torch.Tensor  # float32 [N], sigma * 1000
    sigmas: torch.Tensor  # float32 [N + 1]
    # The scheduler's construction-time bounds (already shifted once); audio2audio mixes with ``init_sigma_max``.
    init_sigma_max: float
    init_sigma_min: float

    @property
    def num_steps(self) -> int:
        return int(self.timesteps.shape[0])


def flow_match_schedule(
    num_steps: int,
    shift: float = DEFAULT_SHIFT,
    sigma_max: float = 1.0,
    num_train_timesteps: int = NUM_TRAIN_TIMESTEPS,
) -> FlowSchedule:
    """The Euler flow-matching schedule of ``num_steps`` steps (the original scheduler's double shift included).

    ``sigma_max`` < 1 is the audio2audio case: the training grid then stops at ``sigma_max * 1000``.
    """
    if num_steps < 1:
        raise ValueError(f"num_steps must be >= 1, got {num_steps}")
    if not 0.0 < sigma_max <= 1.0:
        raise ValueError(f"sigma_max must be in (0, 1], got {sigma_max}")
    if shift <= 0:
        raise ValueError(f"shift must be > 0, got {shift}")
    # Construction: a float32 grid of training timesteps, descending, shifted once (in float32, as torch does).
    grid = np.linspace(1.0, sigma_max * num_train_timesteps, num_train_timesteps, dtype=np.float32)[::-1].copy()
    train_sigmas = _shift(torch.from_numpy(grid) / num_train_timesteps, shift)
    init_max = float(train_sigmas[0].item())
    init_min = float(train_sigmas[-1].item())
    # set_timesteps: linear in float64 between the shifted bounds, shifted again, then float32.
    lin = np.linspace(init_max * num_train_timesteps, init_min * num_train_timesteps, num_steps) / num_train_timesteps
    sigmas = torch.from_numpy(np.asarray(_shift(lin, shift))).to(torch.float32)
    timesteps = sigmas * num_train_timesteps
    return FlowSchedule(
        timesteps=timesteps,
        sigmas=torch.cat([sigmas, torch.zeros(1, dtype=torch.float32)]),
        init_sigma_max=init_max,
        init_sigma_min=init_min,
    )


def audio2audio_schedule(num_steps: int, ref_audio_strength: float, shift: float = DEFAULT_SHIFT) -> FlowSchedule:
    """The audio2audio schedule: ``sigma_max = 1 - strength`` and ``int(sigma_max * num_steps)`` steps."""
    if not 0.0 <= ref_audio_strength < 1.0:
        raise ValueError(f"ref_audio_strength must be in [0, 1), got {ref_audio_strength}")
    sigma_max = 1.0 - ref_audio_strength
    return flow_match_schedule(max(1, int(sigma_max * num_steps)), shift=shift, sigma_max=sigma_max)


def audio2audio_start(ref_latents: torch.Tensor, noise: torch.Tensor, schedule: FlowSchedule) -> torch.Tensor:
    """The audio2audio start point. The original mixes with the scheduler's *construction* ``sigma_max`` (0.75 for
    strength 0.5) although its first inference sigma is 0.9; this reproduces that."""
    return ref_latents * (1 - schedule.init_sigma_max) + noise * schedule.init_sigma_max


def omega_rescale(omega: float) -> float:
    """Map the user's ``omega_scale`` to the Euler step's multiplier: a logistic from 0.9 to 1.1 with slope 0.1."""
    return 0.9 + 0.2 / (1.0 + math.exp(-0.1 * float(omega)))


def euler_step(
    sample: torch.Tensor, model_output: torch.Tensor, sigma: float | torch.Tensor, sigma_next: float | torch.Tensor,
    omega: float = 0.0,
) -> torch.Tensor:
    """One Euler step with the omega mean-shift: the mean of ``dx`` over all elements is kept, the rest scaled."""
    scale = omega_rescale(omega)
    dx = (sigma_next - sigma) * model_output
    m = dx.mean()
    return (sample.to(torch.float32) + ((dx - m) * scale + m)).to(model_output.dtype)


class MomentumBuffer:
    """APG's running average: ``avg = update + momentum * avg`` (starts at 0)."""

    def __init__(self, momentum: float = APG_MOMENTUM) -> None:
        self.momentum = momentum
        self.running_average: torch.Tensor | float = 0.0

    def update(self, value: torch.Tensor) -> torch.Tensor:
        self.running_average = value + self.momentum * self.running_average
        return self.running_average  # type: ignore[return-value]


def _project(v0: torch.Tensor, v1: torch.Tensor, dims: Sequence[int]) -> tuple[torch.Tensor, torch.Tensor]:
    """Split ``v0`` into its parts parallel and orthogonal to ``v1`` (per slice over ``dims``), in float64."""
    dtype = v0.dtype
    a, b = v0.double(), v1.double()
    unit = b / b.norm(p=2, dim=list(dims), keepdim=True).clamp_min(1e-12)
    parallel = (a * unit).sum(dim=list(dims), keepdim=True) * unit
    return parallel.to(dtype), (a - parallel).to(dtype)


def apg(
    cond: torch.Tensor,
    uncond: torch.Tensor,
    guidance_scale: float,
    momentum_buffer: MomentumBuffer | None = None,
    eta: float = 0.0,
    norm_threshold: float = APG_NORM_THRESHOLD,
    dims: Sequence[int] = (-1, -2),
) -> torch.Tensor:
    """Adaptive projected guidance. Norms are over ``dims`` (H, W of the [B, C, H, W] latent) per (b, c)."""
    diff = cond - uncond
    if momentum_buffer is not None:
        diff = momentum_buffer.update(diff)
    if norm_threshold > 0:
        norm = diff.norm(p=2, dim=list(dims), keepdim=True)
        diff = diff * torch.minimum(torch.ones_like(diff), norm_threshold / norm)
    parallel, orthogonal = _project(diff, cond, dims)
    return cond + (guidance_scale - 1) * (orthogonal + eta * parallel)


def cfg(cond: torch.Tensor, uncond: torch.Tensor, guidance_scale: float) -> torch.Tensor:
    """Classifier-free guidance."""
    return uncond + guidance_scale * (cond - uncond)


def cfg_zero_star(
    cond: torch.Tensor, uncond: torch.Tensor, guidance_scale: float, step: int, zero_steps: int = 1,
    use_zero_init: bool = True,
) -> torch.Tensor:
    """CFG-zero*: the unconditional branch scaled by the optimal ``alpha`` per row; zero for the first steps."""
    if use_zero_init and step <= zero_steps:
        return cond * 0.0
    bsz = cond.shape[0]
    pos, neg = cond.reshape(bsz, -1), uncond.reshape(bsz, -1)
    alpha = (pos * neg).sum(dim=1, keepdim=True) / ((neg**2).sum(dim=1, keepdim=True) + 1e-8)
    alpha = alpha.view(bsz, *([1] * (cond.dim() - 1)))
    return uncond * alpha + guidance_scale * (cond - uncond * alpha)


def cfg_double_condition(
    cond: torch.Tensor, uncond: torch.Tensor, only_text_cond: torch.Tensor, guidance_scale_text: float,
    guidance_scale_lyric: float,
) -> torch.Tensor:
    """Separate text and lyric guidance: uncond -> text-only (scale_text) -> full condition (scale_lyric)."""
    return (
        (1 - guidance_scale_text) * uncond
        + (guidance_scale_text - guidance_scale_lyric) * only_text_cond
        + guidance_scale_lyric * cond
    )


def uses_double_condition(guidance_scale_text: float | None, guidance_scale_lyric: float | None) -> bool:
    """The pipeline switches to double-condition guidance when both scales exceed 1."""
    text, lyric = guidance_scale_text or 0.0, guidance_scale_lyric or 0.0
    return text > 1.0 and lyric > 1.0


def guidance_interval(num_steps: int, interval: float) -> tuple[int, int]:
    """``[start, end)`` of the steps that get guidance: the centred fraction ``interval`` of the schedule."""
    if not 0.0 <= interval <= 1.0:
        raise ValueError(f"guidance_interval must be in [0, 1], got {interval}")
    return int(num_steps * ((1 - interval) / 2)), int(num_steps * (interval / 2 + 0.5))


def guidance_scale_at(
    step: int, start: int, end: int, guidance_scale: float, decay: float = 0.0, min_guidance_scale: float = 3.0
) -> float:
    """The guidance scale at ``step``; 0.0 means "no guidance: evaluate the condition only".

    Guidance is off when ``guidance_scale`` is 0 or 1 or ``step`` is outside ``[start, end)``. With ``decay`` > 0 the
    scale falls linearly from ``guidance_scale`` at ``start`` towards ``min_guidance_scale`` at ``end - 1``.
    """
    if guidance_scale in (0.0, 1.0) or not start <= step < end:
        return 0.0
    if decay > 0:
        progress = (step - start) / (end - start - 1) if end - start > 1 else 0.0
        return guidance_scale - (guidance_scale - min_guidance_scale) * progress * decay
    return guidance_scale


def seeded_noise(shape: Sequence[int], seeds: Sequence[int], dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """Gaussian noise with one CPU generator per batch row, seeded ``seeds[i]`` (rows drawn one after another)."""
    shape = tuple(int(s) for s in shape)
    if len(seeds) != shape[0]:
        raise ValueError(f"seeds: need one seed per batch row ({shape[0]}), got {len(seeds)}")
    rows = []
    for seed in seeds:
        gen = torch.Generator(device="cpu").manual_seed(int(seed))
        rows.append(torch.randn((1, *shape[1:]), generator=gen, dtype=dtype))
    return torch.cat(rows, dim=0)


def guide(
    cfg_type: str,
    cond: torch.Tensor,
    uncond: torch.Tensor,
    guidance_scale: float,
    step: int,
    momentum_buffer: MomentumBuffer | None = None,
    only_text_cond: torch.Tensor | None = None,
    guidance_scale_text: float = 0.0,
    guidance_scale_lyric: float = 0.0,
    zero_steps: int = 1,
    use_zero_init: bool = True,
) -> torch.Tensor:
    """The pipeline's guided prediction for one in-interval step: double condition when ``only_text_cond`` is given
    and both text/lyric scales exceed 1, else ``cfg_type`` (``apg`` | ``cfg`` | ``cfg_star``)."""
    if only_text_cond is not None and uses_double_condition(guidance_scale_text, guidance_scale_lyric):
        return cfg_double_condition(cond, uncond, only_text_cond, guidance_scale_text, guidance_scale_lyric)
    if cfg_type == "apg":
        return apg(cond, uncond, guidance_scale, momentum_buffer)
    if cfg_type == "cfg":
        return cfg(cond, uncond, guidance_scale)
    if cfg_type == "cfg_star":
        return cfg_zero_star(cond, uncond, guidance_scale, step, zero_steps, use_zero_init)
    raise ValueError(f"cfg_type={cfg_type!r} is not supported; use one of {', '.join(GUIDANCE_TYPES)}")
