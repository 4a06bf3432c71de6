"""The Producer API (seed 002) over the job pipelines, driven by the in-process stage runner (``doubles.py``): the
envelope, auth, the error shapes and codes, the model map, the sync wait and its timeout, the callback, the task
query. The same requests through a real tritonserver: ``test_producer_triton.py``."""

from __future__ import annotations

import asyncio
import io
import json
import re
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import numpy as np
import pytest
import soundfile as sf

from orchestrator.families import family_facts
from orchestrator.services.webhooks import verify_signature
from tests.orchestrator.doubles import StageRunnerDouble
from tests.orchestrator.support import make_settings, running_app, wait_for
from tests.orchestrator.test_webhooks import Receiver

CAROL = {"authorization": "Bearer key-carol-123", "accept": "application/json"}
DAVE = {"authorization": "Bearer key-dave-456"}
SEED_ITEM_KEYS = [
    "id", "title", "image_url", "lyric", "audio_url", "video_url", "image_id", "topic", "seed", "sound",
    "created_at", "model", "progress", "state", "duration",
]  # fmt: skip
# The seed's model names, as it lists them
FUZZ_NAMES = (
    "FUZZ-2.0 Pro", "FUZZ-2.0", "FUZZ-2.0 Raw", "FUZZ-1.1 Pro", "FUZZ-1.0 Pro", "FUZZ-1.0", "FUZZ-1.1", "FUZZ-0.8",
)  # fmt: skip
QUICK = {"producer_duration_s": 10, "producer_inference_steps": 2}


def _settings(tmp_path, **overrides):  # type: ignore[no-untyped-def]
    keys = {"key-carol-123": "carol", "key-dave-456": "dave"}
    return make_settings(tmp_path, api_keys=keys, **QUICK, **overrides)


def _songs(double: StageRunnerDouble) -> list[dict]:
    """The sampler requests that made songs (not its catalog look-ups)."""
    return [r for m, r in double.calls if m == "sampler" and "seeds" in r]


def _error(response, status: int, code: str) -> str:  # type: ignore[no-untyped-def]
    assert response.status_code == status, response.text
    body = response.json()
    assert set(body) == {"success", "error", "trace_id"} and body["success"] is False, body
    assert body["error"]["code"] == code and body["trace_id"], body
    return str(body["error"]["message"])


async def test_generate_answers_in_the_seed_shape(tmp_path) -> None:
    double = StageRunnerDouble()
    async with running_app(_settings(tmp_path), double) as (_, client):
        r = await client.post(
            "/producer/audios", headers=CAROL, json={"action": "generate", "prompt": "A song for Christmas"}
        )
        assert r.status_code == 200, r.text
        body = r.json()
        assert list(body) == ["success", "task_id", "trace_id", "data"] and body["success"] is True
        [item] = body["data"]
        assert list(item) == SEED_ITEM_KEYS
        assert item["state"] == "succeeded" and item["progress"] == "100%" and item["model"] == "FUZZ-2.0"
        assert item["sound"] == "A song for Christmas" and item["video_url"] is None and item["topic"] is None
        assert item["lyric"].startswith("[Verse 1]") and item["title"] and float(item["duration"]) == 10.0
        assert re.fullmatch(r"\d+", item["seed"]) and item["created_at"].endswith("Z")
        assert item["audio_url"].startswith("http://tritone.test/v1/files/") and item["image_id"] == item["id"]
        audio = await client.get(item["audio_url"])
        assert audio.status_code == 200 and audio.headers["content-type"] == "audio/mpeg"
        assert (await client.get(item["image_url"])).headers["content-type"] == "image/png"
    lyricist = next(r for m, r in double.calls if m == "lyricist")
    assert lyricist["theme"] == "A song for Christmas" and lyricist["language"] == "en"
    sampler = next(r for m, r in double.calls if m == "sampler" and "seeds" in r)
    assert sampler["inference_steps"] == 2 and sampler["duration"] == 10


