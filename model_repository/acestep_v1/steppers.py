"""The original ACE-Step v1 schedulers' steps: Euler with the omega mean-shift, and Heun (``2N - 1`` evaluations)."""

from __future__ import annotations

import torch

from model_repository.acestep_v1 import sampling


class EulerStepper:
    """The original Euler scheduler's step with the omega mean-shift."""

    def __init__(self, schedule: sampling.FlowSchedule, omega: float) -> None:
        self.schedule, self.omega = schedule, omega

    @property
    def timesteps(self) -> torch.Tensor:
        return self.schedule.timesteps

    def step(self, index: int, velocity: torch.Tensor, sample: torch.Tensor) -> torch.Tensor:
        sigmas = self.schedule.sigmas
        return sampling.euler_step(sample, velocity, sigmas[index], sigmas[index + 1], omega=self.omega)


class HeunStepper:
    """The original Heun scheduler: timesteps ``[t0, t1, t1, ..., t_{N-1}, t_{N-1}]`` (``2N - 1`` evaluations);
    even evaluations take an Euler step and remember it, odd ones redo it with the mean of both slopes. Both apply the
    omega mean-shift."""

    def __init__(self, schedule: sampling.FlowSchedule, omega: float) -> None:
        sig = schedule.sigmas  # [N + 1], ends in 0
        self._timesteps = torch.cat([schedule.timesteps[:1], schedule.timesteps[1:].repeat_interleave(2)])
        self._sigmas = torch.cat([sig[:1], sig[1:-1].repeat_interleave(2), sig[-1:]])
        self.omega = sampling.omega_rescale(omega)
        self._first: tuple[torch.Tensor, torch.Tensor, torch.Tensor] | None = None  # derivative, dt, sample

    @property
    def timesteps(self) -> torch.Tensor:
        return self._timesteps

    def step(self, index: int, velocity: torch.Tensor, sample: torch.Tensor) -> torch.Tensor:
        sample = sample.to(torch.float32)
        if self._first is None:
            sigma, sigma_next = self._sigmas[index], self._sigmas[index + 1]
            derivative = (sample - (sample - velocity * sigma)) / sigma
            dt = sigma_next - sigma
            self._first = (derivative, dt, sample)
        else:
            sigma_next = self._sigmas[index]
            first_derivative, dt, sample_before = self._first
            derivative = 0.5 * (first_derivative + (sample - (sample - velocity * sigma_next)) / sigma_next)
            sample = sample_before
            self._first = None
        dx = derivative * dt
        m = dx.mean()
        return (sample + ((dx - m) * self.omega + m)).to(velocity.dtype)
