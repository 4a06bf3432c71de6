"""The clip library's routes (``/v1/clips``): pages newest first by cursor (SQLite and PostgreSQL), the owner rule
(another user's id is a 404 on every route), uploads probed before decode, signed file links, deletion removing
files, the quota — with the in-process stage runner."""

from __future__ import annotations

import io

import numpy as np
import pytest
import soundfile as sf

from orchestrator.schemas.acestep import MusicGenerateCreate
from orchestrator.services import clips
from tests.orchestrator.doubles import LATENT_SHAPE, StageRunnerDouble
from tests.orchestrator.support import login, make_settings, running_app, wait_for


def wav_bytes(seconds: float = 2.0, rate: int = 44100, freq: float = 330.0) -> bytes:
    t = np.arange(int(seconds * rate)) / rate
    buffer = io.BytesIO()
    sf.write(buffer, (0.3 * np.sin(2 * np.pi * freq * t)).astype(np.float32), rate, format="WAV", subtype="PCM_16")
    return buffer.getvalue()


async def generated_job(client, headers, **fields) -> dict:
    body = {"caption": "library", "inference_steps": 1, "thinking": False, "duration": 10, **fields}
    body = {k: v for k, v in body.items() if v is not None}  # duration=None: the source's length
    r = await client.post("/v1/music/generate", json=body, headers=headers)
    assert r.status_code == 200, r.text
    job_id = r.json()["job_id"]

    async def probe():
        got = (await client.get(f"/v1/jobs/{job_id}", headers=headers)).json()
        return got if got["status"] in ("succeeded", "failed") else None

    done = await wait_for(probe, what=f"job {job_id}")
    assert done["status"] == "succeeded", done
    return done


async def _succeeded(client, headers, job_id: str) -> bool:
    return (await client.get(f"/v1/jobs/{job_id}", headers=headers)).json()["status"] == "succeeded"


async def upload(client, headers, data: bytes, **form) -> dict:
    r = await client.post("/v1/clips", files={"file": ("take.wav", data, "audio/wav")}, data=form, headers=headers)
    assert r.status_code == 201, r.text
    return r.json()


