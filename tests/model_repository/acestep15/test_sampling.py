from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from model_repository.acestep15 import sampling as s


def _adg_reference(x, vc, vu, sigma, scale, clip=3.14 / 6):
    """The ADG formula written out frame by frame in numpy (float64)."""
    w = max(scale - 1.0, 0.0) + 1e-3
    out = np.zeros_like(x, dtype=np.float64)
    for b in range(x.shape[0]):
        for f in range(x.shape[1]):
            xc = x[b, f] - sigma * vc[b, f]
            xu = x[b, f] - sigma * vu[b, f]
            cos = float(np.dot(xc, xu) / (np.linalg.norm(xc) * np.linalg.norm(xu)))
            theta = math.acos(min(max(cos, -1 + 1e-6), 1 - 1e-6))
            new = min(max(w * theta, -clip), clip)
            d = xc - xu
            perp = d - (np.dot(d, xu) / (np.dot(xu, xu) + 1e-8)) * xu
            rot = perp * math.sin(new) / math.sin(theta) if math.sin(theta) > 1e-3 else perp * w
            out[b, f] = (x[b, f] - (math.cos(new) * xc + rot)) / sigma
    return out


@pytest.mark.parametrize("scale", [1.0, 3.0, 7.0, 15.0])
def test_adg_matches_the_formula(scale):
    g = torch.Generator().manual_seed(0)
    x, vc, vu = (torch.randn(2, 9, 8, generator=g, dtype=torch.float64) for _ in range(3))
    got = s.adg(x, vc, vu, 0.6, scale).numpy()
    want = _adg_reference(x.numpy(), vc.numpy(), vu.numpy(), 0.6, scale)
    np.testing.assert_allclose(got, want, rtol=1e-9, atol=1e-9)


def test_adg_with_identical_predictions_stays_finite_and_close_to_the_prediction():
    x, v = torch.randn(1, 4, 8, dtype=torch.float64), torch.randn(1, 4, 8, dtype=torch.float64)
    out = s.adg(x, v, v, 0.5, 7.0)
    assert torch.isfinite(out).all()
    np.testing.assert_allclose(out.numpy(), _adg_reference(x.numpy(), v.numpy(), v.numpy(), 0.5, 7.0), atol=1e-9)
    torch.testing.assert_close(out, v, rtol=1e-2, atol=1e-2)  # no angle to rotate by: almost unguided


def test_apg_matches_a_plain_reference_over_steps():
    g = torch.Generator().manual_seed(1)
    momentum, running = s.new_momentum(), torch.zeros(2, 6, 8, dtype=torch.float64)
    for _ in range(3):
        c, u = (
            torch.randn(2, 6, 8, generator=g, dtype=torch.float64),
            torch.randn(2, 6, 8, generator=g, dtype=torch.float64),
        )
        got = s.apg(c, u, 5.0, momentum)
        running = (c - u) + -0.75 * running
        diff = running * torch.clamp(2.5 / running.norm(dim=1, keepdim=True), max=1.0)
        unit = c / c.norm(dim=1, keepdim=True)
        orth = diff - (diff * unit).sum(dim=1, keepdim=True) * unit
        torch.testing.assert_close(got, c + 4.0 * orth)


def test_schedule_shift_and_explicit_timesteps():
    sched = s.timestep_schedule(4, 3.0)
    lin = np.linspace(1, 0, 5)[:-1]
    np.testing.assert_allclose(sched, 3 * lin / (1 + 2 * lin), rtol=1e-6)
    assert s.timestep_schedule(4, 1.0) == pytest.approx(list(lin))
    assert s.timestep_schedule(8, 3.0, [0.9, 0.5, 0.1]) == pytest.approx([0.9, 0.5, 0.1])
    scheduler = s.make_scheduler(sched)
    x, v = torch.ones(1, 2, 3), torch.full((1, 2, 3), 2.0)
    t0 = scheduler.timesteps[0]
    nxt = scheduler.step(v, t0, x, return_dict=False)[0]
    torch.testing.assert_close(nxt, x + (sched[1] - sched[0]) * v)


def test_cfg_interval_and_normalisation():
    assert s.cfg_active(1.0, 0.0, 0.5) and not s.cfg_active(0.3, 0.0, 0.5) and s.cfg_active(0.5, 0.5, 1.0)
    loud = torch.tensor([[[0.5, -3.0], [1.0, 0.2]]])
    out = s.normalize_audio(loud)
    assert float(out.abs().max()) == pytest.approx(10 ** (-1 / 20))
    assert s.latent_frames(10.0, 25.0) == 250 and s.latent_frames(10.01, 25.0) == 251
