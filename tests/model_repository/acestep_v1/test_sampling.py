"""The v1 sampler math against the original pipeline's recorded numbers (``tiny/sampler_cases.safetensors``).

The README's tolerance for sampler and guidance is 1e-5; these run far below it (the math is the same float ops).
"""

from __future__ import annotations

import pytest
import torch

from export.acestep_v1.reference import reference_dir
from model_repository.acestep_v1 import sampling as S

ATOL = 1e-5
REF = reference_dir()
pytestmark = pytest.mark.skipif(REF is None, reason="shared/reference/acestep-v1 is not present")


@pytest.fixture(scope="module")
def cases() -> dict[str, torch.Tensor]:
    from safetensors.torch import load_file

    assert REF is not None
    return load_file(str(REF / "tiny" / "sampler_cases.safetensors"))


def _close(a: torch.Tensor, b: torch.Tensor, atol: float = ATOL) -> None:
    assert a.shape == b.shape, (a.shape, b.shape)
    err = (a.double() - b.double()).abs().max().item()
    assert err <= atol, f"max abs err {err:.3g} > {atol}"


def test_euler_schedule_double_shift(cases):
    sch = S.flow_match_schedule(60, shift=3.0)
    _close(sch.timesteps, cases["euler.timesteps"])
    _close(sch.sigmas, cases["euler.sigmas"])
    assert sch.init_sigma_max == pytest.approx(cases["euler.init.sigma_max"].item(), abs=1e-9)
    assert sch.init_sigma_min == pytest.approx(cases["euler.init.sigma_min"].item(), abs=1e-9)
    # The double shift: the last non-zero sigma is shift(shift(0.001)), not shift(0.001).
    assert sch.sigmas[-2].item() == pytest.approx(0.0089286, abs=1e-7)
    assert sch.sigmas[-1].item() == 0.0


def test_audio2audio_schedule(cases):
    sch = S.audio2audio_schedule(60, ref_audio_strength=0.5)
    assert sch.num_steps == 30
    _close(sch.timesteps, cases["a2a.timesteps"])
    _close(sch.sigmas, cases["a2a.sigmas"])
    assert sch.init_sigma_max == pytest.approx(cases["a2a.sigma_max"].item(), abs=1e-7)
    ref, noise = torch.ones(1, 2), torch.zeros(1, 2)
    assert torch.allclose(S.audio2audio_start(ref, noise, sch), torch.full((1, 2), 0.25))


def test_omega_rescale(cases):
    assert S.omega_rescale(10.0) == pytest.approx(cases["euler_omega10.omega_after_rescale"].item(), abs=1e-12)
    assert S.omega_rescale(0.0) == pytest.approx(1.0)


@pytest.mark.parametrize(("omega", "key"), [(10.0, "euler_omega10.traj"), (0.0, "euler_omega0.traj")])
def test_euler_trajectories(cases, omega, key):
    sch = S.flow_match_schedule(60)
    x = cases["seq.x_init"].clone()
    _close(x, cases[key][0])
    for i in range(60):
        x = S.euler_step(x, cases["seq.cond"][i], sch.sigmas[i], sch.sigmas[i + 1], omega=omega)
        _close(x, cases[key][i + 1])


def test_apg_with_momentum(cases):
    buf = S.MomentumBuffer(-0.75)
    for k in range(3):
        out = S.apg(cases["seq.cond"][k], cases["seq.uncond"][k], 15.0, buf)
        _close(out, cases["apg.momentum.out"][k])
        _close(buf.running_average, cases["apg.momentum.running_average"][k])


def test_apg_variants_cfg_and_double(cases):
    cond, uncond = cases["seq.cond"][0], cases["seq.uncond"][0]
    _close(S.apg(cond, uncond, 15.0), cases["apg.no_momentum.out"])
    _close(S.apg(cond, uncond, 7.0, eta=0.5, norm_threshold=0.0), cases["apg.eta0.5_thr0.out"])
    _close(S.cfg(cond, uncond, 15.0), cases["cfg.out"])
    only_text = cases["cfg_double.only_text_cond"]
    _close(S.cfg_double_condition(cond, uncond, only_text, 5.0, 2.5), cases["cfg_double.out"])
    _close(
        S.guide("apg", cond, uncond, 15.0, 20, only_text_cond=only_text, guidance_scale_text=5.0,
                guidance_scale_lyric=2.5),
        cases["cfg_double.out"],
    )


def test_cfg_zero_star(cases):
    cond, uncond = cases["seq.cond"][0], cases["seq.uncond"][0]
    _close(S.cfg_zero_star(cond, uncond, 15.0, step=0), cases["cfg_star.i0"])
    _close(S.cfg_zero_star(cond, uncond, 15.0, step=5), cases["cfg_star.i5"])
    assert torch.count_nonzero(cases["cfg_star.i0"]) == 0


def test_guided_loop_with_interval(cases):
    """The text2music loop: guidance scale 15, APG, interval 0.5 (steps 15..44), decay 0, omega 10."""
    sch = S.flow_match_schedule(60)
    start, end = S.guidance_interval(60, 0.5)
    assert [start, end] == cases["guided.start_end_idx"].tolist()
    buf = S.MomentumBuffer()
    x = cases["seq.x_init"].clone()
    for i in range(60):
        scale = S.guidance_scale_at(i, start, end, 15.0, decay=0.0)
        assert scale == cases["guided.guidance_scale_used"][i].item()
        cond = cases["seq.cond"][i]
        v = S.guide("apg", cond, cases["seq.uncond"][i], scale, i, buf) if scale else cond
        _close(v, cases["guided.noise_pred"][i])
        x = S.euler_step(x, v, sch.sigmas[i], sch.sigmas[i + 1], omega=10.0)
        _close(x, cases["guided.traj"][i + 1])


def test_guidance_decay_and_off_switches():
    start, end = S.guidance_interval(60, 0.5)
    assert S.guidance_scale_at(start, start, end, 15.0, decay=1.0, min_guidance_scale=3.0) == 15.0
    assert S.guidance_scale_at(end - 1, start, end, 15.0, decay=1.0, min_guidance_scale=3.0) == pytest.approx(3.0)
    assert S.guidance_scale_at(start, start, end, 1.0) == 0.0  # scale 1 means no CFG
    assert S.guidance_scale_at(end, start, end, 15.0) == 0.0
    with pytest.raises(ValueError, match="cfg_type"):
        S.guide("nope", torch.zeros(1), torch.zeros(1), 3.0, 0)


def test_seeded_noise(cases):
    _close(S.seeded_noise((2, 8, 16, 9), [42, 43]), cases["noise.seeds42_43"], atol=0.0)
    with pytest.raises(ValueError, match="one seed per batch row"):
        S.seeded_noise((2, 8, 16, 9), [42])
