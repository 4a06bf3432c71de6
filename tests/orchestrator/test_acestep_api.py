"""The ACE-Step API (seed 003 + upstream's /release_task, /query_result), with the in-process stage runner."""

from __future__ import annotations

import io
import json

import numpy as np
import soundfile as sf

from tests.orchestrator.doubles import StageRunnerDouble
from tests.orchestrator.support import login, make_settings, running_app, wait_for


def _wav_bytes(seconds: float = 11.0, rate: int = 44100, channels: int = 1) -> bytes:
    t = np.arange(int(seconds * rate)) / rate
    wave = (0.3 * np.sin(2 * np.pi * 220 * t)).astype(np.float32)
    data = wave if channels == 1 else np.stack([wave] * channels, axis=1)
    buffer = io.BytesIO()
    sf.write(buffer, data, rate, format="WAV", subtype="PCM_16")
    return buffer.getvalue()


async def _finished(client, headers, job_id: str) -> dict:
    async def probe():
        r = await client.get(f"/v1/jobs/{job_id}", headers=headers)
        assert r.status_code == 200, r.text
        body = r.json()
        return body if body["status"] in ("succeeded", "failed", "cancelled") else None

    return await wait_for(probe, what=f"job {job_id}")


async def test_generate_json_thinking_and_metadata_completion(tmp_path) -> None:
    double = StageRunnerDouble()
    async with running_app(make_settings(tmp_path), double) as (_, client):
        headers = await login(client)
        r = await client.post(
            "/v1/music/generate",
            json={
                "prompt": "upbeat pop",
                "lyrics": "Hello world",
                "thinking": True,
                "bpm": 72,
                "keyScale": "Am",
                "audio_duration": 11,
                "inference_steps": 4,
                "lm_temperature": 0.5,
                "lm_cfg_scale": 2.5,
                "lm_top_k": 40,
                "lm_repetition_penalty": 1.1,
                "use_random_seed": False,
                "seed": 7,
                "batch_size": 2,
            },
            headers=headers,
        )
        assert r.status_code == 200, r.text
        created = r.json()
        assert created["status"] == "queued" and created["queue_position"] >= 0
        job = await _finished(client, headers, created["job_id"])
        assert job["status"] == "succeeded", job
        result = job["result"]
        assert result["seed_value"] == "7,8" and len(result["audio_paths"]) == 2
        assert result["first_audio_path"] == result["audio_paths"][0]
        assert result["bpm"] == 72 and result["keyscale"] == "A minor"  # the user's values win
        assert result["timesignature"] == "3" and result["duration"] == 11  # the LM filled only what was missing
        assert "Steps: 4" in result["generation_info"]
        audio = await client.get(result["first_audio_path"])
        assert audio.status_code == 200 and audio.headers["content-type"] == "audio/mpeg"
        wave, rate = sf.read(io.BytesIO(audio.content))
        assert rate == 48000 and abs(len(wave) / rate - 11) < 0.2
    lm = next(req for m, req in double.calls if m == "lm")
    assert lm["mode"] == "thinking" and lm["bpm"] == 72 and lm["key_scale"] == "A minor"
    assert lm["temperature"] == 0.5 and lm["cfg_scale"] == 2.5 and lm["top_k"] == 40
    assert lm["repetition_penalty"] == 1.1 and lm["negative_prompt"] == "NO USER INPUT"
    sampler = next(req for m, req in double.calls if m == "sampler")
    assert sampler["audio_codes"].startswith("<|audio_code_0|>") and sampler["seeds"] == [7, 8]
    assert sampler["caption"] == "upbeat pop" and sampler["task_type"] == "text2music"


