"""Replay of the official agent skill script (``ace-step/ace-step-skills``, ``skills/acestep/scripts/acestep.sh``,
curl + jq), against a real orchestrator with the stage-runner double.

What the script does, call by call:

- every call sends the configured API key as ``Authorization: Bearer <key>`` (upstream's convention);
- ``health``: ``GET /health`` (status 200 is all it checks); ``models``: ``GET /v1/models``;
- ``generate`` (native mode): ``POST /release_task`` with ``Content-Type: application/json; charset=utf-8`` and a
  jq-built body (``prompt``, ``lyrics``, ``sample_query``, ``thinking``, ``use_format``, ``use_cot_caption``,
  ``use_cot_language``, ``vocal_language``, ``audio_format``, ``use_random_seed`` and the optional flags); reads
  ``.data.task_id // .task_id``;
- polls ``POST /query_result`` ``{"task_id_list": [id]}`` every 5 s: ``.data[0].status`` (0/1/2), then
  ``.data[0].result`` (a JSON string): ``.[].file``, ``.[0].metas.bpm|keyscale|duration``;
- downloads each file as ``${api_url}${file}`` with the Bearer header;
- ``random``: ``POST /release_task`` ``{"sample_mode": true, "thinking": true}``;
- completion mode: ``GET /v1/models`` → ``.data[0].id`` (our ``data`` is an object, so jq yields nothing and the
  script sends an empty model), then ``POST /v1/chat/completions`` (``stream: false``, tagged content,
  ``audio_config``) and decodes ``.choices[0].message.audio[i].audio_url.url`` (``data:audio/mpeg;base64,…``).
"""

from __future__ import annotations

import base64
import io
import json

import soundfile as sf

from tests.orchestrator.clients.support import DescribingDouble, poll_query_result
from tests.orchestrator.support import API_KEYS, make_settings, running_app

KEY = next(iter(API_KEYS))
BEARER = {"Authorization": f"Bearer {KEY}"}
JSON_UTF8 = {"Content-Type": "application/json; charset=utf-8", **BEARER}


def _generate_payload(**optional: object) -> bytes:
    """cmd_generate's jq body (defaults: thinking, use_format, CoT on; mp3), plus the optional flags it adds."""
    payload = {
        "prompt": "upbeat pop with bright synths",
        "lyrics": "[Verse]\nhello skies",
        "sample_query": "",
        "thinking": True,
        "use_format": True,
        "use_cot_caption": True,
        "use_cot_language": True,
        "vocal_language": "en",
        "audio_format": "mp3",
        "use_random_seed": True,
        **optional,
    }
    return json.dumps(payload).encode()


async def test_native_generate_poll_download(tmp_path) -> None:
    double = DescribingDouble()
    async with running_app(make_settings(tmp_path), double) as (_, client):
        assert (await client.get("/health")).status_code == 200
        models = (await client.get("/v1/models", headers=BEARER)).json()
        assert models["data"]["default_model"] in {m["name"] for m in models["data"]["models"]}

        body = _generate_payload(model="acestep-v15-turbo", inference_steps=4, seed=42, use_random_seed=False,
                                 audio_duration=12, bpm=96, batch_size=2, key_scale="C major", time_signature="4")
        r = await client.post("/release_task", content=body, headers=JSON_UTF8)
        assert r.status_code == 200, r.text
        task_id = r.json()["data"]["task_id"]  # jq: .data.task_id // .task_id

        polled = await poll_query_result(client, task_id, headers=BEARER)
        assert polled.entry["status"] == 1
        first = polled.items[0]
        assert (first["metas"]["bpm"], first["metas"]["keyscale"], first["metas"]["duration"]) == (96, "C major", 12)
        assert first["dit_model"] == "acestep-v15-turbo" and first["lm_model"] == "lm"
        files = [item["file"] for item in polled.items]  # jq: .[].file
        assert len(files) == 2
        for path in files:
            audio = await client.get(f"http://tritone.test{path}", headers=BEARER)  # ${api_url}${audio_path}
            assert audio.status_code == 200 and audio.headers["content-type"] == "audio/mpeg"
            wave, rate = sf.read(io.BytesIO(audio.content))
            assert rate == 48000 and abs(len(wave) / rate - 12) < 0.2
    sampler = [req for m, req in double.calls if m == "sampler" and "seeds" in req][-1]
    assert sampler["seeds"] == [42, 43] and sampler["version_set"] == "turbo" and sampler["audio_codes"]


async def test_random_command_and_a_bad_key(tmp_path) -> None:
    double = DescribingDouble()
    async with running_app(make_settings(tmp_path), double) as (_, client):
        r = await client.post("/release_task", content=b'{"sample_mode": true, "thinking": true}', headers=JSON_UTF8)
        task_id = r.json()["data"]["task_id"]
        polled = await poll_query_result(client, task_id, headers=BEARER)
        assert polled.entry["status"] == 1 and polled.items[0]["prompt"].startswith("inspired by")
        bad = await client.post(
            "/release_task", content=_generate_payload(), headers={**JSON_UTF8, "Authorization": "Bearer nope"}
        )
        assert bad.status_code == 401 and "API key" in bad.json()["error"]["message"]
    assert [req["mode"] for m, req in double.calls if m == "lm"][0] == "inspire"


async def test_completion_mode(tmp_path) -> None:
    double = DescribingDouble()
    async with running_app(make_settings(tmp_path), double) as (_, client):
        listing = (await client.get("/v1/models", headers=BEARER)).json()
        model_id = listing["data"][0]["id"] if isinstance(listing["data"], list) else ""  # jq error -> empty
        payload = {
            "model": model_id,
            "messages": [{"role": "user", "content": "<prompt>dreamy lofi</prompt><lyrics>[Verse]\nla la</lyrics>"}],
            "stream": False,
            "thinking": False,
            "use_format": True,
            "sample_mode": False,
            "use_cot_caption": True,
            "use_cot_language": True,
            "audio_config": {"format": "mp3", "vocal_language": "en", "duration": 10, "bpm": 80},
            "guidance_scale": 7.0,
            "seed": 5,
            "batch_size": 1,
        }
        r = await client.post("/v1/chat/completions", content=json.dumps(payload), headers=JSON_UTF8)
        assert r.status_code == 200, r.text
        answer = r.json()
        assert answer["id"].startswith("chatcmpl-") and answer["choices"][0]["finish_reason"] == "stop"
        message = answer["choices"][0]["message"]
        assert "## Metadata" in message["content"] and "**BPM:** 80" in message["content"]
        assert len(message["audio"]) == 1
        url = message["audio"][0]["audio_url"]["url"]
        assert url.startswith("data:audio/mpeg;base64,")
        wave, rate = sf.read(io.BytesIO(base64.b64decode(url.split(",", 1)[1])))
        assert rate == 48000 and abs(len(wave) / rate - 10) < 0.2
    sampler = [req for m, req in double.calls if m == "sampler" and "seeds" in req][-1]
    assert sampler["caption"] == "dreamy lofi" and sampler["lyrics"] == "[Verse]\nla la" and sampler["seeds"] == [5]
