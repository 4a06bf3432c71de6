"""The Producer API through a real tritonserver serving the tiny repository: the seed's literal curl bodies, the sync
wait, the callback flow with a local receiver, the task query. (Shapes and errors without models:
``test_producer_api.py``.)"""

from __future__ import annotations

import json

import numpy as np
import pytest

from orchestrator.media.audio import SAMPLE_RATE, decode_audio
from orchestrator.services.producer import WIRED
from orchestrator.services.webhooks import verify_signature
from tests.orchestrator.producer.seed_bodies import GENERATE, GENERATE_CUSTOM, SEED_BODIES
from tests.orchestrator.producer.test_producer_api import CAROL, QUICK, SEED_ITEM_KEYS
from tests.orchestrator.support import make_settings, running_app, wait_for
from tests.orchestrator.test_triton import _needs
from tests.orchestrator.test_webhooks import Receiver

pytestmark = pytest.mark.triton


@pytest.fixture
def triton_server(request: pytest.FixtureRequest):  # type: ignore[no-untyped-def]
    return _needs(request, "triton")


async def _audio(client, item: dict) -> np.ndarray:  # type: ignore[no-untyped-def]
    response = await client.get(item["audio_url"])
    assert response.status_code == 200 and response.headers["content-type"] == "audio/mpeg", response.text[:200]
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

            # The seed's other bodies on our own song: an action this build does not run says so, naming it.
            for action, body in SEED_BODIES.items():
                if action in WIRED or action.startswith("generate"):
                    continue
                r = await client.post("/producer/audios", headers=CAROL, json={**body, "audio_id": song["id"]})
                assert r.status_code == 400 and r.json()["error"]["code"] == "api_not_implemented", r.text
                assert f"'{action}'" in r.json()["error"]["message"]
    assert len(receiver.deliveries) == 1  # one callback: the result, no stage events
