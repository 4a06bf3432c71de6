"""Request parsing for ``"family": "acestep_v1"``: the original pipeline's defaults, v1 validation, and the fields of
the other family rejected (or, for 1.5's prompt metadata, ignored and reported)."""

from __future__ import annotations

import json

import pytest

from model_repository.sampler.request import ACESTEP15_ONLY, ACESTEP_V1_ONLY, RequestError, parse_request


def _parse(fields: dict, *, src: bool = False, ref: bool = False):
    return parse_request(json.dumps(fields), codebook_size=64000, has_src_audio=src, has_reference_audio=ref)


def test_v1_defaults_are_the_original_pipeline():
    req = _parse({"family": "acestep_v1", "caption": "pop", "vocal_language": "zh", "bpm": 120})
    assert (req.guidance_scale, req.omega_scale, req.guidance_type, req.guidance_interval) == (15.0, 10.0, "apg", 0.5)
    assert (req.use_erg_tag, req.use_erg_lyric, req.use_erg_diffusion, req.scheduler) == (True, True, True, "euler")
    assert req.inference_steps is None and req.retake_variance == 0.5  # the runner's default: 60 steps
    assert req.ignored_fields == ["vocal_language", "bpm"]
    assert _parse({"caption": "pop"}).guidance_scale == 7.0  # 1.5 keeps its own default


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"guidance_type": "pag"}, "'guidance_type' must be one of ['apg', 'cfg', 'cfg_star']"),
        ({"scheduler": "ddim"}, "'scheduler' must be one of ['euler', 'heun']"),
        ({"task_type": "cover"}, "'task_type' must be one of ['text2music', 'retake', 'repaint', 'extend']"),
        ({"duration": 241}, "'duration' must be in 10..240"),
        ({"retake_variance": 1.5}, "'retake_variance' must be in 0..1"),
        ({"retake_seeds": [1, 2]}, "'retake_seeds' has 2 values for batch_size 1"),
        ({"use_erg_tag": "yes"}, "'use_erg_tag' must be true or false"),
        ({"repaint_start": 1.0, "repaint_end": 2.0}, "apply to task_type 'repaint' or 'extend'"),
        ({"task_type": "repaint", "repaint_start": 1.0, "repaint_end": 2.0}, "needs input 'src_audio'"),
        ({"use_adg": True}, "'use_adg' applies to family 'acestep15' only"),
        ({"audio_codes": "<|audio_code_5|>"}, "'audio_codes' applies to family 'acestep15' only"),
        ({"family": "acestep15", "omega_scale": 5}, "'omega_scale' applies to family 'acestep_v1' only"),
        ({"family": "acestep15", "use_erg_lyric": False}, "'use_erg_lyric' applies to family 'acestep_v1' only"),
        ({"family": "v2"}, "'family' must be one of ['acestep15', 'acestep_v1']"),
        ({"describe": True, "family": "acestep_v1"}, "'describe' must be true and come alone"),
    ],
)
def test_v1_bad_fields_name_the_field_and_the_allowed_values(fields, message):
    with pytest.raises(RequestError) as info:
        _parse({"family": "acestep_v1"} | fields)
    assert message in str(info.value)


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"task_type": "repaint"}, "needs fields 'repaint_start' and 'repaint_end'"),
        ({"task_type": "repaint", "repaint_start": 5.0, "repaint_end": 4.0}, "'repaint_end' (4) must be greater"),
        ({"task_type": "repaint", "repaint_start": -2.0, "repaint_end": 4.0}, "use task_type 'extend'"),
        ({"task_type": "retake"}, "input 'src_audio' applies to task_type 'repaint' or 'extend'"),
    ],
)
def test_v1_edit_windows(fields, message):
    with pytest.raises(RequestError) as info:
        _parse({"family": "acestep_v1"} | fields, src=True)
    assert message in str(info.value)
    extend = _parse({"family": "acestep_v1", "task_type": "extend", "repaint_start": -5, "repaint_end": 20}, src=True)
    assert (extend.repaint_start, extend.repaint_end) == (-5.0, 20.0)


def test_defaults_of_the_other_family_pass_and_reference_audio_is_15_only():
    # What a client that fills every field with its default sends is accepted by both families.
    req = _parse({"family": "acestep_v1", "use_adg": False, "cfg_interval_start": 0.0, "audio_codes": []})
    assert req.family == "acestep_v1"
    _parse({"omega_scale": 10.0, "use_erg_tag": True, "repaint_start": None})
    assert not set(ACESTEP15_ONLY) & set(ACESTEP_V1_ONLY)
    with pytest.raises(RequestError, match="'reference_audio' applies to family 'acestep15' only"):
        _parse({"family": "acestep_v1"}, ref=True)
    assert _parse({"describe": True}).describe
