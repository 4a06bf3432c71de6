"""Clips: a finished job's items registered as clips (rows + files, latents kept), ``get_clip``'s owner rule — on
SQLite and the real PostgreSQL, with the in-process stage runner."""

from __future__ import annotations

import os
import time
import uuid

import numpy as np
import pytest
import soundfile as sf
from sqlalchemy import update

from orchestrator import clip_store
from orchestrator.db import Clip, make_engine, make_sessionmaker
from orchestrator.migrations import run_migrations
from orchestrator.services import clips
from orchestrator.services.storage import RetentionSweeper
from tests.orchestrator.doubles import LATENT_SHAPE, StageRunnerDouble
from tests.orchestrator.support import login, make_settings, running_app
from tests.orchestrator.test_clips_api import generated_job, wav_bytes


async def test_job_items_become_clips_with_files_latents_and_owner_rule(tmp_path, db_url) -> None:
    settings = make_settings(tmp_path, db_url)
    async with running_app(settings, StageRunnerDouble()) as (app, client):
        headers = await login(client)
        done = await generated_job(client, headers, caption="clip me", batch_size=2, audio_format="mp3", seed=41,
                                   use_random_seed=False)
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


async def test_retention_removes_old_clips_and_orphan_folders_and_children_keep_their_parent(tmp_path, db_url) -> None:
    settings = make_settings(tmp_path, db_url, clip_retention_days=1.0)
    engine = make_engine(db_url)
    await run_migrations(engine)
    sessions = make_sessionmaker(engine)
    try:
        old, _ = await clips.store_upload(settings, sessions, owner="alice", data=wav_bytes(), title="old")
        new, _ = await clips.store_upload(settings, sessions, owner="alice", data=wav_bytes(), title="new")
        child = Clip(**{**{c.name: getattr(new, c.name) for c in Clip.__table__.columns if c.name != "id"},
                        "public_id": str(uuid.uuid4()), "parent_id": old.public_id, "action": "cover"})
        async with sessions() as session:
            await clip_store.insert_clip(session=session, row=child)
            await session.execute(update(Clip).where(Clip.id == old.id).values(created_at=time.time() - 2 * 86400))
            await session.commit()
        orphan = settings.data_dir / "clips" / str(uuid.uuid4())
        orphan.mkdir(parents=True)
        (orphan / "audio.flac").write_bytes(b"x")
        os.utime(orphan, (time.time() - 7200, time.time() - 7200))

        removed = await RetentionSweeper(settings, sessions).sweep_clips()
        assert sorted(removed) == sorted([old.public_id, orphan.name])
        assert not clips.clip_dir(settings, old.public_id).exists() and not orphan.exists()
        assert clips.clip_dir(settings, new.public_id).is_dir()
        with pytest.raises(clips.ClipNotFoundError):
            await clips.get_clip(sessions, owner="alice", clip_id=old.public_id)
        kept = await clips.get_clip(sessions, owner="alice", clip_id=child.public_id)
        assert kept.parent_id == old.public_id  # a dangling, still named, lineage link
        # nothing is swept twice, and 0 days keeps clips forever
        assert await RetentionSweeper(settings, sessions).sweep_clips() == []
        forever = settings.model_copy(update={"clip_retention_days": 0.0})
        assert await RetentionSweeper(forever, sessions).sweep_clips(now=time.time() + 10**6) == []
    finally:
        await engine.dispose()