async def test_custom_and_instrumental_modes(tmp_path) -> None:
    double = StageRunnerDouble()
    async with running_app(_settings(tmp_path), double) as (_, client):
        lyric = "[Verse]\nWoke up with the sun in my eyes\nNo clouds above"
        r = await client.post(
            "/producer/audios",
            headers=CAROL,
            json={
                "action": "generate",
                "model": "FUZZ-2.0 Pro",
                "lyric": lyric,
                "custom": True,
                "weirdness": 0.25,
                "lyrics_strength": 0.85,
            },
        )
        [item] = r.json()["data"]
        # custom: the lyrics as given, the title from their first line (as the seed's answer shows), no lyricist
        assert item["lyric"] == lyric and item["title"] == "Woke up with the sun in my eyes" and item["sound"] == ""
        assert not any(m == "lyricist" for m, _ in double.calls)
        sampler = _songs(double)[-1]
        assert sampler["lyrics"] == lyric and sampler["shift"] == 2.0  # weirdness 0.25 -> shift 1 + 4 * 0.25
        assert sampler["lyric_guidance"] == pytest.approx(2.0)  # lyrics_strength 0.85 -> 1 + 2 * 0.15 / 0.3

        r = await client.post(
            "/producer/audios",
            headers=CAROL,
            json={"action": "generate", "prompt": "rainy jazz", "instrumental": True, "title": "Rain"},
        )
        [item] = r.json()["data"]
        assert item["title"] == "Rain" and item["lyric"] == "[Instrumental]" and item["sound"] == "rainy jazz"
        assert not any(m == "lyricist" for m, _ in double.calls)  # instrumental: nothing to write
        assert _songs(double)[-1]["lyrics"] == "[Instrumental]"

        r = await client.post(
            "/producer/audios", headers=CAROL, json={"action": "generate", "prompt": "周末骑单车", "weirdness": 1.0}
        )
        assert r.status_code == 200, r.text
        lyricist = next(r for m, r in double.calls if m == "lyricist")
        assert lyricist["language"] == "zh" and lyricist["temperature"] == 1.3  # weirdness 1 -> 0.4 + 0.9


async def test_errors_name_the_field_in_the_seed_shape(tmp_path) -> None:
    async with running_app(_settings(tmp_path), StageRunnerDouble()) as (_, client):
        generate = {"action": "generate", "prompt": "x"}
        message = _error(await client.post("/producer/audios", json=generate), 401, "invalid_token")
        assert "Authorization: Bearer" in message
        bad = {"authorization": "Bearer not-a-key"}
        _error(await client.post("/producer/audios", headers=bad, json=generate), 401, "invalid_token")
        _error(await client.post("/producer/tasks", headers=bad, json={"action": "retrieve", "id": "x"}), 401,
               "invalid_token")  # fmt: skip

        r = await client.post("/producer/audios", headers=CAROL, json={**generate, "model": "FUZZ-3.0"})
        message = _error(r, 400, "token_mismatched")
        assert message.startswith("model: 'FUZZ-3.0'") and all(name in message for name in FUZZ_NAMES)

        message = _error(await client.post("/producer/audios", headers=CAROL, json={"action": "dance"}), 400,
                         "api_not_implemented")  # fmt: skip
        assert "'dance'" in message and "generate" in message and "swap_instrumentals" in message

        cases = {
            "prompt": {"action": "generate"},  # custom false needs what the song is about
            "lyric": {"action": "generate", "custom": True},  # custom true needs lyrics (or instrumental)
            "weirdness": {**generate, "weirdness": 2},
            "sound_strength": {**generate, "sound_strength": 0.1},
            "callback_url": {**generate, "callback_url": "ftp://example.com/x"},
            "colour": {**generate, "colour": "blue"},  # unknown fields are refused, not ignored
            "cover_strength": {**generate, "cover_strength": 0.5},  # generate does not read it
            "lyrics_strength": {**generate, "lyrics_strength": 0.5},  # custom false: no lyrics of the caller's
            "replace_section_end": {"action": "generate", "replace_section_start": 9, "replace_section_end": 3},
            "action": {"prompt": "x"},
        }
        for field, body in cases.items():
            message = _error(await client.post("/producer/audios", headers=CAROL, json=body), 400, "token_mismatched")
            assert message.startswith(f"{field}:"), (field, message)
        lyric_without_custom = {**generate, "lyric": "[Verse]\nmine"}
        message = _error(await client.post("/producer/audios", headers=CAROL, json=lyric_without_custom), 400,
                         "token_mismatched")  # fmt: skip
        assert message.startswith("lyric:") and "custom: true" in message
        for raw in (b"{", b"\xc2"):  # not JSON; not even UTF-8
            r = await client.post(
                "/producer/audios", headers={**CAROL, "content-type": "application/json"}, content=raw
            )
            _error(r, 400, "token_mismatched")
        message = _error(await client.post("/producer/tasks", headers=CAROL, json={"action": "retrieve"}), 400,
                         "token_mismatched")  # fmt: skip
        assert message.startswith("id:")
        message = _error(await client.post("/producer/tasks", headers=CAROL, json={"action": "delete", "id": "x"}),
                         400, "api_not_implemented")  # fmt: skip
        assert "retrieve_batch" in message