async def test_thinking_false_ignores_codes_and_full_metadata_skips_lm(tmp_path) -> None:
    double = StageRunnerDouble()
    async with running_app(make_settings(tmp_path), double) as (_, client):
        headers = await login(client)
        body = {
            "caption": "ballad",
            "bpm": 60,
            "key_scale": "C major",
            "time_signature": "4/4",
            "duration": 10,
            "audio_code_string": "<|audio_code_5|>",
            "thinking": False,
            "inference_steps": 2,
        }
        r = await client.post("/v1/music/generate", json=body, headers=headers)
        job = await _finished(client, headers, r.json()["job_id"])
        assert job["status"] == "succeeded"
    assert [m for m, _ in double.calls] == ["sampler"]
    sampler = double.calls[0][1]
    assert "audio_codes" not in sampler and sampler["time_signature"] == "4"


async def test_form_and_multipart_cover_with_upload(tmp_path) -> None:
    double = StageRunnerDouble()
    async with running_app(make_settings(tmp_path), double) as (_, client):
        headers = await login(client)
        # form-urlencoded: strings become typed values
        r = await client.post(
            "/v1/music/generate",
            data={
                "caption": "form song",
                "inference_steps": "3",
                "thinking": "false",
                "bpm": "",
                "duration": "10",
                "timesteps": "0.9,0.5,0",
            },
            headers=headers,
        )
        assert r.status_code == 200, r.text
        assert (await _finished(client, headers, r.json()["job_id"]))["status"] == "succeeded"
        # multipart with an upload (44.1 kHz mono → decoded to 48 kHz stereo), upstream's field alias ctx_audio
        r = await client.post(
            "/release_task",
            data={
                "prompt": "remix",
                "task_type": "cover",
                "audio_cover_strength": "0.4",
                "inference_steps": "2",
                "thinking": "true",
            },
            files={"ctx_audio": ("song.wav", _wav_bytes(), "audio/wav")},
            headers=headers,
        )
        assert r.status_code == 200, r.text
        wrapped = r.json()
        assert wrapped["code"] == 200 and wrapped["error"] is None and wrapped["data"]["status"] == "queued"
        task = wrapped["data"]["task_id"]
        await _finished(client, headers, task)
        q = await client.post("/query_result", json={"task_id_list": json.dumps([task, "unknown"])}, headers=headers)
        assert q.status_code == 200
        entries = q.json()["data"]
        assert len(entries) == 2 and entries[0]["task_id"] == task and entries[0]["status"] == 1
        # an unknown id is answered as upstream does: still "processing" (0), no files
        assert entries[1] == {"task_id": "unknown", "status": 0, "result": "[]", "progress_text": "", "error": None}
        files = json.loads(entries[0]["result"])
        assert files[0]["file"].startswith("/v1/audio?path=") and files[0]["metas"]["duration"] == 11.0
    form_call, cover_call = [req for m, req in double.calls if m == "sampler"]
    # the empty bpm form field counts as missing: the LM filled it
    assert form_call["inference_steps"] == 3 and form_call["bpm"] == 90 and form_call["timesteps"] == [0.9, 0.5]
    assert cover_call["task_type"] == "cover" and cover_call["audio_cover_strength"] == 0.4
    # the LM does not write codes for a cover (it works on the source audio); duration came from the upload
    assert "audio_codes" not in cover_call and cover_call["duration"] == 11.0
    lm_modes = [req["mode"] for m, req in double.calls if m == "lm"]
    assert lm_modes == ["metadata", "metadata"]


async def test_sample_query_uses_lm_inspire(tmp_path) -> None:
    double = StageRunnerDouble()
    async with running_app(make_settings(tmp_path), double) as (_, client):
        headers = await login(client)
        r = await client.post(
            "/v1/music/generate",
            json={"sample_query": "a soft love song", "duration": 10, "inference_steps": 1},
            headers=headers,
        )
        job = await _finished(client, headers, r.json()["job_id"])
        assert job["status"] == "succeeded" and job["result"]["lyrics"] == "[Verse]\ninspired words"
    inspire = next(req for m, req in double.calls if m == "lm")
    assert inspire["mode"] == "inspire" and inspire["description"] == "a soft love song"
    sampler = next(req for m, req in double.calls if m == "sampler")
    assert sampler["caption"] == "inspired by a soft love song"


