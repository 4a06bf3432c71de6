"""Model selection (issue 7 item 5): the APIs' ``model`` field and ``TRITONE_DEFAULT_MODEL`` pick the sampler's
family and version set; ``GET /v1/models`` lists both families as the sampler describes them.

The stage-runner double checks what the orchestrator sends; the tests marked ``triton`` ask the real sampler of the
tiny repository (both families exported)."""

from __future__ import annotations

import pytest

from orchestrator.families import ModelChoice, parse_model
from tests.orchestrator.doubles import StageRunnerDouble
from tests.orchestrator.support import login, make_settings, running_app, wait_for


@pytest.mark.parametrize(
    ("value", "family", "version_set"),
    [
        ("acestep15", "acestep15", None),
        ("ACE-Step-v1-3.5B", "acestep_v1", None),
        ("acestep-v15-turbo", "acestep15", "turbo"),
        ("acestep15:sft", "acestep15", "sft"),
        ("acestep_v1:base", "acestep_v1", "base"),
        (" acestep-v1 ", "acestep_v1", None),
    ],
)
def test_model_ids(value, family, version_set):
    choice = parse_model(value)
    assert (choice.family, choice.version_set) == (family, version_set)
    assert parse_model(choice.id) == choice


@pytest.mark.parametrize("value", ["acestep2", "acestep15:", "acestep15:bad set", "dit:turbo", ""])
def test_unknown_model_ids_name_the_accepted_forms(value):
    if value in ("acestep15:",):  # an empty version set is the family's default
        assert parse_model(value) == ModelChoice("acestep15")
        return
    with pytest.raises(ValueError, match="must be a model family"):
        parse_model(value)


async def _job_sampler_request(client, headers, double, body: dict) -> dict:
    r = await client.post("/v1/music/generate", json=body, headers=headers)
    assert r.status_code == 200, r.text
    job_id = r.json()["job_id"]

    async def finished():
        status = (await client.get(f"/v1/jobs/{job_id}", headers=headers)).json()["status"]
        return status if status in ("succeeded", "failed") else None

    assert await wait_for(finished, what="the job") == "succeeded"
    return [req for model, req in double.calls if model == "sampler"][-1]


async def test_music_model_field_selects_family_and_version_set(tmp_path) -> None:
    double = StageRunnerDouble()
    async with running_app(make_settings(tmp_path), double) as (_, client):
        headers = await login(client)
        meta = {"bpm": 90, "key_scale": "C major", "time_signature": "4", "audio_duration": 12}
        v1 = await _job_sampler_request(client, headers, double, {"caption": "rock", "model": "acestep_v1", **meta})
        assert v1["family"] == "acestep_v1" and "version_set" not in v1  # the family's default set
        assert (v1["inference_steps"], v1["guidance_scale"]) == (60, 15.0)  # v1's defaults, not the 1.5 API's
        assert not {"use_adg", "cfg_interval_start", "bpm", "key_scale", "audio_codes"} & set(v1)
        tuned = await _job_sampler_request(
            client, headers, double,
            {"caption": "rock", "model": "ACE-Step-v1-3.5B:base", "inference_steps": 3, "guidance_scale": 4, **meta},
        )
        assert (tuned["version_set"], tuned["inference_steps"], tuned["guidance_scale"]) == ("base", 3, 4.0)
        sft = await _job_sampler_request(client, headers, double, {"caption": "pop", "model": "acestep15:sft", **meta})
        assert sft["family"] == "acestep15" and sft["version_set"] == "sft" and sft["inference_steps"] == 8
        default = await _job_sampler_request(client, headers, double, {"caption": "pop", **meta})
        assert default["family"] == "acestep15" and "version_set" not in default


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"model": "acestep3"}, "model"),
        ({"model": "acestep_v1", "task_type": "extract"}, "task_type"),
        ({"model": "acestep_v1", "thinking": True}, "thinking"),
        ({"model": "acestep_v1", "use_adg": True}, "use_adg"),
        ({"model": "acestep_v1", "audio_code_string": "<|audio_code_1|>"}, "audio_code_string"),
        ({"model": "acestep_v1", "audio_duration": 300}, "audio_duration"),
    ],
)
async def test_v1_music_requests_that_v1_cannot_do_are_422_naming_the_field(tmp_path, body, field) -> None:
    async with running_app(make_settings(tmp_path), StageRunnerDouble()) as (_, client):
        headers = await login(client)
        r = await client.post("/v1/music/generate", json={"caption": "x", **body}, headers=headers)
        assert r.status_code == 422, r.text
        assert r.json()["error"]["field"] == field


