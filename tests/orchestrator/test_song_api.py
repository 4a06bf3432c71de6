"""The song API (seed 000) over the job pipeline, driven by the in-process stage runner (``doubles.py``)."""

from __future__ import annotations

import asyncio
import io
import json

import numpy as np
import soundfile as sf

from tests.orchestrator.doubles import StageRunnerDouble
from tests.orchestrator.support import login, make_settings, running_app, song_status, wait_for, wait_song


def _sse(text: str) -> list[tuple[str, dict]]:
    events = []
    for block in text.replace("\r\n", "\n").split("\n\n"):
        kind, data = None, None
        for line in block.splitlines():
            if line.startswith("event:"):
                kind = line.split(":", 1)[1].strip()
            elif line.startswith("data:"):
                data = json.loads(line.split(":", 1)[1].strip())
        if kind:
            events.append((kind, data))
    return events


async def test_song_end_to_end_with_lyrics_first_then_audio(tmp_path) -> None:
    double = StageRunnerDouble()
    lyricist_gate = double.gate("lyricist")
    async with running_app(make_settings(tmp_path), double) as (_, client):
        headers = await login(client)
        body = {
            "theme": "周末骑单车去看海 风把白衬衫吹起来",
            "duration": 10,
            "inference_steps": 6,
            "batch_size": 2,
            "audio_format": "flac",
            "track_classes": ["drums", "backing_vocals", "drums"],
            "bpm": 128,
            "cover_size": "16:9",
            "seed": 42,
        }
        created = await client.post("/v1/song/create", json=body, headers=headers)
        assert created.status_code == 200, created.text
        envelope = created.json()
        assert envelope["code"] == 200 and envelope["error"] is None
        intent = envelope["data"]["intent_id"]
        assert envelope["data"]["status"] == "lyrics_pending"
        assert envelope["data"]["next_step"] == {
            "method": "GET",
            "url": f"/v1/song/status?intent_id={intent}",
            "poll_interval_sec": 5,
        }
        # While the lyricist is still writing, the partial lyrics are already visible.
        await asyncio.wait_for(double.entered["lyricist"].wait(), 10)

        async def partial():
            data = await song_status(client, headers, intent)
            return data if data["lyrics"] and "chorus" in data["lyrics"] else None

        data = await wait_for(partial, what="partial lyrics")
        assert data["status"] == "lyrics_pending" and data["items"] == []
        lyricist_gate.set()
        done = await wait_song(client, headers, intent, ("succeeded", "failed"))
        assert done["status"] == "succeeded", done
        assert done["title"] and done["lyrics"].startswith("[Verse 1]")
        meta = done["metadata"]
        assert meta["bpm"] == 128  # the user's value beat the plan's 100
        assert meta["key_scale"] == "C major" and meta["time_signature"] == "4" and meta["duration"] == 10
        assert meta["seeds"] == [42, 43]
        assert meta["caption"].endswith("featuring drums, backing vocals")
        assert [i["seed"] for i in done["items"]] == [42, 43]
        for item in done["items"]:
            audio = await client.get(item["audio_url"])
            assert audio.status_code == 200 and audio.headers["content-type"] == "audio/flac"
            wave, rate = sf.read(io.BytesIO(audio.content), dtype="float32")
            info = sf.info(io.BytesIO(audio.content))
            assert rate == 48000 and info.subtype == "PCM_24" and wave.shape == (480000, 2)
            assert np.abs(wave).max() <= 1.0
        cover = await client.get(done["cover_url"])
        assert cover.status_code == 200 and cover.headers["content-type"] == "image/png"
        from PIL import Image

        width, height = Image.open(io.BytesIO(cover.content)).size
        assert abs(width / height - 16 / 9) < 0.02
    # what reached the models
    lyricist = next(r for m, r in double.calls if m == "lyricist")
    assert (
        lyricist["theme"] == body["theme"]
        and lyricist["bpm"] == 128
        and lyricist["track_classes"]
        == [
            "drums",
            "backing_vocals",
        ]
    )
    sampler = next(r for m, r in double.calls if m == "sampler")
    assert sampler["seeds"] == [42, 43] and sampler["batch_size"] == 2 and sampler["inference_steps"] == 6
    assert sampler["lyrics"].startswith("[Verse 1]") and sampler["task_type"] == "text2music"
    assert not any(m == "lm" for m, _ in double.calls)  # the plan had every field: no LM call


