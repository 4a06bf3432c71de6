"""The Producer API through a real tritonserver serving the tiny repository: the seed's literal curl bodies, the sync
wait, the callback flow with a local receiver, the task query. (Shapes and errors without models:
``test_producer_api.py``.)"""

from __future__ import annotations

import io
import json
import zipfile

import numpy as np
import pytest

from orchestrator.media.audio import SAMPLE_RATE, decode_audio
from orchestrator.services.producer import WIRED
from orchestrator.services.webhooks import verify_signature
from tests.orchestrator.producer.seed_bodies import GENERATE, GENERATE_CUSTOM, SEED_BODIES
from tests.orchestrator.producer.test_producer_api import CAROL, QUICK, SEED_ITEM_KEYS, _wav
from tests.orchestrator.support import make_settings, running_app, wait_for
from tests.orchestrator.test_triton import _needs
from tests.orchestrator.test_webhooks import Receiver

pytestmark = pytest.mark.triton


@pytest.fixture
def triton_server(request: pytest.FixtureRequest):  # type: ignore[no-untyped-def]
    return _needs(request, "triton")


async def _audio(client, item: dict, media_type: str = "audio/mpeg") -> np.ndarray:  # type: ignore[no-untyped-def]
    response = await client.get(item["audio_url"])
    assert response.status_code == 200 and response.headers["content-type"] == media_type, response.text[:200]
    return decode_audio(response.content, target_rate=SAMPLE_RATE)


async def test_seed_bodies_sync_and_callback_on_real_triton(triton_server, tmp_path) -> None:
    settings = make_settings(
        tmp_path,
        triton_urls=[triton_server.grpc_url],
        allow_private_callbacks=True,
        webhook_secrets={"carol": "carol-secret"},
        **QUICK,
    )
    with Receiver() as receiver:
        async with running_app(settings) as (_, client):
            # The seed's first body, as sent: the lyricist writes from the prompt, the request waits for the song.
            r = await client.post("/producer/audios", headers=CAROL, json=GENERATE)
            assert r.status_code == 200, r.text
            answer = r.json()
            assert list(answer) == ["success", "task_id", "trace_id", "data"] and answer["success"] is True
            [song] = answer["data"]
            assert list(song) == SEED_ITEM_KEYS and song["state"] == "succeeded" and song["progress"] == "100%"
            assert song["model"] == "FUZZ-2.0 Pro" and song["sound"] == "A song for Christmas"
            assert song["lyric"].strip() and song["title"] and float(song["duration"]) == 10.0
            wave = await _audio(client, song)
            assert wave.shape[0] == 2 and abs(wave.shape[1] / SAMPLE_RATE - 10.0) < 0.2 and np.abs(wave).max() > 0
            assert (await client.get(song["image_url"])).status_code == 200

            # The seed's custom body, with a callback: {task_id} at once, the full answer POSTed when done.
            r = await client.post(
                "/producer/audios", headers=CAROL, json={**GENERATE_CUSTOM, "callback_url": receiver.url}
            )
            assert r.status_code == 200 and list(r.json()) == ["task_id"], r.text
            task = r.json()["task_id"]

            async def delivered() -> bool:
                return bool(receiver.deliveries)

            await wait_for(delivered, timeout=300, interval=0.3, what="the Producer callback")
            headers, raw = receiver.deliveries[0]
            assert verify_signature("carol-secret", headers["X-Tritone-Signature"], raw)
            payload = json.loads(raw)
            assert payload["success"] is True and payload["task_id"] == task, payload
            [custom] = payload["data"]
            assert custom["state"] == "succeeded" and custom["lyric"] == GENERATE_CUSTOM["lyric"]
            assert custom["title"] == "Woke up with the sun in my eyes" and custom["sound"] == ""
            await _audio(client, custom)

            # The task query answers the same items.
            r = await client.post("/producer/tasks", headers=CAROL, json={"action": "retrieve", "id": task})
            assert r.status_code == 200 and r.json()["data"][0]["id"] == custom["id"], r.text
            r = await client.post(
                "/producer/tasks",
                headers=CAROL,
                json={"action": "retrieve_batch", "ids": [answer["task_id"], task]},
            )
            assert [a["data"][0]["id"] for a in r.json()["items"]] == [song["id"], custom["id"]]

    assert len(receiver.deliveries) == 1  # one callback: the result, no stage events


async def _run(client, body: dict) -> dict:  # type: ignore[no-untyped-def]
    r = await client.post("/producer/audios", headers=CAROL, json=body)
    assert r.status_code == 200, r.text
    [item] = r.json()["data"]
    assert item["state"] == "succeeded", item
    return dict(item)