async def test_song_api_model_field_and_the_configured_default(tmp_path) -> None:
    double = StageRunnerDouble()
    settings = make_settings(tmp_path, default_model="acestep_v1:base")
    async with running_app(settings, double) as (_, client):
        headers = await login(client)
        for body, family, version_set in (
            ({}, "acestep_v1", "base"),
            ({"model": "acestep15:turbo"}, "acestep15", "turbo"),
        ):
            r = await client.post(
                "/v1/song/create",
                json={"theme": "sea", "vocal_mode": "instrumental_quick", "duration": 12, **body},
                headers=headers,
            )
            assert r.status_code == 200, r.text
            intent = r.json()["data"]["intent_id"]

            async def done(intent=intent):
                r = await client.get("/v1/song/status", params={"intent_id": intent}, headers=headers)
                return r.json()["data"]["status"] in ("succeeded", "failed")

            await wait_for(done, what="the song")
            sent = [req for model, req in double.calls if model == "sampler"][-1]
            assert (sent["family"], sent.get("version_set")) == (family, version_set)
        bad = await client.post("/v1/song/create", json={"theme": "sea", "model": "v3"}, headers=headers)
        assert bad.status_code == 422 and bad.json()["error"]["field"] == "model"
        models = (await client.get("/v1/models", headers=headers)).json()["data"]
        assert models["default_model"] == "ACE-Step-v1-3.5B"  # the default under the name clients know
        # The double does not describe itself: both families are still listed, marked unknown, with the reason.
        assert [m["name"] for m in models["families"]] == ["acestep15", "acestep_v1"]
        assert all(m["served"] is None for m in models["families"]) and models["catalog_error"]
        assert [m["name"] for m in models["models"]] == ["acestep15", "ACE-Step-v1-3.5B"]


def test_settings_reject_an_unknown_default_model(tmp_path):
    with pytest.raises(ValueError, match="default_model"):
        make_settings(tmp_path, default_model="nope")


@pytest.mark.triton
async def test_models_lists_both_families_from_the_real_sampler(triton, tmp_path) -> None:
    settings = make_settings(tmp_path, triton_urls=[triton.grpc_url])
    async with running_app(settings) as (_, client):
        headers = await login(client)
        models = (await client.get("/v1/models", headers=headers)).json()["data"]
        assert models["catalog_error"] is None and models["default_model"] == "acestep-v15-turbo"
        names = {m["name"] for m in models["models"]}
        assert names == {"acestep-v15-turbo", "acestep-v15-sft", "acestep-v15-base", "ACE-Step-v1-3.5B"}
        assert all(m["is_loaded"] for m in models["models"])
        by_name = {m["name"]: m for m in models["families"]}
        assert by_name["acestep15"]["served"] and by_name["acestep_v1"]["served"]
        sets = by_name["acestep15"]["version_sets"]
        assert [s["model"] for s in sets] == ["acestep15:base", "acestep15:sft", "acestep15:turbo"]
        # the track tasks on the base DiT only (upstream's TASK_TYPES_BASE / TASK_TYPES_TURBO)
        assert {s["name"]: "extract" in s["task_types"] for s in sets} == {"base": True, "sft": False, "turbo": False}
        assert [s["model"] for s in by_name["acestep_v1"]["version_sets"]] == ["acestep_v1:base"]
        assert by_name["acestep_v1"]["version_sets"][0]["versions"]["v1_dit"] == "1"

        r = await client.post(
            "/v1/music/generate",
            headers=headers,
            json={"caption": "lofi", "model": "acestep_v1:base", "audio_duration": 10, "inference_steps": 2,
                  "bpm": 80, "key_scale": "A minor", "time_signature": "4", "audio_format": "wav"},
        )
        assert r.status_code == 200, r.text
        job_id = r.json()["job_id"]

        async def finished():
            body = (await client.get(f"/v1/jobs/{job_id}", headers=headers)).json()
            return body if body["status"] in ("succeeded", "failed") else None

        job = await wait_for(finished, timeout=240, interval=0.3, what="the v1 job")
        assert job["status"] == "succeeded", job
        assert len(job["result"]["audio_paths"]) == 1
