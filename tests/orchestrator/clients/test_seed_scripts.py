"""Replays of scripts written from the documents: seed 003's ``/v1/music/generate`` + ``/v1/jobs/{id}`` flow (and
its ``/v1/music/random``), seed 001's ``POST /v1/audio/music/generate`` with a bearer key, and the upstream API
document's curl flows (``ai_token`` in the body, form bodies, model names, per-request pins)."""

from __future__ import annotations

import io
import time

import pytest
import soundfile as sf

from orchestrator.families import UPSTREAM_15_MODELS
from tests.orchestrator.clients.support import DescribingDouble, poll_query_result
from tests.orchestrator.support import API_KEYS, login, make_settings, running_app, wait_for

KEY = next(iter(API_KEYS))
META = {"bpm": 100, "key_scale": "C major", "time_signature": "4", "audio_duration": 10, "inference_steps": 2}


async def _job(client, headers, job_id: str) -> dict:
    async def probe():
        body = (await client.get(f"/v1/jobs/{job_id}", headers=headers)).json()
        return body if body["status"] in ("succeeded", "failed", "cancelled") else None

    return await wait_for(probe, what=f"job {job_id}")


async def test_seed003_generate_and_jobs(tmp_path) -> None:
    async with running_app(make_settings(tmp_path), DescribingDouble()) as (_, client):
        headers = await login(client)  # a login token as the bearer value works as before
        r = await client.post("/v1/music/generate", json={"caption": "ballad", "thinking": True, **META},
                              headers=headers)
        job = await _job(client, headers, r.json()["job_id"])
        assert job["status"] == "succeeded" and job["started_at"] >= job["created_at"]
        assert job["avg_job_seconds"] > 0
        assert job["result"]["lm_model"] == "lm" and job["result"]["dit_model"] == "acestep-v15-turbo"
        assert job["result"]["model"]["versions"] == {"dit": "1", "vae_decoder": "1"}
        assert job["result"]["metas"]["prompt"] == "ballad"
        r = await client.post("/v1/music/random", json={"audio_duration": 10, "inference_steps": 2}, headers=headers)
        assert r.status_code == 200, r.text
        job = await _job(client, headers, r.json()["job_id"])
        assert job["status"] == "succeeded" and job["result"]["caption"].startswith("inspired by")


async def test_seed001_music_generate_with_a_bearer_key(tmp_path) -> None:
    async with running_app(make_settings(tmp_path), DescribingDouble()) as (_, client):
        r = await client.post(
            "/v1/audio/music/generate",
            json={"prompt": "melodic pop, piano", "lyrics": "[verse]\n春天醒来花就开", "duration": 12,
                  "output_format": "wav"},
            headers={"Authorization": f"Bearer {KEY}"},
        )
        assert r.status_code == 200, r.text
        answer = r.json()
        assert answer["status"] == "completed" and answer["duration_sec"] == 12 and answer["format"] == "wav"
        assert answer["task_id"] and answer["created_at"].endswith("Z")
        audio = await client.get(answer["audio_url"])
        assert audio.headers["content-type"] == "audio/wav"
        wave, rate = sf.read(io.BytesIO(audio.content))
        assert rate == 48000 and abs(len(wave) / rate - 12) < 0.2


async def test_upstream_curl_flows_ai_token_and_forms(tmp_path) -> None:
    async with running_app(make_settings(tmp_path), DescribingDouble()) as (_, client):
        r = await client.post("/release_task", json={"caption": "lofi", "ai_token": KEY, **META})
        assert r.status_code == 200, r.text
        task = r.json()["data"]["task_id"]
        r = await client.post("/query_result", data={"task_id_list": f'["{task}"]', "ai_token": KEY})
        assert r.status_code == 200 and r.json()["data"][0]["task_id"] == task
        polled = await poll_query_result(client, task, headers={"Authorization": f"Bearer {KEY}"})
        assert polled.entry["status"] == 1
        for bad in ({"ai_token": "wrong"}, {}):
            r = await client.post("/release_task", json={"caption": "x", **META, **bad})
            assert r.status_code == 401
        # the signed link may expire; the owner's credentials still fetch the file
        file = polled.items[0]["file"]
        expired = file.split("&expires=")[0] + f"&expires={int(time.time()) - 10}&sig=x"
        assert (await client.get(expired)).status_code == 403
        assert (await client.get(expired, headers={"Authorization": f"Bearer {KEY}"})).status_code == 200


@pytest.mark.parametrize("name", sorted(UPSTREAM_15_MODELS))
async def test_every_upstream_name_runs_and_reports_what_ran(tmp_path, name) -> None:
    double = DescribingDouble()
    async with running_app(make_settings(tmp_path), double) as (_, client):
        headers = {"X-API-Key": KEY}
        r = await client.post("/v1/music/generate", json={"caption": "x", "model": name, **META}, headers=headers)
        assert r.status_code == 200, r.text
        result = (await _job(client, headers, r.json()["job_id"]))["result"]
    served = ("acestep-v15-turbo", "acestep-v15-sft", "acestep-v15-base")
    ran = name if name in served else "acestep-v15-turbo"
    assert result["dit_model"] == ran and result["model"]["requested"] == name
    assert result["model"]["fallback"] is (name not in served)


async def test_pins_and_names_that_are_no_model(tmp_path) -> None:
    double = DescribingDouble()
    async with running_app(make_settings(tmp_path), double) as (_, client):
        headers = {"X-API-Key": KEY}
        for body, field, text in (
            ({"model": "acestep-v16-mega"}, "model", "must be a model family"),
            ({"model": "acestep-v15-turbo@canary"}, "model", "served: base, sft, turbo"),
            ({"version_set": "xl-base"}, "model", "served: base, sft, turbo"),
        ):
            r = await client.post("/v1/music/generate", json={"caption": "x", **META, **body}, headers=headers)
            assert r.status_code == 422 and r.json()["error"]["field"] == field, r.text
            assert text in r.json()["error"]["message"]
        # a canary: the sft set with one network pinned per request; the result names exactly what ran
        r = await client.post(
            "/v1/music/generate",
            json={"caption": "x", **META, "model": "acestep-v15-sft@sft", "network_versions": {"dit": "3"}},
            headers=headers,
        )
        result = (await _job(client, headers, r.json()["job_id"]))["result"]
        assert result["model"]["version_set"] == "sft" and result["model"]["versions"] == {"dit": "3",
                                                                                           "vae_decoder": "1"}
    sampler = [req for m, req in double.calls if m == "sampler" and "seeds" in req][-1]
    assert sampler["version_set"] == "sft" and sampler["versions"] == {"dit": "3"}


async def test_open_mode_is_refused_off_loopback(tmp_path, caplog) -> None:
    from orchestrator.app import create_app

    with pytest.raises(ValueError, match="listen on loopback"):
        create_app(make_settings(tmp_path, auth="none", listen_host="0.0.0.0"))
    create_app(make_settings(tmp_path, auth="none", listen_host="0.0.0.0", auth_open_allow_public=True))
    assert any(r.levelname == "CRITICAL" and "NON-LOOPBACK" in r.getMessage() for r in caplog.records)
    create_app(make_settings(tmp_path, auth="none", listen_host="::1"))
    async with running_app(make_settings(tmp_path), DescribingDouble()) as (_, client):  # default: closed
        assert (await client.get("/v1/models")).status_code == 401
