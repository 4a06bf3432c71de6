"""The sampler request's ``align_lyrics`` (ACE-Step 1.5 only): off by default, a bool, refused for v1."""

from __future__ import annotations

import json

import pytest

from model_repository.sampler.request import RequestError, parse_request


def _parse(**body):
    return parse_request(json.dumps({"caption": "c"} | body), codebook_size=64000, has_src_audio=False)


def test_off_by_default_and_switched_on_per_request():
    assert _parse().align_lyrics is False
    assert _parse(align_lyrics=True).align_lyrics is True


def test_a_non_bool_and_the_v1_family_are_refused_naming_the_field():
    with pytest.raises(RequestError, match="'align_lyrics' must be true or false"):
        _parse(align_lyrics="yes")
    with pytest.raises(RequestError, match="'align_lyrics' applies to family 'acestep15' only"):
        _parse(family="acestep_v1", align_lyrics=True)
    assert _parse(family="acestep_v1", align_lyrics=False).family == "acestep_v1"
