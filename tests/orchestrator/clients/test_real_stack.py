"""The skill script's native flow and the chat route against the real tiny stack: a real tritonserver serving the
tiny repository (``tritone export --preset tiny``), the orchestrator in front of it. The tiny models are random, so
only the protocol, names and shapes are checked."""

from __future__ import annotations

import base64
import io
import json

import pytest
import soundfile as sf

from tests.orchestrator.clients.support import poll_query_result
from tests.orchestrator.support import API_KEYS, make_settings, running_app

pytestmark = pytest.mark.triton

BEARER = {"Authorization": f"Bearer {next(iter(API_KEYS))}"}
JSON_UTF8 = {"Content-Type": "application/json; charset=utf-8", **BEARER}


@pytest.fixture
def triton_server(request: pytest.FixtureRequest):  # type: ignore[no-untyped-def]
    try:
        return request.getfixturevalue("triton")
    except RuntimeError as exc:  # the tiny export or the server start failed
        pytest.skip(f"the tiny Triton stack is not available: {str(exc).strip().splitlines()[0][:300]}")


async def test_skill_script_and_chat_on_real_triton(triton_server, tmp_path) -> None:
    settings = make_settings(tmp_path, triton_urls=[triton_server.grpc_url])
    async with running_app(settings) as (_, client):
        models = (await client.get("/v1/models", headers=BEARER)).json()["data"]
        names = {m["name"] for m in models["models"]}
        assert {"acestep-v15-turbo", "acestep-v15-sft"} <= names and models["default_model"] in names
        assert all(m["is_loaded"] for m in models["models"]) and models["llm_initialized"]

        body = {
            "prompt": "lofi beat", "lyrics": "[Verse]\nhello", "sample_query": "", "thinking": True,
            "use_format": True, "use_cot_caption": True, "use_cot_language": True, "vocal_language": "en",
            "audio_format": "mp3", "use_random_seed": True, "model": "acestep-v15-sft", "audio_duration": 10,
            "inference_steps": 2,
        }
        r = await client.post("/release_task", content=json.dumps(body).encode(), headers=JSON_UTF8)
        assert r.status_code == 200, r.text
        polled = await poll_query_result(client, r.json()["data"]["task_id"], headers=BEARER, timeout=300)
        assert polled.entry["status"] == 1, polled.entry
        item = polled.items[0]
        assert item["dit_model"] == "acestep-v15-sft" and item["model"]["version_set"] == "sft"
        assert item["model"]["versions"]["dit"] and item["lm_model"] == "lm"
        assert item["metas"]["bpm"] and item["metas"]["duration"] == 10
        audio = await client.get(f"http://tritone.test{item['file']}", headers=BEARER)
        wave, rate = sf.read(io.BytesIO(audio.content))
        assert rate == 48000 and abs(len(wave) / rate - 10) < 0.2

        formatted = await client.post(
            "/format_input", json={"prompt": "lofi", "lyrics": "[Verse]\nhello", "param_obj": "{}"}, headers=BEARER
        )
        assert formatted.status_code == 200, formatted.text
        assert 30 <= formatted.json()["data"]["bpm"] <= 300

        r = await client.post(
            "/v1/chat/completions",
            json={
                "messages": [{"role": "user", "content": "<prompt>ambient pads</prompt>"}],
                "inference_steps": 2,
                "audio_config": {"duration": 10, "bpm": 70, "key_scale": "A minor", "time_signature": "4",
                                 "format": "wav"},
            },
            headers=BEARER,
            timeout=300,
        )
        assert r.status_code == 200, r.text
        url = r.json()["choices"][0]["message"]["audio"][0]["audio_url"]["url"]
        wave, rate = sf.read(io.BytesIO(base64.b64decode(url.split(",", 1)[1])))
        assert rate == 48000 and abs(len(wave) / rate - 10) < 0.2


async def test_init_loads_a_version_set_through_model_control(repository_copy, tmp_path) -> None:
    """The DAW's ``/v1/init``: a served version set whose networks are not all READY is loaded through Triton's
    model control (its own server on a private copy: the shared one is not changed)."""
    import tritonclient.grpc as grpcclient

    from model_repository.launcher.server import TritonServer
    from orchestrator.cli.models import set_versions

    server = TritonServer(repository_copy, log_path=tmp_path / "triton.log")
    server.start()
    try:
        settings = make_settings(tmp_path, triton_urls=[server.grpc_url])
        async with running_app(settings) as (_, client):
            by_name = {m["name"]: m for m in (await client.get("/v1/models", headers=BEARER)).json()["data"]["models"]}
            turbo, sft = by_name["acestep-v15-turbo"]["versions"], by_name["acestep-v15-sft"]["versions"]
            differs = sorted(k for k in sft if sft[k] != turbo.get(k))
            assert differs, (turbo, sft)
            control = grpcclient.InferenceServerClient(server.grpc_url)
            for name in differs:  # serve only turbo's versions of the networks the two sets do not share
                set_versions(control, name, [int(turbo[name])], repository=repository_copy)
            by_name = {m["name"]: m for m in (await client.get("/v1/models", headers=BEARER)).json()["data"]["models"]}
            assert by_name["acestep-v15-sft"]["is_loaded"] is False and by_name["acestep-v15-turbo"]["is_loaded"]

            r = await client.post("/v1/init", json={"model": "acestep-v15-sft"}, headers=BEARER, timeout=300)
            assert r.status_code == 200, r.text
            assert r.json()["data"]["message"].startswith("loaded acestep-v15-sft:")
            by_name = {m["name"]: m for m in (await client.get("/v1/models", headers=BEARER)).json()["data"]["models"]}
            assert by_name["acestep-v15-sft"]["is_loaded"] and by_name["acestep-v15-turbo"]["is_loaded"]
            again = await client.post("/v1/init", json={"model": "acestep-v15-sft"}, headers=BEARER)
            assert again.json()["data"]["message"] == "acestep-v15-sft is loaded"
    finally:
        server.stop()
