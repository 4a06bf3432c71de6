"""Replay of the ACE-Step DAW (``ace-step/ACE-Step-DAW``, ``src/services/aceStepApi.ts`` with the pipeline in
``src/services/generationPipeline.ts``). The DAW is a browser app that sends no credentials: open mode.

- ``GET /health``; ``GET /v1/model_inventory`` (falls back to ``/v1/models``): ``data.models[]`` with ``name``,
  ``is_default``, ``is_loaded``, ``supported_task_types``; ``default_model``, ``lm_models``, ``loaded_lm_model``,
  ``llm_initialized``; a task is offered when the loaded model lists its type;
- ``POST /v1/init`` ``{"model"}`` → ``data.message``, ``data.loaded_model``;
- ``POST /format_input`` ``{prompt, lyrics, param_obj: JSON string}``; ``POST /create_random_sample``
  ``{sample_type}``; ``GET /v1/stats``;
- ``POST /release_task`` as ``multipart/form-data``: the source blob as ``src_audio`` (``src_audio.wav``), every
  param as ``String(value)`` (booleans ``"true"``/``"false"``, nulls left out, ``""`` for unset strings);
- polls ``POST /query_result`` JSON; progress from ``JSON.parse(result)[0].stage/progress``; on 1 ``file`` (and
  ``metas``, ``seed_value``, ``dit_model``); downloads ``file`` as ``${base}${file}`` when it starts with ``/v1/``;
- "add a track": the next lego task sends ``src_audio_path`` = the ``path`` query parameter of the previous
  result's ``file`` (when it is not an absolute path) and no upload — the server reads its own result.
"""

from __future__ import annotations

import json
from urllib.parse import parse_qs, urlsplit

from tests.orchestrator.clients.support import DescribingDouble, poll_query_result, wav_bytes
from tests.orchestrator.support import make_settings, running_app

JSON_HEADERS = {"Content-Type": "application/json"}


def _lego_form(track: str, **extra: object) -> dict[str, str]:
    """LegoTaskParams as the DAW appends them: ``formData.append(key, String(value))``, nulls skipped."""
    params: dict[str, object] = {
        "task_type": "lego",
        "track_name": track,
        "prompt": f"{track}, tight groove",
        "global_caption": "funk band",
        "lyrics": "",
        "instruction": f"Generate the {track.upper()} track",
        "repainting_start": 0,
        "repainting_end": 10,
        "audio_duration": 10,
        "bpm": None,
        "key_scale": "",
        "time_signature": "",
        "inference_steps": 8,
        "guidance_scale": 7,
        "shift": 3,
        "batch_size": 1,
        "audio_format": "wav",
        "thinking": False,
        "model": "acestep-v15-base",
        "use_random_seed": False,
        "seed": 1234,
        "chunk_mask_mode": "auto",
        "vocal_language": "unknown",
        **extra,
    }
    return {k: ("true" if v is True else "false" if v is False else str(v)) for k, v in params.items() if v is not None}


