"""The edit splice and mix: the source is copied outside the edited windows (exactly), the crossfade lies inside."""

from __future__ import annotations

import numpy as np

from orchestrator.media.splice import CROSSFADE_S, edit_weight, mix, splice

RATE = 1000


def test_weight_ramps_inside_the_window_only() -> None:
    w = edit_weight(10_000, [(2.0, 5.0)], rate=RATE)
    fade = int(CROSSFADE_S * RATE)
    assert (w[:2000] == 0).all() and (w[5000:] == 0).all()
    assert (w[2000 + fade : 5000 - fade] == 1).all()
    assert 0 < w[2000] < w[2000 + fade // 2] < 1 and 0 < w[4999] < 1
    # a window touching the song's end has no ramp there
    tail = edit_weight(10_000, [(6.0, 10.0)], rate=RATE)
    assert tail[-1] == 1 and tail[5999] == 0


def test_splice_keeps_the_source_sample_exact_and_extends() -> None:
    rng = np.random.default_rng(0)
    source = rng.uniform(-1, 1, (2, 6000)).astype(np.float32)
    generated = rng.uniform(-1, 1, (2, 2, 9000)).astype(np.float32)
    out = splice(source, generated, [(2.0, 4.0)], rate=RATE)
    assert out.shape == (2, 2, 9000)
    for item in range(2):
        assert np.array_equal(out[item, :, :2000], source[:, :2000])
        assert np.array_equal(out[item, :, 4000:6000], source[:, 4000:6000])
        fade = int(CROSSFADE_S * RATE)
        assert np.array_equal(out[item, :, 2000 + fade : 4000 - fade], generated[item, :, 2000 + fade : 4000 - fade])
        # past the source's end (an extend) the generated audio, ramped in from the kept source
        assert np.array_equal(out[item, :, 6000 + fade :], generated[item, :, 6000 + fade :])


def test_mix_adds_the_kept_stem_and_only_scales_to_avoid_clipping() -> None:
    kept = np.full((2, 100), 0.25, np.float32)
    quiet = np.full((1, 2, 120), 0.5, np.float32)
    out = mix(kept, quiet)
    assert out.shape == (1, 2, 100) and np.allclose(out, 0.75)
    loud = np.full((1, 2, 100), 1.75, np.float32)
    assert np.isclose(np.abs(mix(kept, loud)).max(), 1.0)


def test_splice_cuts_a_longer_generation_back_to_the_given_length() -> None:
    source = np.ones((2, 5000), np.float32)
    generated = np.zeros((1, 2, 5123), np.float32)  # a decoder that rounds up to its own frame
    out = splice(source, generated, [(1.0, 3.0)], rate=RATE, length=5000)
    assert out.shape == (1, 2, 5000) and (out[0, :, 3000:] == 1).all()
