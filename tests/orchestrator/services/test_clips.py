"""Clips: a finished job's items registered as clips (rows + files, latents kept), ``get_clip``'s owner rule — on
SQLite and the real PostgreSQL, with the in-process stage runner."""

from __future__ import annotations

import time

import numpy as np
import pytest
import soundfile as sf

from orchestrator import clip_store
from orchestrator.services import clips
from orchestrator.services.storage import RetentionSweeper
from tests.orchestrator.doubles import LATENT_SHAPE, StageRunnerDouble
from tests.orchestrator.support import login, make_settings, running_app, wait_for


async def _music(client, headers, **fields) -> dict:
    body = {"caption": "clip me", "inference_steps": 2, "thinking": False, "duration": 10, **fields}
    r = await client.post("/v1/music/generate", json=body, headers=headers)
    assert r.status_code == 200, r.text
    job_id = r.json()["job_id"]

    async def probe():
        got = (await client.get(f"/v1/jobs/{job_id}", headers=headers)).json()
        return got if got["status"] in ("succeeded", "failed") else None

    done = await wait_for(probe, what=f"job {job_id}")
    assert done["status"] == "succeeded", done
    return done


async def test_job_items_become_clips_with_files_latents_and_owner_rule(tmp_path, db_url) -> None:
    settings = make_settings(tmp_path, db_url)
    async with running_app(settings, StageRunnerDouble()) as (app, client):
        headers = await login(client)
        done = await _music(client, headers, batch_size=2, audio_format="mp3", seed=41, use_random_seed=False)
        sessions = app.state.ctx.sessions
        async with sessions() as session:
            rows = await clip_store.job_clips(session=session, job_id=done["job_id"])
        assert [r.item_index for r in rows] == [0, 1]
        assert [r.seed for r in rows] == [41, 42] and all(r.owner == "alice" for r in rows)
        assert {r.action for r in rows} == {"generate"} and all(r.parent_id is None for r in rows)
        assert all(r.caption == "clip me" and r.audio_format == "mp3" for r in rows)

        clip = await clips.get_clip(sessions, owner="alice", clip_id=rows[1].public_id)
        paths = clips.clip_paths(settings, clip)
        assert paths.audio.suffix == ".mp3" and paths.audio.is_file()
        # mp3 is lossy: the clip keeps a lossless 48 kHz source beside it
        assert paths.source.name == "source.flac"
        info = sf.info(str(paths.source))
        assert info.samplerate == 48_000 and info.channels == 2 and info.subtype == "PCM_24"
        assert clips.load_source_audio(settings, clip).shape[0] == 2
        latents = clips.load_latents(settings, clip)
        assert latents is not None and latents.shape == LATENT_SHAPE and np.all(latents == 42 % 997)
        assert clip.extra["latent_shape"] == list(LATENT_SHAPE)

        # another user's id is not found, exactly like an id that never existed
        for owner, clip_id in (("bob", clip.public_id), ("alice", "00000000-0000-0000-0000-000000000000"),
                               ("alice", "not-a-uuid")):
            with pytest.raises(clips.ClipNotFoundError) as err:
                await clips.get_clip(sessions, owner=owner, clip_id=clip_id, field="src_audio_id")
            assert err.value.status == 404 and err.value.field == "src_audio_id"

        # the job's own files expire with the job; the clip's (hard links) stay
        swept = await RetentionSweeper(settings.model_copy(update={"retention_s": 1.0}), sessions).sweep(
            now=time.time() + 10
        )
        assert done["job_id"] in swept
        assert paths.audio.is_file() and paths.source.is_file() and paths.latents is not None
        assert paths.latents.is_file()
