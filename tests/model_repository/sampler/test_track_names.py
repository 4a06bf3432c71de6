"""``track_names``: several ACE-Step track classes extracted as one batch — the request's rules (each mistake names
the field and the allowed values)."""

from __future__ import annotations

import json

import pytest

from model_repository.facts.families import TRACK_CLASSES
from model_repository.sampler.request import RequestError, parse_request


def _parse(fields: dict, *, src: bool = True):
    return parse_request(json.dumps(fields), codebook_size=64000, has_src_audio=src)


def test_one_item_per_class_sharing_one_seed():
    req = _parse({"task_type": "extract", "track_names": ["vocals", "drums", "bass"], "seeds": [4]})
    assert req.track_names == ["vocals", "drums", "bass"] and req.batch_size == 3 and req.seeds == [4]
    every = _parse({"task_type": "extract", "track_names": list(TRACK_CLASSES), "batch_size": 12})
    assert every.batch_size == len(TRACK_CLASSES) == 12
    assert _parse({"task_type": "extract", "track_name": "drums"}).track_names == []


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"task_type": "extract", "track_names": ["drums", "cowbell"]}, "'track_names' has ['cowbell']; allowed:"),
        ({"task_type": "extract", "track_names": "drums"}, "'track_names' must be a list of track classes"),
        ({"task_type": "extract", "track_names": ["bass", "bass"]}, "'track_names' names a class twice"),
        ({"task_type": "lego", "track_names": ["bass"]}, "'track_names' applies to task_type 'extract' only"),
        ({"task_type": "extract", "track_names": ["bass"], "track_name": "bass"}, "'track_name' cannot come with"),
        ({"task_type": "extract", "track_names": ["bass"], "instruction": "x"}, "'instruction' cannot come with"),
        ({"task_type": "extract", "track_names": ["bass", "fx"], "batch_size": 3}, "'batch_size' must be 2"),
        ({"task_type": "extract", "track_names": ["bass", "fx"], "seeds": [1, 2]}, "'seeds' takes one seed"),
        ({"task_type": "extract", "track_names": ["bass"], "align_lyrics": True}, "'align_lyrics' does not apply"),
    ],
)
def test_each_mistake_names_the_field(fields, message):
    with pytest.raises(RequestError) as err:
        _parse(fields)
    assert message in str(err.value)


def test_a_track_batch_needs_the_source_audio():
    with pytest.raises(RequestError, match="task_type 'extract' needs input 'src_audio'"):
        _parse({"task_type": "extract", "track_names": ["drums"]}, src=False)


def test_the_other_family_refuses_it():
    with pytest.raises(RequestError, match="field 'track_names' applies to family 'acestep15' only"):
        _parse({"family": "acestep_v1", "track_names": ["drums"]}, src=False)