async def test_pages_owner_rule_files_and_delete(tmp_path, db_url) -> None:
    settings = make_settings(tmp_path, db_url)
    async with running_app(settings, StageRunnerDouble()) as (_app, client):
        alice, bob = await login(client, "alice"), await login(client, "bob")
        job = await generated_job(client, alice, batch_size=3, audio_format="flac")
        first = await upload(client, alice, wav_bytes(), title="take one", caption="lo-fi")
        second = await upload(client, alice, wav_bytes(freq=440.0), title="take two")
        assert first["origin"] == "upload" and first["action"] == "upload" and first["title"] == "take one"
        assert first["duration"] == 2.0 and first["audio_format"] == "wav" and not first["has_latents"]

        # newest first, two per page, by cursor, to the end
        seen, cursor = [], None
        while True:
            params = {"limit": 2} | ({"cursor": cursor} if cursor else {})
            page = (await client.get("/v1/clips", params=params, headers=alice)).json()
            assert page["total"] == 5 and len(page["items"]) <= 2
            seen += page["items"]
            cursor = page["next_cursor"]
            if cursor is None:
                break
        assert [c["id"] for c in seen[:2]] == [second["id"], first["id"]]
        generated = seen[2:]
        assert sorted(c["item_index"] for c in generated) == [0, 1, 2]
        assert [c["item_index"] for c in generated] == [2, 1, 0]  # registered in item order: newest is the last
        assert all(c["job_id"] == job["job_id"] and c["action"] == "generate" and c["has_latents"] for c in generated)
        bad = await client.get("/v1/clips", params={"cursor": "nonsense"}, headers=alice)
        assert bad.status_code == 422 and bad.json()["error"]["field"] == "cursor"

        # another user sees none of them: list, get, delete, files
        assert (await client.get("/v1/clips", headers=bob)).json()["total"] == 0
        clip_id = generated[0]["id"]
        for method in ("GET", "DELETE"):
            r = await client.request(method, f"/v1/clips/{clip_id}", headers=bob)
            assert r.status_code == 404 and r.json()["error"]["field"] == "clip_id", r.text
        assert (await client.get(f"/v1/clips/{clip_id}/files/audio.flac", headers=bob)).status_code == 404
        assert (await client.get("/v1/clips/not-an-id", headers=alice)).status_code == 404

        # the signed links work without a header; a tampered one does not
        got = (await client.get(f"/v1/clips/{clip_id}", headers=alice)).json()
        audio = await client.get(got["audio_url"])
        assert audio.status_code == 200 and audio.headers["content-type"] == "audio/flac"
        assert sf.info(io.BytesIO(audio.content)).samplerate == 48_000
        assert got["source_url"] == got["audio_url"]  # flac is lossless: the served file is the source
        assert (await client.get(got["audio_url"].replace("sig=", "sig=x"))).status_code == 403
        assert (await client.get(f"/v1/clips/{clip_id}/files/latents.npy", headers=alice)).status_code == 404

        # delete: row and files (the clip's folder and the job's copy of the item)
        folder = clips.clip_dir(settings, clip_id)
        job_file = settings.data_dir / "jobs" / job["job_id"] / f"item_{got['item_index']}.flac"
        assert folder.is_dir() and job_file.is_file()
        r = await client.delete(f"/v1/clips/{clip_id}", headers=alice)
        assert r.status_code == 200 and r.json()["deleted"] and r.json()["files_removed"] >= 3, r.text
        assert not folder.exists() and not job_file.exists()
        assert (await client.get(f"/v1/clips/{clip_id}", headers=alice)).status_code == 404
        assert (await client.delete(f"/v1/clips/{clip_id}", headers=alice)).status_code == 404
        assert (await client.get("/v1/clips", headers=alice)).json()["total"] == 4


async def test_upload_is_probed_before_decode_and_counts_toward_the_quota(tmp_path) -> None:
    settings = make_settings(tmp_path, user_storage_max_bytes=150_000)
    async with running_app(settings, StageRunnerDouble()) as (_app, client):
        alice = await login(client, "alice")
        r = await client.post("/v1/clips", files={"file": ("x.wav", b"RIFF not audio", "audio/wav")}, headers=alice)
        assert r.status_code == 422 and r.json()["error"]["field"] == "file", r.text
        r = await client.post("/v1/clips", data={"title": "no file"}, headers=alice)
        assert r.status_code == 422 and r.json()["error"]["field"] == "file", r.text
        one = await upload(client, alice, wav_bytes(seconds=1.0))  # ~88 KB sent + its 48 kHz source.flac
        assert one["size_bytes"] > 100_000
        r = await client.post("/v1/clips", files={"file": ("y.wav", wav_bytes(seconds=1.0), "audio/wav")},
                              headers=alice)
        assert r.status_code == 429 and "clip files" in r.json()["error"]["message"], r.text


