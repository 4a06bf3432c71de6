from __future__ import annotations

import json

import pytest

from model_repository.sampler.request import RequestError, parse_request


def _parse(fields: dict, *, src: bool = False):
    return parse_request(json.dumps(fields), codebook_size=64000, has_src_audio=src)


def test_defaults_and_normalisation():
    req = _parse({"caption": "pop", "time_signature": 4, "seeds": 9, "bpm": 120.0})
    assert (req.task_type, req.batch_size, req.guidance_scale, req.shift) == ("text2music", 1, 7.0, 3.0)
    assert req.time_signature == "4" and req.seeds == [9] and req.bpm == 120
    assert req.inference_steps is None and req.duration is None  # the version set's defaults apply


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"inference_steps": 0}, "'inference_steps' must be in 1..200"),
        ({"inference_steps": 2.5}, "'inference_steps' must be an integer"),
        ({"duration": 601}, "'duration' must be in 10..600"),
        ({"bpm": 20}, "'bpm' must be in 30..300"),
        ({"batch_size": 2, "seeds": [1, 2, 3]}, "'seeds' has 3 values for batch_size 2"),
        ({"seeds": [-1]}, "'seeds' values must be in 0..4294967295"),
        ({"timesteps": [0.5, 0.9]}, "strictly decreasing"),
        ({"timesteps": [1.5]}, "numbers in (0, 1]"),
        ({"cfg_interval_start": 0.8, "cfg_interval_end": 0.2}, "'cfg_interval_start' must be <="),
        ({"repainting_start": 5, "repainting_end": 2}, "'repainting_end' (2.0) must be greater"),
        ({"audio_codes": "no codes here"}, "contains no <|audio_code_N|>"),
        ({"use_adg": "yes"}, "'use_adg' must be true or false"),
        ({"family": "v9"}, "'family' must be one of"),
        ({"lyric_guidance": 11}, "'lyric_guidance' must be in 0..10"),
    ],
)
def test_each_mistake_names_the_field_and_the_allowed_values(fields, message):
    with pytest.raises(RequestError) as err:
        _parse(fields)
    assert message in str(err.value)


def test_edit_tasks_need_their_inputs():
    with pytest.raises(RequestError, match="'repaint' needs input 'src_audio'"):
        _parse({"task_type": "repaint"})
    assert _parse({"task_type": "repaint"}, src=True).task_type == "repaint"
    assert _parse({"task_type": "cover", "audio_codes": ["<|audio_code_1|>"]}).audio_codes == ["<|audio_code_1|>"]
    with pytest.raises(RequestError, match="not JSON|JSON object"):
        parse_request(b"{oops", codebook_size=64000, has_src_audio=False)