async def test_inventory_init_and_lm_helpers(tmp_path) -> None:
    double = DescribingDouble()
    async with running_app(make_settings(tmp_path, auth="none"), double) as (_, client):
        assert (await client.get("/health")).status_code == 200
        inventory = (await client.get("/v1/model_inventory")).json()["data"]
        names = [m["name"] for m in inventory["models"]]
        assert names == ["acestep-v15-base", "acestep-v15-sft", "acestep-v15-turbo", "ACE-Step-v1-3.5B"]
        assert inventory["default_model"] == "acestep-v15-turbo"
        by_name = {m["name"]: m for m in inventory["models"]}
        # modelSupportsTaskType('lego'): the base DiT only, as upstream's TASK_TYPES_BASE / TASK_TYPES_TURBO say
        assert "lego" in by_name["acestep-v15-base"]["supported_task_types"]
        assert "lego" not in by_name["acestep-v15-turbo"]["supported_task_types"]
        assert by_name["acestep-v15-sft"]["supported_task_types"] == ["text2music", "cover", "repaint"]
        v1 = next(m for m in inventory["models"] if m["name"] == "ACE-Step-v1-3.5B")
        assert "lego" not in v1["supported_task_types"]
        assert inventory["llm_initialized"] and inventory["loaded_lm_model"] == "lm:1"

        init = (await client.post("/v1/init", content=json.dumps({"model": "acestep-v15-sft"}),
                                  headers=JSON_HEADERS)).json()["data"]
        assert init["message"] == "acestep-v15-sft is loaded" and init["models"]
        bad = await client.post("/v1/init", content=json.dumps({"model": "acestep-v15-xl-sft"}), headers=JSON_HEADERS)
        assert bad.status_code == 422 and "served: base, sft, turbo" in bad.json()["error"]["message"]

        param_obj = json.dumps({"language": "en", "bpm": 120, "duration": 30, "key": "D minor"})
        request = {"prompt": "funk", "lyrics": "[Verse]\nget up", "param_obj": param_obj}
        formatted = (
            await client.post("/format_input", content=json.dumps(request), headers=JSON_HEADERS)
        ).json()["data"]
        assert formatted["bpm"] == 120 and formatted["key_scale"] == "D minor" and formatted["duration"] == 30
        assert formatted["lyrics"] == "[Verse]\nget up" and formatted["time_signature"] == "3"  # the LM's
        sample = (await client.post("/create_random_sample", content=json.dumps({"sample_type": "custom_mode"}),
                                    headers=JSON_HEADERS)).json()["data"]
        assert sample["caption"].startswith("inspired by") and sample["lyrics"] and sample["bpm"] == 90
        stats = (await client.get("/v1/stats")).json()["data"]
        assert stats["jobs"]["total"] == 0
    assert [req["mode"] for m, req in double.calls if m == "lm"] == ["metadata", "inspire"]


async def test_lego_with_upload_then_add_a_track_from_the_result(tmp_path) -> None:
    double = DescribingDouble()
    async with running_app(make_settings(tmp_path, auth="none"), double) as (_, client):
        r = await client.post(
            "/release_task",
            data=_lego_form("drums"),
            files={"src_audio": ("src_audio.wav", wav_bytes(10.0), "audio/wav")},
        )
        assert r.status_code == 200, r.text
        first = r.json()["data"]["task_id"]
        polled = await poll_query_result(client, first)
        assert polled.entry["status"] == 1
        item = polled.items[0]
        # lego needs the base DiT: the served base set ran it
        assert item["dit_model"] == "acestep-v15-base" and item["model"]["requested"] == "acestep-v15-base"
        assert item["model"]["fallback"] is False and item["seed_value"] == "1234"
        file = item["file"]
        assert file.startswith("/v1/")
        audio = await client.get(f"http://tritone.test{file}")  # `${base}${audioPath}`, no headers
        assert audio.status_code == 200 and audio.headers["content-type"] == "audio/wav"

        server_path = parse_qs(urlsplit(file).query)["path"][0]  # extractServerPath
        assert not server_path.startswith("/")
        r = await client.post("/release_task", data=_lego_form("bass", src_audio_path=server_path))
        assert r.status_code == 200, r.text
        second = await poll_query_result(client, r.json()["data"]["task_id"])
        assert second.entry["status"] == 1
        # someone's path outside the results is still refused, naming why
        r = await client.post("/release_task", data=_lego_form("keyboard", src_audio_path="/etc/passwd"))
        assert r.status_code == 422 and r.json()["error"]["field"] == "src_audio_path"
    lego_calls = [req for m, req in double.calls if m == "sampler" and "seeds" in req]
    assert [c["track_name"] for c in lego_calls] == ["drums", "bass"]
    assert all(c["task_type"] == "lego" and c["version_set"] == "base" for c in lego_calls)
