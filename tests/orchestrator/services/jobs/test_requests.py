"""The typed sampler requests and the per-family rules (``orchestrator/services/jobs/requests.py``): each family's
request holds its own fields only, and what a family serves through the ACE-Step API derives from its facts."""

from __future__ import annotations

import dataclasses

import pytest

from model_repository.facts.families import FAMILY_FACTS
from orchestrator.schemas.acestep import TASK_TYPES, music_task_types
from orchestrator.services.jobs.requests import FAMILY_REQUESTS, FamilyRequests, SamplerRequest, for_family

_PARAMS = {"version_set": None, "inference_steps": 60, "guidance_scale": 15.0, "seeds": [1, 2], "shift": 3.0,
           "task_type": "repaint", "repainting_start": 2.0, "repainting_end": -1, "src_audio_seconds": 30.5,
           "vocal_language": "en", "use_adg": False, "timesteps": None, "cfg_interval_start": 0.0,
           "cfg_interval_end": 1.0, "audio_cover_strength": 1.0}


def test_v1_repaint_request_maps_the_window_onto_the_source():
    params = {"version_set": None, "inference_steps": 60, "guidance_scale": 15.0, "seeds": [1], "shift": 3.0,
              "task_type": "repaint", "repainting_start": 2.0, "repainting_end": -1, "src_audio_seconds": 30.5}
    state = {"caption": "rock", "sampler_lyrics": ""}
    v1 = for_family("acestep_v1")
    request = v1.build("music", params, {"duration": 30.5}, state).to_json()
    assert request["task_type"] == "repaint" and request["duration"] is None
    assert (request["repaint_start"], request["repaint_end"]) == (2.0, 30.5)
    song = v1.build("song", params | {"task_type": None}, {"duration": 400.0}, state).to_json()
    assert song["task_type"] == "text2music" and song["duration"] == 240.0  # v1's trained maximum


def test_every_family_has_its_requests_and_each_request_only_its_own_fields() -> None:
    assert set(FAMILY_REQUESTS) <= set(FAMILY_FACTS)
    common = {f.name for f in dataclasses.fields(SamplerRequest)}
    state = {"caption": "rock", "sampler_lyrics": "", "codes": None}
    for name in FAMILY_FACTS:
        family = for_family(name)
        others = {f for other, facts in FAMILY_FACTS.items() if other != name for f in facts.own_fields}
        for kind in ("song", "music"):
            request = family.build(kind, _PARAMS, {"duration": 30.0, "bpm": 90}, state)
            sent = request.to_json()
            assert sent["family"] == name and sent["batch_size"] == 2
            assert common <= set(sent)
            assert not (set(sent) - set(FAMILY_FACTS[name].own_fields)) & others, (name, kind)


def test_music_task_types_are_the_api_types_each_family_serves() -> None:
    assert music_task_types("acestep15") == TASK_TYPES
    assert music_task_types("acestep_v1") == ("text2music", "repaint")  # not retake/extend: the API has no such task
    assert for_family("acestep_v1").facts.max_duration_s == 240.0
    for unknown in (music_task_types, for_family):
        with pytest.raises(ValueError, match="unknown model family"):
            unknown("acestep2")


def test_a_family_with_no_fields_of_its_own_gets_the_common_request() -> None:
    generic = FamilyRequests(dataclasses.replace(FAMILY_FACTS["acestep_v1"], name="acestep_x", max_duration_s=60.0))
    sent = generic.build("music", _PARAMS, {"duration": 90.0}, {"caption": "c", "sampler_lyrics": "l"}).to_json()
    assert sent == {"family": "acestep_x", "version_set": None, "caption": "c", "lyrics": "l", "duration": 60.0,
                    "inference_steps": 60, "guidance_scale": 15.0, "seeds": [1, 2], "task_type": "repaint",
                    "versions": None, "batch_size": 2}
