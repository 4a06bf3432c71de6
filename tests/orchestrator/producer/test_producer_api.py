"""The Producer API (seed 002) over the job pipelines, driven by the in-process stage runner (``doubles.py``): the
envelope, auth, the error shapes and codes, the model map, the sync wait and its timeout, the callback, the task
query. The same requests through a real tritonserver: ``test_producer_triton.py``."""

from __future__ import annotations

import asyncio
import json
import re

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
            json={"action": "generate", "model": "FUZZ-2.0 Pro", "lyric": lyric, "custom": True, "weirdness": 0.25},
        )
        [item] = r.json()["data"]
        # custom: the lyrics as given, the title from their first line (as the seed's answer shows), no lyricist
        assert item["lyric"] == lyric and item["title"] == "Woke up with the sun in my eyes" and item["sound"] == ""
        assert not any(m == "lyricist" for m, _ in double.calls)
        sampler = _songs(double)[-1]
        assert sampler["lyrics"] == lyric and sampler["shift"] == 2.0  # weirdness 0.25 -> shift 1 + 4 * 0.25

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
        r = await client.post("/producer/audios", headers={**CAROL, "content-type": "application/json"}, content="{")
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
        body = {"action": "generate", "custom": True, "lyric": "[Verse]\nla la", "title": "T"}
        [item] = (await client.post("/producer/audios", headers=CAROL, json=body)).json()["data"]
        assert item["model"] == "Studio" and item["title"] == "T"
        assert _songs(double)[-1]["family"] == "acestep_v1"
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
