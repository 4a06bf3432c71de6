"""The stems job end to end on the session's real tritonserver (tiny repository): ``POST /v1/stems`` with an upload
or a finished item of the caller's, the ``separate`` → ``post`` stages, the zip and per-stem WAVs through the files
route, progress events and webhooks; and every bad input answered 4xx naming the field.

What the tiny separator guarantees (random weights, so no stem is music): every stem is 48 kHz stereo of the
input's length; the 2-stem set is the 4-stem set regrouped (instrumental = drums + bass + other, to float
rounding); the 4 stems' sum differs from the input by the model's own residual, which with random weights is about
the size of the input itself (measured and printed; tests/model_repository/stems/test_served.py checks that the
served residual equals ``apply_model``'s).
"""

from __future__ import annotations

import io
import json
import zipfile
from typing import Any

import httpx
import numpy as np
import pytest
import soundfile as sf

from orchestrator import store
from orchestrator.db import make_engine, make_sessionmaker
from orchestrator.errors import ApiError
from orchestrator.services.jobs.stems import check_stem_set
from tests.model_repository.stems.support import song
from tests.orchestrator.support import login, make_settings, running_app, wait_for
from tests.orchestrator.test_webhooks import Receiver

RATE = 48_000


def _wav(audio: np.ndarray, rate: int = RATE, subtype: str = "FLOAT") -> bytes:
    buffer = io.BytesIO()
    sf.write(buffer, audio.T, rate, format="WAV", subtype=subtype)
    return buffer.getvalue()


async def _submit(client: httpx.AsyncClient, headers: dict[str, str], *, data: bytes | None = None,
                  **fields: Any) -> httpx.Response:
    form = {k: str(v) for k, v in fields.items()}
    if data is None:
        return await client.post("/v1/stems", headers=headers, json=fields)
    return await client.post("/v1/stems", headers=headers, data=form, files={"file": ("song.wav", data)})


async def _finished(client: httpx.AsyncClient, headers: dict[str, str], job_id: str) -> dict[str, Any]:
    async def probe() -> dict[str, Any] | None:
        body = (await client.get(f"/v1/jobs/{job_id}", headers=headers)).json()
        return body if body["status"] in ("succeeded", "failed", "cancelled") else None

    job: dict[str, Any] = await wait_for(probe, timeout=240, interval=0.2, what=f"stems job {job_id}")
    assert job["status"] == "succeeded", job
    return job


async def _stems(client: httpx.AsyncClient, headers: dict[str, str], job: dict[str, Any]) -> dict[str, np.ndarray]:
    """Each stem as downloaded on its own, checked against its copy in the zip."""
    result = job["result"]
    archive = zipfile.ZipFile(io.BytesIO((await client.get(result["zip_url"])).content))
    assert archive.namelist() == [item["file"] for item in result["items"]]
    stems = {}
    for item in result["items"]:
        own = await client.get(item["url"])
        assert own.status_code == 200 and own.headers["content-type"] == "audio/wav"
        assert own.content == archive.read(item["file"])
        wave, rate = sf.read(io.BytesIO(own.content), dtype="float32", always_2d=True)
        assert rate == RATE and sf.info(io.BytesIO(own.content)).subtype == "FLOAT"
        stems[item["name"]] = wave.T
    return stems


@pytest.mark.triton
async def test_upload_and_item_stems_on_real_triton(triton, tmp_path) -> None:
    settings = make_settings(tmp_path, triton_urls=[triton.grpc_url], allow_private_callbacks=True)
    audio = song(2.5, rate=RATE, seed=3)
    with Receiver() as receiver:
        async with running_app(settings) as (_, client):
            headers = await login(client)
            r = await _submit(client, headers, data=_wav(audio), stems=2, callback_url=receiver.url)
            assert r.status_code == 202, r.text
            two_id = r.json()["job_id"]
            four_id = (await _submit(client, headers, data=_wav(audio), stems=4)).json()["job_id"]
            six_id = (await _submit(client, headers, data=_wav(audio), stems=6)).json()["job_id"]  # stems_6s
            two, four = await _finished(client, headers, two_id), await _finished(client, headers, four_id)
            six = await _stems(client, headers, await _finished(client, headers, six_id))
            assert list(six) == ["drums", "bass", "other", "vocals", "guitar", "piano"]
            assert all(wave.shape == audio.shape and np.isfinite(wave).all() for wave in six.values())

            assert two["kind"] == "stems" and two["result"]["source"]["kind"] == "upload"
            # The upload became a clip, and each stem a clip of it (action stems).
            upload_clip = two["result"]["source"]["clip_id"]
            parent = (await client.get(f"/v1/clips/{upload_clip}", headers=headers)).json()
            assert parent["action"] == "upload" and parent["origin"] == "upload"
            for stem in two["result"]["items"]:
                clip = (await client.get(f"/v1/clips/{stem['clip_id']}", headers=headers)).json()
                assert (clip["action"], clip["parent_id"], clip["job_id"]) == ("stems", upload_clip, two_id)
            got2, got4 = await _stems(client, headers, two), await _stems(client, headers, four)
            assert list(got2) == ["vocals", "instrumental"] and list(got4) == ["drums", "bass", "other", "vocals"]
            assert all(wave.shape == audio.shape for wave in (*got2.values(), *got4.values()))
            scale = float(np.abs(audio).max())
            regrouped = got4["drums"] + got4["bass"] + got4["other"]
            assert float(np.abs(got2["vocals"] - got4["vocals"]).max()) / scale <= 1e-5
            assert float(np.abs(got2["instrumental"] - regrouped).max()) / scale <= 1e-5
            residual = float(np.abs(sum(got4.values()) - audio).max()) / scale
            print(f"tiny separator: max|sum(4 stems) - input| / max|input| = {residual:.3f}")
            assert 0 < residual < 10  # random weights: no sum-back; only a finite, bounded answer is guaranteed

            # A finished item of the caller's own (here: the 2-stem job's vocals) is a source too; bob's is not his.
            r = await _submit(client, headers, job_id=two_id, item=0, stems=2)
            assert r.status_code == 202, r.text
            again = await _finished(client, headers, r.json()["job_id"])
            vocals_clip = two["result"]["items"][0]["clip_id"]
            assert again["result"]["source"] == {
                "kind": "item", "job_id": two_id, "item": 0, "filename": None, "clip_id": vocals_clip}
            assert (await _stems(client, headers, again))["vocals"].shape == audio.shape
            bob = await login(client, "bob")
            r = await _submit(client, bob, job_id=two_id, item=0, stems=2)
            assert r.status_code == 404 and r.json()["error"]["field"] == "job_id"
            assert (await client.get(f"/v1/jobs/{two_id}", headers=bob)).status_code == 404
            r = await _submit(client, headers, job_id=two_id, item=5)
            assert r.status_code == 422 and r.json()["error"]["field"] == "item"

        async def final_seen() -> bool:
            return any(json.loads(b).get("event") == "done" for _, b in receiver.deliveries)

        await wait_for(final_seen, timeout=20, what="the done webhook")
    events = [json.loads(b) for _, b in receiver.deliveries]
    assert [e.get("stage") for e in events if e.get("event") == "stage"] == ["separate", "post"]
    final = next(e for e in events if e.get("event") == "done")["result"]  # the stems as GET /v1/jobs shows them
    assert final["zip_url"].startswith(f"/v1/files/{two_id}/stems.zip?")
    assert [s["name"] for s in final["items"]] == ["vocals", "instrumental"] and final["kind"] == "stems"
    engine = make_engine(settings.resolved_database_url)
    async with make_sessionmaker(engine)() as session:
        job = await store.get_job(session=session, public_id=four_id)
        assert job is not None
        logged = await store.list_events(session=session, job_id=job.id)
    await engine.dispose()
    progress = [e.data for e in logged if e.kind == "progress"]
    assert progress and progress[-1]["stage"] == "separate" and progress[-1]["step"] == progress[-1]["total"] > 0