async def test_clip_ids_as_inputs_set_the_lineage_and_another_users_id_is_404(tmp_path) -> None:
    double = StageRunnerDouble()
    async with running_app(make_settings(tmp_path), double) as (_app, client):
        alice, bob = await login(client, "alice"), await login(client, "bob")
        source = await generated_job(client, alice, duration=12, audio_format="mp3")
        (clip,) = (await client.get("/v1/clips", headers=alice)).json()["items"]
        ref = await upload(client, alice, wav_bytes(seconds=3.0))

        child_job = await generated_job(
            client, alice, task_type="repaint", src_audio_id=clip["id"], reference_audio_id=ref["id"],
            repainting_start=2.0, repainting_end=4.0, duration=None,
        )
        sampler = [req for model, req in double.calls if model == "sampler"][-1]
        assert sampler["task_type"] == "repaint" and sampler["duration"] == 12.0  # the source's length
        page = (await client.get("/v1/clips", headers=alice)).json()["items"]
        child = next(c for c in page if c["job_id"] == child_job["job_id"])
        assert child_job["result"]["clip_ids"] == [child["id"]]  # the ACE-Step API names the item's clip
        # the source clip's latents went to the sampler as src_latents (the double made them: seed % 997 everywhere)
        sent = np.load(tmp_path / "jobs" / child_job["job_id"] / "src_latents.npy")
        assert sent.shape == LATENT_SHAPE and np.all(sent == clip["seed"] % 997)
        assert child["parent_id"] == clip["id"] and child["action"] == "repaint"

        # a result path the API handed out still works as src_audio_path, and is traced to its clip
        path = f"{source['job_id']}/item_0.mp3"
        cover_job = await generated_job(client, alice, task_type="cover", src_audio_path=path)
        page = (await client.get("/v1/clips", headers=alice)).json()["items"]
        cover = next(c for c in page if c["job_id"] == cover_job["job_id"])
        assert cover["parent_id"] == clip["id"] and cover["action"] == "cover"

        # an uploaded source becomes a clip of its own, and the parent of what is made from it
        sent = {"src_audio": ("s.wav", wav_bytes(), "audio/wav")}
        r = await client.post("/v1/music/generate", headers=alice, files=sent,
                              data={"task_type": "cover", "inference_steps": "1", "thinking": "false"})
        assert r.status_code == 200, r.text
        await wait_for(lambda: _succeeded(client, alice, r.json()["job_id"]), what="the upload cover")
        page = (await client.get("/v1/clips", params={"limit": 2}, headers=alice)).json()["items"]
        assert page[0]["action"] == "cover" and page[1]["origin"] == "upload" and page[1]["duration"] == 2.0
        assert page[0]["parent_id"] == page[1]["id"]

        body = {"caption": "x", "inference_steps": 1, "thinking": False}
        for field, task in (("src_audio_id", "cover"), ("reference_audio_id", "text2music")):
            r = await client.post("/v1/music/generate", json=body | {field: clip["id"], "task_type": task},
                                  headers=bob)
            assert r.status_code == 404 and r.json()["error"]["field"] == field, r.text
        both = {"src_audio_id": clip["id"], "src_audio_path": path, "task_type": "cover"}
        r = await client.post("/v1/music/generate", json=body | both, headers=alice)
        assert r.status_code == 422 and r.json()["error"]["field"] == "src_audio_id", r.text


async def test_an_edit_submission_names_its_parent_and_its_working_audio_makes_no_upload_clip(tmp_path) -> None:
    async with running_app(make_settings(tmp_path), StageRunnerDouble()) as (app, client):
        alice = await login(client, "alice")
        await generated_job(client, alice)
        (source,) = (await client.get("/v1/clips", headers=alice)).json()["items"]
        body = MusicGenerateCreate.model_validate({"task_type": "repaint", "inference_steps": 1, "thinking": False})
        job = await app.state.ctx.jobs.submit_music(
            owner="alice", body=body, uploads={"src_audio": wav_bytes(seconds=10.0)},
            extra_params={"parent_clip_id": source["id"], "clip_action": "replace_section",
                          "src_latents_clip": source["id"]},
        )
        await wait_for(lambda: _succeeded(client, alice, job.public_id), what="the edit")
        page = (await client.get("/v1/clips", headers=alice)).json()
        assert page["total"] == 2 and {c["origin"] for c in page["items"]} == {"job"}  # no upload clip
        edit = page["items"][0]
        assert edit["parent_id"] == source["id"] and edit["action"] == "replace_section"
        sent = np.load(tmp_path / "jobs" / job.public_id / "src_latents.npy")  # the latents the edit named
        assert np.all(sent == source["seed"] % 997)
        with pytest.raises(clips.ClipNotFoundError):  # another user's clip as src_latents_clip
            await app.state.ctx.jobs.submit_music(
                owner="bob", body=body, uploads={"src_audio": wav_bytes(seconds=10.0)},
                extra_params={"parent_clip_id": source["id"], "src_latents_clip": source["id"]},
            )