async def test_bad_inputs_name_the_field(tmp_path) -> None:
    root = tmp_path / "library"
    root.mkdir()
    (root / "ok.wav").write_bytes(_wav_bytes(seconds=10.5, rate=8000))
    (tmp_path / "secret.wav").write_bytes(_wav_bytes())
    settings = make_settings(tmp_path / "data", audio_path_root=root, upload_max_bytes=200_000)
    async with running_app(settings, StageRunnerDouble()) as (_, client):
        headers = await login(client)

        async def post(**kwargs):
            kwargs.setdefault("headers", headers)
            return await client.post("/v1/music/generate", **kwargs)

        cases = [
            ({"json": {"inference_steps": 500}}, 422, "inference_steps", "1 <= value <= 200"),
            ({"json": {"audio_format": "ogg"}}, 422, "audio_format", "flac, wav, wav32, mp3"),
            ({"json": {"key_scale": "H major"}}, 422, "key_scale", "major|minor"),
            ({"json": {"time_signature": "5"}}, 422, "time_signature", "2, 3, 4, 6"),
            ({"json": {"task_type": "repaint"}}, 422, "src_audio", "needs source audio"),
            ({"json": {"src_audio_path": "../secret.wav", "task_type": "cover"}}, 422, "src_audio_path", "inside"),
            ({"json": {"src_audio_path": str(tmp_path / "secret.wav")}}, 422, "src_audio_path", "inside"),
            ({"json": {"cfg_interval_start": 0.8, "cfg_interval_end": 0.2}}, 422, "cfg_interval_end", ">="),
            ({"json": {"vocal_language": "xx"}}, 422, "vocal_language", "zh"),
            ({"json": [1, 2]}, 422, "body", "JSON object"),
            (
                {"content": b"{not json", "headers": {**headers, "content-type": "application/json"}},
                422,
                "body",
                "JSON",
            ),
            ({"content": b"x", "headers": {**headers, "content-type": "text/plain"}}, 415, None, "Content-Type"),
            ({"files": {"src_audio": ("x.wav", b"this is not audio at all", "audio/wav")}}, 422, "src_audio", "decode"),
            ({"files": {"src_audio": ("big.wav", b"\0" * 300_000, "audio/wav")}}, 413, "src_audio", "larger"),
        ]
        for kwargs, status, field, text in cases:
            r = await post(**kwargs)
            assert r.status_code == status, (kwargs, r.text)
            error = r.json()["error"]
            assert error.get("field") == field and text in error["message"], (kwargs, error)
        # a path inside the root works
        r = await post(
            json={
                "src_audio_path": "ok.wav",
                "task_type": "repaint",
                "repainting_start": 1,
                "repainting_end": 4,
                "inference_steps": 1,
            }
        )
        assert r.status_code == 200, r.text
        # unknown ids → 404
        r = await client.get("/v1/jobs/00000000-0000-0000-0000-000000000000", headers=headers)
        assert r.status_code == 404 and r.json()["error"]["field"] == "job_id"


async def test_models_stats_health(tmp_path) -> None:
    async with running_app(make_settings(tmp_path), StageRunnerDouble()) as (_, client):
        headers = await login(client)
        health = await client.get("/health")  # no auth
        assert health.status_code == 200 and health.json()["data"]["status"] == "ok"
        assert health.json()["data"]["triton"][0]["healthy"] is True
        models = (await client.get("/v1/models", headers=headers)).json()["data"]
        assert models["default_model"] == "acestep15" and {m["name"] for m in models["triton_models"]} >= {"sampler"}
        stats = (await client.get("/v1/stats", headers=headers)).json()["data"]
        assert stats["jobs"]["total"] == 0 and stats["queue_maxsize"] == 200