@pytest.mark.triton
async def test_bad_stems_input_names_the_field(triton, tmp_path) -> None:
    settings = make_settings(tmp_path, triton_urls=[triton.grpc_url])
    async with running_app(settings) as (_, client):
        headers = await login(client)
        audio = song(1.0, rate=RATE)
        long_file = _wav(np.zeros((1, 601 * 8000), np.float32) + 0.1, rate=8000, subtype="PCM_U8")
        cases = [
            (_submit(client, headers, data=b"not audio at all", stems=2), 422, "file", "format"),
            (_submit(client, headers, data=long_file, stems=2), 422, "file", "600 s"),
            (_submit(client, headers, data=_wav(np.zeros_like(audio)), stems=2), 422, "file", "silent"),
            (_submit(client, headers, data=_wav(audio), stems=3), 422, "stems", "2, 4, 6"),
            (_submit(client, headers, data=_wav(audio), method="spleeter"), 422, "method", "demucs"),
            (_submit(client, headers, stems=2), 422, "file", "upload"),
            (_submit(client, headers, data=_wav(audio), job_id="0" * 36), 422, "file", "not both"),
            (_submit(client, headers, job_id="00000000-0000-0000-0000-000000000000"), 404, "job_id", "no such job"),
            (_submit(client, headers, item=1), 422, "item", "job_id"),
        ]
        for call, status, field, words in cases:
            r = await call
            assert r.status_code == status, (field, r.text)
            error = r.json()["error"]
            assert error["field"] == field and words in error["message"], error
        r = await client.post("/v1/stems", headers=headers, files={"audio": ("x.wav", _wav(audio))})
        assert r.status_code == 422 and r.json()["error"]["field"] == "audio"


def test_six_stems_need_a_six_source_model() -> None:
    check_stem_set(6, (2, 4, 6))
    check_stem_set(6, None)  # Triton's index unknown: the job itself will say
    with pytest.raises(ApiError) as caught:
        check_stem_set(6, (2, 4))
    assert caught.value.status == 422 and caught.value.field == "stems"
    assert "allowed: 2, 4" in caught.value.message and "htdemucs_6s" in caught.value.message


@pytest.mark.triton
async def test_six_stems_refused_where_only_a_four_source_model_is_served(tiny_repository, tmp_path) -> None:
    """A tritonserver with ``separator`` + ``stems`` only (~10 s): the offered sets come from its repository index."""
    from model_repository.launcher.server import TritonServer

    with TritonServer(tiny_repository, load_models=["separator", "stems"], log_path=tmp_path / "triton.log") as server:
        async with running_app(make_settings(tmp_path, triton_urls=[server.grpc_url])) as (_, client):
            headers = await login(client)
            audio = song(1.0, rate=RATE, seed=9)
            r = await _submit(client, headers, data=_wav(audio), stems=6)
            assert r.status_code == 422, r.text
            error = r.json()["error"]
            assert error["field"] == "stems" and "allowed: 2, 4" in error["message"]
            assert "htdemucs_6s" in error["message"]
            r = await _submit(client, headers, data=_wav(audio), stems=4)
            assert r.status_code == 202, r.text
            job = await _finished(client, headers, r.json()["job_id"])
            assert [item["name"] for item in job["result"]["items"]] == ["drums", "bass", "other", "vocals"]
