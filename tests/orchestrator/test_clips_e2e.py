"""Clips end to end on the real tiny stack (a tritonserver): a song's items become clips with their metadata, cover and
the latents the VAE decoded; a clip id as ``src_audio_id`` drives a repaint whose clip names its parent, and as
``clip_id`` a stems job whose stems are clips of it; the repaint starts from the clip's latents (no re-encode)."""

from __future__ import annotations

import numpy as np
import pytest

from orchestrator.services import clips
from tests.model_repository.streaming import batch_counts
from tests.orchestrator.support import login, make_settings, running_app, wait_job, wait_song


@pytest.mark.triton
async def test_song_items_become_clips_and_a_clip_id_drives_a_repaint(triton, tmp_path) -> None:
    settings = make_settings(tmp_path, triton_urls=[triton.grpc_url])
    async with running_app(settings) as (app, client):
        alice, bob = await login(client, "alice"), await login(client, "bob")
        r = await client.post(
            "/v1/song/create",
            json={"theme": "harbour lights", "vocal_mode": "instrumental_quick", "duration": 10, "inference_steps": 2,
                  "batch_size": 2, "seed": 7, "audio_format": "mp3"},
            headers=alice,
        )
        assert r.status_code == 200, r.text
        song = await wait_song(client, alice, r.json()["data"]["intent_id"], ("succeeded", "failed"), timeout=300)
        assert song["status"] == "succeeded", song

        page = (await client.get("/v1/clips", headers=alice)).json()
        assert page["total"] == 2
        made = sorted(page["items"], key=lambda c: c["item_index"])
        assert [c["seed"] for c in made] == [7, 8] and {c["action"] for c in made} == {"generate"}
        assert all(c["parent_id"] is None and c["job_id"] == song["intent_id"] for c in made)
        first = made[0]
        assert [item["clip_id"] for item in song["items"]] == [c["id"] for c in made]  # the song API names them
        assert first["title"] == song["metadata"]["title"] and first["bpm"] == song["metadata"]["bpm"]
        assert first["model"] and first["family"] == "acestep15" and first["cover_url"]
        assert first["duration"] == pytest.approx(10.0, abs=0.05)
        # the latents the VAE decoded: [T, C] at the family's 25 frames per second, distinct per item
        assert first["has_latents"] and first["latent_shape"][0] == 250
        rows = [await clips.get_clip(app.state.ctx.sessions, owner="alice", clip_id=c["id"]) for c in made]
        latents = [clips.load_latents(settings, row) for row in rows]
        assert all(x is not None and np.isfinite(x).all() and np.abs(x).max() > 0 for x in latents)
        assert latents[0] is not None and latents[1] is not None and not np.allclose(latents[0], latents[1])
        assert (await client.get(first["cover_url"])).headers["content-type"] == "image/png"

        body = {"caption": "harbour lights, brighter", "task_type": "repaint", "src_audio_id": first["id"],
                "repainting_start": 3.0, "repainting_end": 6.0, "inference_steps": 2, "thinking": False,
                "audio_format": "flac"}
        assert (await client.post("/v1/music/generate", json=body, headers=bob)).status_code == 404
        encodes = batch_counts(triton, "vae_encoder")
        r = await client.post("/v1/music/generate", json=body, headers=alice)
        assert r.status_code == 200, r.text
        job_id = r.json()["job_id"]

        job = await wait_job(client, alice, job_id, timeout=300, what="the repaint")
        assert job["status"] == "succeeded", job
        newest = (await client.get("/v1/clips", params={"limit": 1}, headers=alice)).json()["items"][0]
        assert newest["job_id"] == job_id and newest["parent_id"] == first["id"] and newest["action"] == "repaint"
        assert newest["duration"] == pytest.approx(10.0, abs=0.05)  # the source's length
        assert newest["has_latents"] and newest["source_url"] == newest["audio_url"]  # flac: its own source
        assert batch_counts(triton, "vae_encoder") == encodes  # the repaint started from the clip's latents

        # the stems of a clip: each stem is a clip whose parent is the source
        r = await client.post("/v1/stems", json={"clip_id": newest["id"], "stems": 2}, headers=alice)
        assert r.status_code == 202, r.text
        stems_id = r.json()["job_id"]
        stems = await wait_job(client, alice, stems_id, timeout=300, what="the stems")
        assert stems["status"] == "succeeded", stems
        assert stems["result"]["source"]["kind"] == "clip" and stems["result"]["source"]["clip_id"] == newest["id"]
        page = (await client.get("/v1/clips", params={"limit": 2}, headers=alice)).json()["items"]
        assert {c["action"] for c in page} == {"stems"} and {c["parent_id"] for c in page} == {newest["id"]}
        assert {c["job_id"] for c in page} == {stems_id}
        r = await client.post("/v1/stems", json={"clip_id": newest["id"], "stems": 2}, headers=bob)
        assert r.status_code == 404 and r.json()["error"]["field"] == "clip_id"
