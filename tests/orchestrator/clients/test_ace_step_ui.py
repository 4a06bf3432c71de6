"""Replay of the community web UI's REST client (``fspecii/ace-step-ui``, ``server/src/services/acestep.ts`` as of
its REST era, before the Gradio migration): its Node server calls the ACE-Step API with no credentials, so Tritone
runs in open mode (``TRITONE_AUTH=none``, loopback only).

- health: ``GET /health``, ok when ``data.status == "ok"``;
- submit: ``POST /release_task`` JSON (``prompt``, ``lyrics``, ``batch_size``, ``inference_steps``,
  ``guidance_scale``, ``audio_format``, ``vocal_language``, ``use_random_seed``, ``shift``, ``thinking``,
  ``use_cot_*``, and always ``lm_backend`` (default ``pt``) and ``lm_model_path`` (default
  ``acestep-5Hz-lm-0.6B``)); task id from ``data.task_id``;
- poll: ``POST /query_result`` ``{"task_id_list": [id]}`` every 2 s; while running it shows
  ``JSON.parse(result)[0].progress`` (0–1) and ``.stage``; on 1 ``result[].file`` and ``result[0].metas``; on 2
  ``error`` (or the result) as the failure text;
- download: a ``file`` starting with ``/v1/audio`` is fetched as ``${ACESTEP_API}${file}``, without headers.

Its two LM fields are not silently dropped: upstream's own LM names and backends (the UI's defaults) run on the
served LM and the result says so (``lm_fallback``, ``lm_requested``); ``TRITONE_LM_ALIASES`` can map them to a
given version; a name that is no LM at all is refused with a message naming what is served.
"""

from __future__ import annotations

import json

from tests.orchestrator.clients.support import DescribingDouble, poll_query_result
from tests.orchestrator.support import make_settings, running_app

HEADERS = {"Content-Type": "application/json"}


def _body(**overrides: object) -> dict[str, object]:
    body: dict[str, object] = {
        "prompt": "indie rock, jangly guitars",
        "lyrics": "[Verse]\nwalking home",
        "batch_size": 1,
        "inference_steps": 6,
        "guidance_scale": 10.0,
        "audio_format": "mp3",
        "vocal_language": "en",
        "use_random_seed": True,
        "shift": 3.0,
        "thinking": False,
        "use_cot_caption": False,
        "use_cot_language": False,
        "use_cot_metas": False,
        "lm_backend": "pt",
        "lm_model_path": "acestep-5Hz-lm-0.6B",
        "audio_duration": 10,
    }
    body.update(overrides)
    return body


async def test_generate_progress_and_download_without_credentials(tmp_path) -> None:
    double = DescribingDouble(step_delay=0.02)
    settings = make_settings(
        tmp_path, auth="none", lm_aliases={"acestep-5Hz-lm-0.6B": "lm", "pt": "lm", "vllm": "lm"}
    )
    async with running_app(settings, double) as (_, client):
        health = (await client.get("/health")).json()
        assert health["data"]["status"] == "ok"
        r = await client.post("/release_task", content=json.dumps(_body()), headers=HEADERS)
        assert r.status_code == 200, r.text
        task_id = r.json()["data"]["task_id"]
        polled = await poll_query_result(client, task_id)
        assert polled.entry["status"] == 1
        # what the UI showed while it ran: numeric progress in 0..1 and a stage name
        progress = [item["progress"] for item in polled.seen]
        assert progress and all(isinstance(p, float) and 0 <= p <= 1 for p in progress)
        assert {item["stage"] for item in polled.seen} <= {"queued", "metadata", "audio", "post"}
        audio_paths = [item["file"] for item in polled.items if item.get("file")]
        assert audio_paths and all(p.startswith("/v1/audio") for p in audio_paths)
        audio = await client.get(f"http://tritone.test{audio_paths[0]}")  # no headers at all
        assert audio.status_code == 200 and audio.headers["content-type"] == "audio/mpeg"
        metas = polled.items[0]["metas"]
        assert metas["duration"] == 10 and metas["bpm"] == 90  # the LM filled the bpm it was not given
        assert polled.items[0]["lm_model"] == "lm:1"  # the served LM version that ran
        # the job records what the UI asked for and what ran
        job = (await client.get(f"/v1/jobs/{task_id}")).json()
        assert job["result"]["lm_model"] == "lm:1" and job["result"]["dit_model"] == "acestep-v15-turbo"


async def test_upstream_lm_names_run_on_the_served_lm_and_others_are_refused(tmp_path) -> None:
    async with running_app(make_settings(tmp_path, auth="none"), DescribingDouble()) as (_, client):
        # the UI's defaults, with no alias configured: they run on the served LM, reported as a fallback
        r = await client.post("/release_task", content=json.dumps(_body()), headers=HEADERS)
        assert r.status_code == 200, r.text
        polled = await poll_query_result(client, r.json()["data"]["task_id"])
        assert polled.entry["status"] == 1 and polled.items[0]["lm_model"] == "lm:1"
        job = (await client.get(f"/v1/jobs/{r.json()['data']['task_id']}")).json()
        assert job["result"]["lm_fallback"] is True
        assert job["result"]["lm_requested"] == {"lm_model_path": "acestep-5Hz-lm-0.6B", "lm_backend": "pt"}
        # names that are no LM at all are refused, naming what is served
        r = await client.post(
            "/release_task", content=json.dumps(_body(lm_model_path="my-own-lm")), headers=HEADERS
        )
        assert r.status_code == 422
        error = r.json()["error"]
        assert error["field"] == "lm_model_path" and "served LM: lm, lm:1" in error["message"]
        assert "TRITONE_LM_ALIASES" in error["message"]
        r = await client.post(
            "/release_task", content=json.dumps(_body(lm_model_path=None, lm_backend="tensorrt-llm")), headers=HEADERS
        )
        assert r.status_code == 422 and r.json()["error"]["field"] == "lm_backend"
        ok = await client.post(
            "/release_task", content=json.dumps(_body(lm_model_path="lm:1", lm_backend=None)), headers=HEADERS
        )
        assert ok.status_code == 200, ok.text


async def test_a_failed_task_reads_as_the_ui_reports_it(tmp_path) -> None:
    double = DescribingDouble(fail={"sampler": "sampler: inference_steps must be at most 3 on this server"})
    async with running_app(make_settings(tmp_path, auth="none"), double) as (_, client):
        body = _body(lm_model_path=None, lm_backend=None, bpm=100, key_scale="C major", time_signature="4")
        task_id = (await client.post("/release_task", content=json.dumps(body), headers=HEADERS)).json()["data"][
            "task_id"
        ]
        polled = await poll_query_result(client, task_id)
        assert polled.entry["status"] == 2
        details = polled.entry["error"]  # taskData.error || ... || taskData.result
        assert "inference_steps must be at most 3" in details
        assert polled.items[0]["error"] == details and polled.items[0]["stage"] == "audio"