async def test_vocal_modes(tmp_path) -> None:
    double = StageRunnerDouble()
    async with running_app(make_settings(tmp_path), double) as (_, client):
        headers = await login(client)
        ids = {}
        for mode in ("instrumental_from_lyrics", "instrumental_quick"):
            r = await client.post(
                "/v1/song/create",
                json={
                    "theme": "rain",
                    "vocal_mode": mode,
                    "duration": 10,
                    "inference_steps": 2,
                    "generate_cover": False,
                    "audio_format": "wav",
                },
                headers=headers,
            )
            ids[mode] = r.json()["data"]["intent_id"]
        for intent in ids.values():
            done = await wait_song(client, headers, intent, ("succeeded", "failed"))
            assert done["status"] == "succeeded" and done["cover_url"] is None, done
            assert "instrumental" in done["metadata"]["caption"]
    samplers = [r for m, r in double.calls if m == "sampler"]
    by_caption = {("rain" in r["caption"] and r["lyrics"]) for r in samplers}
    # from lyrics: the song's sections without the words; quick: no lyricist at all, and the LM fills the metadata
    assert "[Verse 1]\n\n[Chorus]" in by_caption and "[Instrumental]" in by_caption
    assert [m for m, _ in double.calls].count("lyricist") == 1
    lm = next(r for m, r in double.calls if m == "lm")
    assert lm["mode"] == "metadata" and lm["duration"] == 10


async def test_sse_stream_carries_lyrics_progress_status_and_done(tmp_path) -> None:
    double = StageRunnerDouble(step_delay=0.01)
    gate = double.gate("lyricist")
    async with running_app(make_settings(tmp_path), double) as (_, client):
        headers = await login(client)
        r = await client.post(
            "/v1/song/create",
            json={"theme": "sea", "duration": 10, "inference_steps": 5, "generate_cover": False},
            headers=headers,
        )
        intent = r.json()["data"]["intent_id"]
        minted = await client.post("/auth/url-token", json={"job_id": intent, "purpose": "events"}, headers=headers)
        token = minted.json()["access_token"]
        # EventSource cannot send headers: a short-lived events token for this job rides in the query string.
        stream = asyncio.create_task(client.get("/v1/song/events", params={"intent_id": intent, "access_token": token}))
        await asyncio.sleep(0.3)
        gate.set()
        response = await asyncio.wait_for(stream, 30)
        assert response.status_code == 200 and response.headers["content-type"].startswith("text/event-stream")
    events = _sse(response.text)
    kinds = [k for k, _ in events]
    assert kinds[0] == "status" and kinds[-1] == "done"
    assert "lyrics" in kinds and "progress" in kinds
    lyrics = [d["text"] for k, d in events if k == "lyrics"]
    assert lyrics[-1].startswith("[Verse 1]") and "sea chorus" in lyrics[-1]
    steps = [(d["step"], d["total"]) for k, d in events if k == "progress" and d.get("stage") == "diffusion"]
    assert steps[-1] == (5, 5)
    statuses = [d["status"] for k, d in events if k == "status"]
    assert "audio_pending" in statuses
    done = events[-1][1]
    assert done["status"] == "succeeded" and len(done["items"]) == 1


