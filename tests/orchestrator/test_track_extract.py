"""ACE-Step's track extraction on the ACE-Step API (issue 11 item 4): ``task_type: "extract"`` with ``track_names``
makes one job whose items are the classes, each file named by its class; a set whose DiT cannot run the track tasks
(turbo, SFT) is refused before any work, naming ``task_type``, the variant needed and the model that has it."""

from __future__ import annotations

import io

import numpy as np
import pytest
import soundfile as sf

from tests.orchestrator.doubles import StageRunnerDouble
from tests.orchestrator.support import login, make_settings, running_app, wait_job


def _wav(seconds: float = 10.0) -> bytes:
    rng = np.random.default_rng(5)
    buffer = io.BytesIO()
    sf.write(buffer, 0.1 * rng.standard_normal((int(48_000 * seconds), 2)), 48_000, format="WAV", subtype="PCM_16")
    return buffer.getvalue()


async def _post(client, headers, form: dict[str, str]):
    return await client.post(
        "/v1/music/generate", headers=headers, data=form, files={"src_audio": ("song.wav", _wav(), "audio/wav")}
    )


@pytest.mark.parametrize(
    ("form", "field", "text"),
    [
        ({"task_type": "lego", "track_names": "drums,bass"}, "track_names", "applies to task_type 'extract' only"),
        ({"task_type": "extract", "track_names": "drums,cowbell"}, "track_names", "drums"),
        ({"task_type": "extract", "track_names": "bass,bass"}, "track_names", "names a class twice"),
        ({"task_type": "extract", "track_names": "bass", "track_name": "bass"}, "track_names", "not both"),
        ({"task_type": "extract", "track_names": "bass,fx", "batch_size": "3"}, "batch_size", "must be 2"),
    ],
)
async def test_bad_track_requests_name_the_field(tmp_path, form, field, text) -> None:
    async with running_app(make_settings(tmp_path), StageRunnerDouble()) as (_, client):
        headers = await login(client)
        r = await _post(client, headers, form)
        assert r.status_code == 422, r.text
        error = r.json()["error"]
        assert error.get("field") == field and text in error["message"], error


@pytest.mark.triton
async def test_several_classes_make_one_job_with_a_file_per_class_and_turbo_is_refused(triton, tmp_path) -> None:
    settings = make_settings(tmp_path, triton_urls=[triton.grpc_url])
    async with running_app(settings) as (_, client):
        headers = await login(client)
        tracks = ["vocals", "drums", "bass"]
        r = await _post(client, headers, {"task_type": "extract", "track_names": ",".join(tracks),
                                          "model": "acestep-v15-base", "inference_steps": "2", "audio_format": "wav"})
        assert r.status_code == 200, r.text
        job = await wait_job(client, headers, r.json()["job_id"], what="the extract job")
        assert job["status"] == "succeeded", job
        result = job["result"]
        assert result["track_names"] == tracks and result["dit_model"] == "acestep-v15-base"
        assert [p.split("%2F")[-1].split("&")[0] for p in result["audio_paths"]] == [f"{t}.wav" for t in tracks]
        assert len(set(result["seed_value"].split(","))) == 1  # the classes share one seed

        for form in ({}, {"model": "acestep15:sft"}):
            refused = await _post(client, headers, {"task_type": "extract", "track_names": "drums", **form})
            assert refused.status_code == 422, refused.text
            error = refused.json()["error"]
            assert error["field"] == "task_type"
            assert "extract needs a base checkpoint (version set 'base')" in error["message"]
            assert "set model to 'acestep-v15-base'" in error["message"]