async def test_rate_limit_is_too_many_requests(tmp_path) -> None:
    async with running_app(_settings(tmp_path, request_rate="2/minute"), StageRunnerDouble()) as (_, client):
        query = {"action": "retrieve", "id": "00000000-0000-0000-0000-000000000000"}
        for _ in range(2):
            assert (await client.post("/producer/tasks", headers=CAROL, json=query)).status_code == 404
        r = await client.post("/producer/tasks", headers=CAROL, json=query)
        assert "TRITONE_REQUEST_RATE" in _error(r, 429, "too_many_requests") and int(r.headers["Retry-After"]) >= 1


async def test_model_map_is_configuration(tmp_path) -> None:
    double = StageRunnerDouble()
    models = {"Studio": "acestep_v1", "FUZZ-2.0": "acestep15"}
    settings = _settings(tmp_path, producer_models=models, producer_default_model="Studio")
    async with running_app(settings, double) as (_, client):
        body = {"action": "generate", "custom": True, "lyric": "[Verse]\nla la", "title": "T", "lyrics_strength": 0.85}
        [item] = (await client.post("/producer/audios", headers=CAROL, json=body)).json()["data"]
        assert item["model"] == "Studio" and item["title"] == "T"
        sampler = _songs(double)[-1]
        assert sampler["family"] == "acestep_v1"
        # lyrics_strength 0.85 -> lyric weight 1 + 2 * 0.15 / 0.3 = 2 on v1's double-condition guidance
        scale = family_facts("acestep_v1").default_guidance
        assert sampler["guidance_scale_text"] == scale
        assert sampler["guidance_scale_lyric"] == pytest.approx(min(30.0, 2 * scale))
        message = _error(
            await client.post("/producer/audios", headers=CAROL, json={**body, "model": "FUZZ-2.0 Pro"}),
            400,
            "token_mismatched",
        )
        assert "allowed: Studio, FUZZ-2.0" in message