async def test_cancel_queued_and_running(tmp_path) -> None:
    double = StageRunnerDouble()
    gate = double.gate("sampler")
    async with running_app(make_settings(tmp_path, triton_concurrency=1), double) as (_, client):
        headers = await login(client)
        first = (await client.post("/v1/song/create", json={"theme": "a", "duration": 10}, headers=headers)).json()
        second = (await client.post("/v1/song/create", json={"theme": "b", "duration": 10}, headers=headers)).json()
        running, queued = first["data"]["intent_id"], second["data"]["intent_id"]
        await asyncio.wait_for(double.entered["sampler"].wait(), 10)
        waiting = await song_status(client, headers, queued)
        assert waiting["queue_position"] == 1 and waiting["eta_seconds"] > 0
        r = await client.post("/v1/song/cancel", json={"intent_id": queued}, headers=headers)
        assert r.status_code == 200 and r.json()["data"]["status"] == "cancelled"
        r = await client.post("/v1/song/cancel", json={"intent_id": running}, headers=headers)
        assert r.json()["data"]["status"] == "cancelled"
        gate.set()
        await asyncio.sleep(0.3)
        for intent in (running, queued):
            data = await song_status(client, headers, intent)
            assert data["status"] == "cancelled" and data["items"] == []
        assert [m for m, _ in double.calls].count("sampler") == 1  # the queued one never ran
        r = await client.post("/v1/song/cancel", json={"intent_id": "nope"}, headers=headers)
        assert r.status_code == 404 and r.json()["error"]["field"] == "intent_id"


async def test_queue_full_answers_429_with_retry_after(tmp_path) -> None:
    settings = make_settings(tmp_path, triton_concurrency=0, queue_max=3)  # API only: nothing drains the queue
    async with running_app(settings, StageRunnerDouble()) as (_, client):
        headers = await login(client)
        for _ in range(3):
            r = await client.post("/v1/song/create", json={"theme": "x"}, headers=headers)
            assert r.status_code == 200
        r = await client.post("/v1/song/create", json={"theme": "x"}, headers=headers)
        assert r.status_code == 429
        assert int(r.headers["Retry-After"]) >= 1
        assert r.json()["code"] == 429 and "queue is full" in r.json()["error"]["message"]
        stats = (await client.get("/v1/stats", headers=headers)).json()["data"]
        assert stats["queue_size"] == 3 and stats["queue_maxsize"] == 3


async def test_lyricist_disabled_is_503_and_model_errors_fail_the_job(tmp_path) -> None:
    async with running_app(make_settings(tmp_path, enable_lyricist=False), StageRunnerDouble()) as (_, client):
        headers = await login(client)
        r = await client.post("/v1/song/create", json={"theme": "x"}, headers=headers)
        assert r.status_code == 503 and "TRITONE_ENABLE_LYRICIST" in r.json()["error"]["message"]
    failing = StageRunnerDouble(fail={"lyricist": "lyricist: not configured: set lyricist_dir or lyricist_endpoint"})
    async with running_app(make_settings(tmp_path / "b"), failing) as (_, client):
        headers = await login(client)
        intent = (await client.post("/v1/song/create", json={"theme": "x"}, headers=headers)).json()["data"][
            "intent_id"
        ]
        failed = await wait_song(client, headers, intent, ("failed",))
        assert failed["error"].startswith("lyrics: lyricist: not configured") and "lyricist_dir" in failed["error"]


async def test_stage_timeout_fails_the_job_naming_the_stage(tmp_path) -> None:
    double = StageRunnerDouble()
    double.gate("sampler")  # never opened: the audio stage hangs
    async with running_app(make_settings(tmp_path, audio_timeout_s=0.5), double) as (_, client):
        headers = await login(client)
        r = await client.post("/v1/song/create", json={"theme": "slow", "duration": 10}, headers=headers)
        failed = await wait_song(client, headers, r.json()["data"]["intent_id"], ("failed",))
        assert failed["error"] == "audio: timed out after 0.5 s (raise TRITONE_AUDIO_TIMEOUT_S if this is expected)"
        assert failed["lyrics"]  # the finished stage's output stays
