"""Storage lifecycle (issue 14): the waveform deleted once encoded, uploads kept compressed, a retention sweeper for
job files, a full disk turned into a clear job failure with no partial file left behind."""

from __future__ import annotations

import errno
import io
import os
import time
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import soundfile as sf

from orchestrator import store
from orchestrator.media import audio as audio_module
from orchestrator.services import storage as storage_module
from orchestrator.services.storage import RetentionSweeper, load_upload
from tests.orchestrator.doubles import StageRunnerDouble
from tests.orchestrator.support import login, make_settings, post_cover, running_app, wait_song

SONG = {"theme": "disk", "duration": 10, "inference_steps": 1, "generate_cover": False}


async def test_waveform_deleted_once_encoded(tmp_path) -> None:
    settings = make_settings(tmp_path)
    async with running_app(settings, StageRunnerDouble()) as (_, client):
        headers = await login(client)
        intent = (await client.post("/v1/song/create", json=SONG, headers=headers)).json()["data"]["intent_id"]
        done = await wait_song(client, headers, intent, ("succeeded",))
        files = sorted(p.name for p in (settings.data_dir / "jobs" / intent).iterdir())
        assert "audio.npy" not in files and any(f.startswith("item_0.") for f in files), files
        assert (await client.get(done["items"][0]["audio_url"])).status_code == 200


async def test_uploads_are_stored_compressed(tmp_path) -> None:
    settings = make_settings(tmp_path, triton_concurrency=0)
    rate = 44100
    wave = (0.3 * np.sin(2 * np.pi * 220 * np.arange(rate * 5) / rate)).astype(np.float32)
    buffer = io.BytesIO()
    sf.write(buffer, wave, rate, format="WAV", subtype="PCM_16")
    async with running_app(settings, StageRunnerDouble()) as (_, client):
        headers = await login(client)
        r = await post_cover(client, headers, buffer.getvalue())
        assert r.status_code == 200, r.text
        directory = settings.data_dir / "jobs" / r.json()["job_id"]
    stored = directory / "src_audio.npz"
    assert stored.is_file() and not (directory / "src_audio.npy").exists()
    decoded = load_upload(directory, "src_audio")
    assert decoded.shape[0] == 2 and decoded.dtype == np.float32
    assert stored.stat().st_size < decoded.nbytes * 0.8, (stored.stat().st_size, decoded.nbytes)


async def test_retention_sweeper_removes_expired_job_files(tmp_path) -> None:
    settings = make_settings(tmp_path, triton_concurrency=0, retention_s=3600)
    async with running_app(settings, StageRunnerDouble()) as (app, client):
        headers = await login(client)
        ids = [
            (await client.post("/v1/song/create", json=SONG, headers=headers)).json()["data"]["intent_id"]
            for _ in range(3)
        ]
        sessions = app.state.ctx.sessions
        root = settings.data_dir / "jobs"
        for job_id in ids:
            (root / job_id).mkdir(parents=True, exist_ok=True)
            (root / job_id / "item_0.flac").write_bytes(b"x")
        old, recent, running = ids
        async with sessions() as session:
            await store.cancel_job(session=session, public_id=old, owner="alice")
            await store.cancel_job(session=session, public_id=recent, owner="alice")
        orphan = root / ("f" * 8 + "-0000-0000-0000-" + "0" * 12)
        orphan.mkdir()
        now = time.time()
        os.utime(orphan, (now - 7200, now - 7200))
        sweeper = RetentionSweeper(settings, sessions)
        # an hour and a minute later: the jobs cancelled "now" are past retention; the queued one never expires
        removed = await sweeper.sweep(now=now + 3660)
        assert sorted(removed) == sorted([old, recent, orphan.name])
        assert not (root / old).exists() and (root / running).is_dir()
        assert await sweeper.sweep(now=now + 3660) == []
        # files of a job inside its retention are kept
        (root / running).joinpath("x").write_bytes(b"y")
        assert await sweeper.sweep(now=now) == []


class _FullDisk:
    """A file handle that writes half of what it is given, then fails like a full disk."""

    def __init__(self, handle: Any) -> None:
        self._handle = handle

    def write(self, data: bytes) -> int:
        self._handle.write(bytes(data)[: len(data) // 2])
        self._handle.flush()
        raise OSError(errno.ENOSPC, "No space left on device")

    def __enter__(self) -> _FullDisk:
        return self

    def __exit__(self, *exc: object) -> None:
        self._handle.close()

    def __getattr__(self, name: str) -> Any:
        return getattr(self._handle, name)


class _OsWithFullDisk:
    def __getattr__(self, name: str) -> Any:
        return getattr(os, name)

    @staticmethod
    def fdopen(fd: int, mode: str = "r", *args: Any, **kwargs: Any) -> Any:
        return _FullDisk(os.fdopen(fd, mode, *args, **kwargs))


@pytest.mark.parametrize("where", ["encode", "waveform"])
async def test_disk_full_fails_the_job_clearly_without_partial_files(
    tmp_path, monkeypatch: pytest.MonkeyPatch, where: str
) -> None:
    module = audio_module if where == "encode" else storage_module
    monkeypatch.setattr(module, "os", _OsWithFullDisk())
    settings = make_settings(tmp_path)
    async with running_app(settings, StageRunnerDouble()) as (_, client):
        headers = await login(client)
        intent = (await client.post("/v1/song/create", json=SONG, headers=headers)).json()["data"]["intent_id"]
        failed = await wait_song(client, headers, intent, ("failed",))
    message = failed["error"]["message"] if isinstance(failed.get("error"), dict) else str(failed.get("error"))
    stage = "post" if where == "encode" else "audio"
    assert message.startswith(f"{stage}: the data disk is full"), message
    assert "TRITONE_RETENTION_S" in message
    directory: Path = settings.data_dir / "jobs" / intent
    leftovers = [p.name for p in directory.iterdir()] if directory.exists() else []
    assert not [n for n in leftovers if n.endswith((".part", ".tmp")) or n.startswith("item_")], leftovers
    if where == "waveform":
        assert "audio.npy" not in leftovers