async def test_sync_wait_times_out_with_the_items_still_running_then_the_task_query(tmp_path) -> None:
    double = StageRunnerDouble()
    gate = double.gate("lyricist")
    async with running_app(_settings(tmp_path, producer_wait_s=0.3), double) as (_, client):
        r = await client.post("/producer/audios", headers=CAROL, json={"action": "generate", "prompt": "late night"})
        assert r.status_code == 200, r.text
        body = r.json()
        [item] = body["data"]
        assert list(item) == SEED_ITEM_KEYS and item["state"] == "running" and item["audio_url"] is None
        assert item["model"] == "FUZZ-2.0" and item["sound"] == "late night" and item["progress"].endswith("%")
        task = body["task_id"]
        retrieve = {"action": "retrieve", "id": task}
        [running] = (await client.post("/producer/tasks", headers=CAROL, json=retrieve)).json()["data"]
        assert running["state"] == "running"
        gate.set()

        async def done() -> dict | None:
            answer = (await client.post("/producer/tasks", headers=CAROL, json=retrieve)).json()
            return answer if answer["data"][0]["state"] == "succeeded" else None

        answer = await wait_for(done, what="the task to succeed")
        assert list(answer) == ["success", "task_id", "trace_id", "data"] and answer["task_id"] == task
        assert answer["data"][0]["audio_url"] and answer["data"][0]["progress"] == "100%"
        assert answer["data"][0]["id"] == item["id"]  # the id a running item shows is the clip it becomes

        # retrieve_batch: the caller's tasks in order; an unknown id and another user's task are not found
        other = await client.post("/producer/audios", headers=DAVE, json={"action": "generate", "prompt": "mine"})
        theirs = other.json()["task_id"]
        batch = {"action": "retrieve_batch", "ids": [task, "no-such-task", theirs]}
        r = await client.post("/producer/tasks", headers=CAROL, json=batch)
        assert r.status_code == 200, r.text
        listing = r.json()
        assert listing["success"] is True and listing["count"] == 3
        first, unknown, foreign = listing["items"]
        assert first["task_id"] == task and first["data"][0]["state"] == "succeeded"
        for entry, task_id in ((unknown, "no-such-task"), (foreign, theirs)):
            assert entry["success"] is False and entry["error"]["code"] == "not_found" and entry["task_id"] == task_id
        r = await client.post("/producer/tasks", headers=CAROL, json={"action": "retrieve", "id": theirs})
        assert r.status_code == 404 and r.json()["error"]["code"] == "not_found"


async def test_callback_gets_the_full_answer_once_signed(tmp_path) -> None:
    settings = _settings(
        tmp_path, allow_private_callbacks=True, webhook_backoff_s=0.05, webhook_secrets={"carol": "carol-secret"}
    )
    with Receiver(fail_first=1) as receiver:
        async with running_app(settings, StageRunnerDouble()) as (_, client):
            body = {"action": "generate", "prompt": "hooks", "callback_url": receiver.url}
            r = await client.post("/producer/audios", headers=CAROL, json=body)
            assert r.status_code == 200 and list(r.json()) == ["task_id"], r.text
            task = r.json()["task_id"]

            async def delivered() -> bool:
                return len(receiver.deliveries) >= 2  # the first attempt answered 500 and was retried

            await wait_for(delivered, what="the callback")
            await asyncio.sleep(0.3)  # nothing else follows (no queued/stage events for Producer tasks)
            headers, raw = receiver.deliveries[-1]
            payload = json.loads(raw)
            assert verify_signature("carol-secret", headers["X-Tritone-Signature"], raw)
            assert len(receiver.deliveries) == 2 and receiver.deliveries[0][1] == raw
            assert payload["success"] is True and payload["task_id"] == task and payload["trace_id"]
            [item] = payload["data"]
            assert list(item) == SEED_ITEM_KEYS and item["state"] == "succeeded" and item["sound"] == "hooks"
            assert (await client.get(item["audio_url"])).status_code == 200
            retrieved = await client.post("/producer/tasks", headers=CAROL, json={"action": "retrieve", "id": task})

            def unsigned(items: list[dict]) -> list[dict]:  # links are signed when made: their expiry differs
                return [{k: (v.split("?")[0] if k.endswith("_url") and v else v) for k, v in i.items()} for i in items]

            assert unsigned(retrieved.json()["data"]) == unsigned(payload["data"])