@pytest.mark.slow
async def test_chain_generate_extend_replace_section_stems(triton_server, tmp_path) -> None:
    """The seed's bodies in a chain, each on the song the last one made: generate → extend → replace_section →
    stems (their audio_id ours; replace_section's window inside our shorter song)."""
    settings = make_settings(tmp_path, triton_urls=[triton_server.grpc_url], **QUICK)
    async with running_app(settings) as (_, client):
        song = await _run(client, GENERATE_CUSTOM)
        extend = SEED_BODIES["extend"]
        extended = await _run(client, {**extend, "audio_id": song["id"]})
        assert extended["id"] != song["id"] and extended["title"] == "续写" and extended["lyric"] == extend["lyric"]
        assert float(extended["duration"]) == pytest.approx(3 + 30, abs=0.5)  # kept to continue_at, then 30 s more
        head, whole = await _audio(client, song), await _audio(client, extended)
        cut = 3 * SAMPLE_RATE - SAMPLE_RATE // 10  # the kept part, short of the crossfade
        assert np.allclose(head[:, :cut], whole[:, :cut], atol=0.05)

        replace = {**SEED_BODIES["replace_section"], "audio_id": extended["id"]}
        r = await client.post("/producer/audios", headers=CAROL, json=replace)  # 3..70 s: past the song's end
        assert r.status_code == 400 and r.json()["error"]["message"].startswith("replace_section_end:"), r.text
        replaced = await _run(client, {**replace, "replace_section_start": 10, "replace_section_end": 20})
        assert float(replaced["duration"]) == pytest.approx(float(extended["duration"]), abs=0.1)

        r = await client.post(
            "/producer/audios", headers=CAROL, json={**SEED_BODIES["stems"], "audio_id": replaced["id"]}
        )
        assert r.status_code == 200, r.text
        [stems] = r.json()["data"]
        assert list(stems) == ["title", "lyric", "stems_url", "model", "progress", "state"]
        assert stems["state"] == "succeeded" and stems["stems_url"]
        archive = await client.get(stems["stems_url"])
        assert archive.status_code == 200
        with zipfile.ZipFile(io.BytesIO(archive.content)) as zipped:
            assert sorted(zipped.namelist()) == ["instrumental.wav", "vocals.wav"]


async def test_upload_then_replace_section_and_stems(triton_server, tmp_path) -> None:
    """The default run's short chain: an uploaded song, one section of it replaced (the rest kept), its stems."""
    # flac: lossless, and no codec delay, so the kept audio compares sample for sample
    settings = make_settings(tmp_path, triton_urls=[triton_server.grpc_url], producer_audio_format="flac", **QUICK)
    async with running_app(settings) as (_, client):
        wav = _wav(12.0)  # the sampler makes 10 s at the least
        r = await client.post("/producer/upload", headers=CAROL, files={"file": ("song.wav", wav, "audio/wav")})
        assert r.status_code == 200, r.text
        audio_id = r.json()["data"]["audio_id"]
        body = {
            "action": "upload_replace_section",
            "model": "FUZZ-2.0",
            "audio_id": audio_id,
            "custom": True,
            "lyric": "[Verse]\nnew words here",
            "replace_section_start": 2,
            "replace_section_end": 4,
        }
        replaced = await _run(client, body)
        assert replaced["id"] != audio_id and replaced["lyric"] == body["lyric"]
        source, edited = decode_audio(wav, target_rate=SAMPLE_RATE), await _audio(client, replaced, "audio/flac")
        assert edited.shape == source.shape
        edge = SAMPLE_RATE // 4  # outside the window beyond the crossfade: the source (24-bit flac)
        assert np.allclose(edited[:, : 2 * SAMPLE_RATE - edge], source[:, : 2 * SAMPLE_RATE - edge], atol=1e-3)
        assert np.allclose(edited[:, 4 * SAMPLE_RATE + edge :], source[:, 4 * SAMPLE_RATE + edge :], atol=1e-3)
        assert not np.allclose(edited[:, 2 * SAMPLE_RATE + edge : 4 * SAMPLE_RATE - edge],
                               source[:, 2 * SAMPLE_RATE + edge : 4 * SAMPLE_RATE - edge], atol=0.05)  # fmt: skip

        r = await client.post("/producer/audios", headers=CAROL, json={"action": "stems", "audio_id": replaced["id"]})
        assert r.status_code == 200, r.text
        [stems] = r.json()["data"]
        assert stems["state"] == "succeeded" and stems["title"] == replaced["title"] and stems["model"] == ""
        with zipfile.ZipFile(io.BytesIO((await client.get(stems["stems_url"])).content)) as zipped:
            assert sorted(zipped.namelist()) == ["instrumental.wav", "vocals.wav"]


@pytest.mark.slow
async def test_the_seed_edit_bodies_on_a_song(triton_server, tmp_path) -> None:
    """cover, variation, swap_instrumentals, swap_vocals as the seed writes them, on a song of ours. The swaps run on
    the base set (the tiny export has one)."""
    assert set(SEED_BODIES) - {"generate", "generate_custom"} <= set(WIRED)
    settings = make_settings(tmp_path, triton_urls=[triton_server.grpc_url], **QUICK)
    async with running_app(settings) as (_, client):
        song = await _run(client, GENERATE_CUSTOM)
        for action in ("cover", "variation", "swap_instrumentals", "swap_vocals"):
            body = {**SEED_BODIES[action], "audio_id": song["id"]}
            item = await _run(client, body)
            assert item["id"] not in (song["id"], None) and item["model"] == "FUZZ-2.0 Pro", (action, item)
            assert item["title"] == body.get("title", song["title"]), (action, item)
            if "lyric" in body:
                assert item["lyric"] == body["lyric"], action
            wave = await _audio(client, item)
            assert abs(wave.shape[1] / SAMPLE_RATE - float(song["duration"])) < 0.2 and np.abs(wave).max() > 0