class FileServer:
    """A local HTTP server answering every GET with ``body`` (an ``audio_url`` to fetch)."""

    def __init__(self, body: bytes) -> None:
        payload = body

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:  # noqa: N802
                self.send_response(200)
                self.send_header("Content-Type", "audio/wav")
                self.end_headers()
                self.wfile.write(payload)  # no Content-Length: the size bound counts what streams

            def log_message(self, *args: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/song.wav"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


def _wav(seconds: float = 3.0) -> bytes:
    t = np.arange(int(seconds * 48_000)) / 48_000
    tone = (0.3 * np.sin(2 * np.pi * 220 * t)).astype(np.float32)
    buffer = io.BytesIO()
    sf.write(buffer, np.stack([tone, tone], axis=1), 48_000, format="WAV", subtype="PCM_16")
    return buffer.getvalue()


async def test_upload_a_file_or_an_audio_url_under_the_callback_guard(tmp_path) -> None:
    wav = _wav()
    server, big = FileServer(wav), FileServer(wav + b"\0" * 4096)  # one byte over the bound is enough
    try:
        settings = _settings(tmp_path / "open", allow_private_callbacks=True, producer_fetch_max_bytes=len(wav))
        async with running_app(settings, StageRunnerDouble()) as (_, client):
            r = await client.post("/producer/upload", headers=CAROL, files={"file": ("song.wav", wav, "audio/wav")})
            assert r.status_code == 200, r.text
            body = r.json()
            assert list(body) == ["success", "task_id", "trace_id", "data"] and body["success"] is True
            assert body["data"]["audio_id"] and float(body["data"]["duration"]) == 3.0
            assert (await client.get(body["data"]["audio_url"])).content == wav  # kept as sent

            r = await client.post("/producer/upload", headers=CAROL, json={"audio_url": server.url})
            assert r.status_code == 200, r.text
            fetched = r.json()["data"]["audio_id"]
            assert fetched != body["data"]["audio_id"]
            # the clip is the caller's: another user's edit of it is not found
            cover = {"action": "upload_cover", "audio_id": fetched, "custom": True, "lyric": "[Verse]\nla"}
            r = await client.post("/producer/audios", headers=DAVE, json=cover)
            assert "no such clip" in _error(r, 404, "not_found")

            message = _error(await client.post("/producer/upload", headers=CAROL, json={"audio_url": big.url}), 413,
                             "token_mismatched")  # fmt: skip
            assert message.startswith("audio_url:") and str(len(wav)) in message
            not_audio = FileServer(b"<html>not audio</html>")
            try:
                r = await client.post("/producer/upload", headers=CAROL, json={"audio_url": not_audio.url})
                assert _error(r, 400, "token_mismatched").startswith("audio_url:")
            finally:
                not_audio.close()
            assert _error(await client.post("/producer/upload", headers=CAROL, json={}), 400,
                          "token_mismatched").startswith("audio_url:")  # fmt: skip
            r = await client.post("/producer/upload", headers=CAROL, json={"audio_url": "ftp://example.com/a.wav"})
            assert _error(r, 400, "token_mismatched").startswith("audio_url:")
        async with running_app(_settings(tmp_path / "guarded"), StageRunnerDouble()) as (_, client):
            r = await client.post("/producer/upload", headers=CAROL, json={"audio_url": server.url})
            message = _error(r, 400, "token_mismatched")
            assert message.startswith("audio_url:") and "private" in message
    finally:
        server.close()
        big.close()


async def test_edit_actions_map_the_seed_fields(tmp_path) -> None:
    double = StageRunnerDouble()
    async with running_app(_settings(tmp_path), double) as (_, client):
        r = await client.post("/producer/upload", headers=CAROL, files={"file": ("a.wav", _wav(12.0), "audio/wav")})
        audio_id = r.json()["data"]["audio_id"]
        cover = {
            "action": "upload_cover",
            "audio_id": audio_id,
            "custom": True,
            "lyric": "[Verse]\nnew",
            "prompt": "rock",
            "cover_strength": 0.4,
            "weirdness": 0.75,
            "title": "Mine",
        }
        [item] = (await client.post("/producer/audios", headers=CAROL, json=cover)).json()["data"]
        assert item["state"] == "succeeded" and item["title"] == "Mine" and item["lyric"] == "[Verse]\nnew"
        assert item["sound"] == "rock" and item["model"] == "FUZZ-2.0" and item["id"] != audio_id
        sampler = _songs(double)[-1]
        assert sampler["task_type"] == "cover" and sampler["audio_cover_strength"] == 0.4
        assert sampler["caption"] == "rock" and sampler["lyrics"] == "[Verse]\nnew" and sampler["shift"] == 4.0

        extend = {"action": "extend", "audio_id": item["id"], "continue_at": 5}
        [longer] = (await client.post("/producer/audios", headers=CAROL, json=extend)).json()["data"]
        assert float(longer["duration"]) == 35.0 and longer["title"] == "Mine"  # the source's title stays
        sampler = _songs(double)[-1]
        assert sampler["task_type"] == "repaint" and sampler["repainting_start"] == 5

        cases = {
            "audio_id": {"action": "cover"},
            "replace_section_end": {"action": "replace_section", "audio_id": audio_id, "replace_section_start": 1},
            "continue_at": {"action": "cover", "audio_id": audio_id, "continue_at": 3},  # cover does not read it
            "lyric": {"action": "variation", "audio_id": audio_id, "lyric": "[Verse]\nx"},  # custom false
        }
        for field, body in cases.items():
            message = _error(await client.post("/producer/audios", headers=CAROL, json=body), 400, "token_mismatched")
            assert message.startswith(f"{field}:"), (field, message)
        missing = {"action": "stems", "audio_id": "00000000-0000-0000-0000-000000000000"}
        assert _error(await client.post("/producer/audios", headers=CAROL, json=missing), 404,
                      "not_found").startswith("audio_id:")  # fmt: skip


async def test_aligned_items_carry_the_lyric_timing(tmp_path) -> None:
    double = StageRunnerDouble()
    async with running_app(_settings(tmp_path), double) as (_, client):
        body = {"action": "generate", "custom": True, "lyric": "[Verse]\nla la", "align_lyrics": True}
        [item] = (await client.post("/producer/audios", headers=CAROL, json=body)).json()["data"]
        assert list(item) == [*SEED_ITEM_KEYS, "lrc", "aligned_lyrics", "alignment_score"]
        assert item["lrc"] and item["aligned_lyrics"][0]["word"] == "w" and item["alignment_score"] == 0.25
        assert _songs(double)[-1]["align_lyrics"] is True


async def test_a_failed_task_answers_api_error_and_its_callback_says_so(tmp_path) -> None:
    settings = _settings(tmp_path, allow_private_callbacks=True)
    with Receiver() as receiver:
        async with running_app(settings, StageRunnerDouble(fail={"sampler": "the DiT ran out of memory"})) as (
            _,
            client,
        ):
            body = {"action": "generate", "custom": True, "lyric": "[Verse]\nla"}
            r = await client.post("/producer/audios", headers=CAROL, json=body)
            assert r.status_code == 500, r.text
            answer = r.json()
            assert answer["success"] is False and answer["task_id"] and answer["error"]["code"] == "api_error"
            assert "the DiT ran out of memory" in answer["error"]["message"]
            retrieved = await client.post(
                "/producer/tasks", headers=CAROL, json={"action": "retrieve", "id": answer["task_id"]}
            )
            assert retrieved.status_code == 200 and retrieved.json()["error"] == answer["error"]

            r = await client.post("/producer/audios", headers=CAROL, json={**body, "callback_url": receiver.url})
            task = r.json()["task_id"]

            async def delivered() -> bool:
                return bool(receiver.deliveries)

            await wait_for(delivered, what="the callback of the failed task")
            payload = json.loads(receiver.deliveries[0][1])
            assert payload["success"] is False and payload["task_id"] == task and payload["status"] == "failed"
            assert payload["error"]["code"] == "api_error" and "out of memory" in payload["error"]["message"]
