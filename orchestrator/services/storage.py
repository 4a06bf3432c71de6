"""The job files' lifecycle: how they are written, how long they stay, how much one user may keep.

- Writes go to a temporary name beside the target and are renamed into place (:func:`write_atomic`); a failed write
  (a full disk) removes its temporary file, so no reader ever sees half a file, and :func:`disk_guard` turns
  ``ENOSPC``/``EDQUOT`` into a job failure that says what happened and what to do.
- Uploads are kept losslessly compressed (``<name>.npz``, :func:`save_upload` / :func:`load_upload`; an older
  job's ``.npy`` still loads); the sampler's waveform (``audio.npy``) is deleted once the job has succeeded.
- :class:`RetentionSweeper` (owned by the app's lifespan) deletes the files of jobs that ended more than
  ``retention_s`` ago (0 = keep forever) and directories that belong to no job, every ``sweep_interval_s``.
- :class:`StorageQuota`: a user whose job and clip files exceed ``user_storage_max_bytes`` (0 = no quota) cannot
  submit or upload (a file hard-linked into a clip counts once).
- Clips (``services/clips.py``) live in ``<data_dir>/clips/<id>/`` and follow ``clip_retention_days``
  (:meth:`RetentionSweeper.sweep_clips`), independent of their job's ``retention_s``.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import io
import logging
import os
import re
import shutil
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np
from sqlalchemy import select
from sqlalchemy.ext.asyncio import async_sessionmaker

from orchestrator import clip_store
from orchestrator.db import TERMINAL_STATUSES, Job
from orchestrator.errors import ApiError
from orchestrator.settings import Settings

logger = logging.getLogger(__name__)

UPLOAD_FILES = {"src_audio": "src_audio.npz", "reference_audio": "reference_audio.npz"}
WAVEFORM = "audio.npy"
LATENTS = "latents.npy"  # the sampler's final latents [batch, …], kept until the job's clips hold them
SRC_LATENTS = "src_latents.npy"  # an edit's source clip's latents, sent to the sampler as src_latents
CLIPS_DIR = "clips"
_DISK_FULL = (errno.ENOSPC, errno.EDQUOT)
_QUOTA_CACHE_S = 30.0
_ORPHAN_GRACE_S = 3600.0  # a clip folder without a row this old belongs to no clip (its job was lost mid-success)


class DiskFullError(OSError):
    """A write failed because the data disk (or the user's filesystem quota) is full."""


def write_atomic(path: Path, write: Callable[[io.BufferedWriter], object]) -> Path:
    """Call ``write(handle)`` on a temporary file beside ``path``, fsync-free rename into place; on any error the
    temporary file is removed and ``path`` is untouched. A full disk raises :class:`DiskFullError`."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".part", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as handle:
            write(handle)
        os.replace(tmp, path)
    except OSError as exc:
        Path(tmp).unlink(missing_ok=True)
        if exc.errno in _DISK_FULL:
            raise DiskFullError(exc.errno, f"no space left writing {path.name} in {path.parent}") from exc
        raise
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def save_npy_atomic(path: Path, array: np.ndarray) -> Path:
    return write_atomic(path, lambda handle: np.save(handle, array))


def save_upload(directory: Path, name: str, wave: np.ndarray) -> Path:
    """``name``'s decoded waveform, compressed without loss (zlib in ``.npz``)."""
    array = np.asarray(wave, dtype=np.float32)
    return write_atomic(directory / UPLOAD_FILES[name], lambda handle: np.savez_compressed(handle, audio=array))


def load_upload(directory: Path, name: str) -> np.ndarray:
    compressed = directory / UPLOAD_FILES[name]
    if compressed.is_file():
        with np.load(compressed) as archive:
            return np.asarray(archive["audio"], dtype=np.float32)
    return np.asarray(np.load(directory / f"{name}.npy"), dtype=np.float32)  # written before compression


def drop_waveform(directory: Path) -> None:
    """The intermediate waveform (and the batch's latents, each clip keeps its own) is not needed once every item is
    encoded and registered."""
    (directory / WAVEFORM).unlink(missing_ok=True)
    (directory / LATENTS).unlink(missing_ok=True)


_FILE_NAME = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}$")


def safe_file_name(name: str) -> bool:
    """A file name that may be joined to a job's or clip's folder: one short plain name, no separator, no ``..``."""
    return bool(_FILE_NAME.match(name)) and ".." not in name


def clip_dir(settings: Settings, clip_id: str) -> Path:
    """Where a clip's files live: ``<data_dir>/clips/<clip id>/``."""
    if not re.fullmatch(r"[0-9a-f-]{36}", clip_id):
        raise ValueError(f"not a clip id: {clip_id!r}")
    return settings.data_dir / CLIPS_DIR / clip_id


@contextlib.contextmanager
def disk_guard(stage: str, data_dir: Path, failure: Callable[[str], Exception]) -> Iterator[None]:
    """Turn a full disk into ``failure(message)`` — a clear job failure instead of an internal error (the engine
    puts the stage's name in front)."""
    try:
        yield
    except OSError as exc:
        if exc.errno not in _DISK_FULL:
            raise
        raise failure(
            f"the data disk is full ({exc.strerror or exc}) in the {stage} stage; no partial file was kept. "
            f"Free space in {data_dir} (or lower TRITONE_RETENTION_S) and submit the job again"
        ) from exc


def tree_bytes(path: Path, seen: set[tuple[int, int]] | None = None) -> int:
    """The bytes of the files under ``path``; with ``seen``, a file hard-linked twice (a clip's audio and its job's)
    counts once across calls."""
    total = 0
    for root, _dirs, files in os.walk(path):
        for name in files:
            with contextlib.suppress(OSError):
                info = os.lstat(os.path.join(root, name))
                if seen is not None:
                    if (info.st_dev, info.st_ino) in seen:
                        continue
                    seen.add((info.st_dev, info.st_ino))
                total += info.st_size
    return total


class StorageQuota:
    def __init__(self, settings: Settings, sessions: async_sessionmaker) -> None:
        self._settings = settings
        self._sessions = sessions
        self._cache: dict[str, tuple[float, int]] = {}

    async def usage(self, owner: str) -> int:
        cached = self._cache.get(owner)
        if cached is not None and time.monotonic() - cached[0] < _QUOTA_CACHE_S:
            return cached[1]
        async with self._sessions() as session:
            ids = (await session.scalars(select(Job.public_id).where(Job.owner == owner))).all()
            clip_ids = await clip_store.owner_clip_ids(session=session, owner=owner)
        folders = [self._settings.data_dir / "jobs" / i for i in ids]
        folders += [self._settings.data_dir / CLIPS_DIR / i for i in clip_ids]
        seen: set[tuple[int, int]] = set()
        used = await asyncio.to_thread(lambda: sum(tree_bytes(f, seen) for f in folders if f.is_dir()))
        self._cache[owner] = (time.monotonic(), used)
        return used

    def forget(self, owner: str) -> None:
        """Drop ``owner``'s cached usage (after an upload or a deletion changed it)."""
        self._cache.pop(owner, None)

    async def check(self, owner: str) -> None:
        limit = self._settings.user_storage_max_bytes
        if limit <= 0:
            return
        used = await self.usage(owner)
        if used >= limit:
            raise ApiError(
                429,
                f"user {owner!r} keeps {used} bytes of job and clip files, at or over the quota of {limit} bytes "
                f"(TRITONE_USER_STORAGE_MAX_BYTES); job files are deleted {self._settings.retention_s:g} s after a "
                f"job ends (TRITONE_RETENTION_S), clips {self._settings.clip_retention_days:g} days after they were "
                "made (TRITONE_CLIP_RETENTION_DAYS) or by DELETE /v1/clips/{id}",
                headers={"Retry-After": str(int(min(self._settings.sweep_interval_s, 3600)))},
            )


class RetentionSweeper:
    def __init__(self, settings: Settings, sessions: async_sessionmaker) -> None:
        self._settings = settings
        self._sessions = sessions
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        if self._settings.retention_s > 0 or self._settings.clip_retention_days > 0:
            self._task = asyncio.create_task(self._loop(), name="retention-sweeper")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._task
            self._task = None

    async def _loop(self) -> None:
        while True:
            try:
                if self._settings.retention_s > 0:
                    await self.sweep()
                await self.sweep_clips()
            except Exception:
                logger.exception("retention sweep failed; next in %.0f s", self._settings.sweep_interval_s)
            await asyncio.sleep(self._settings.sweep_interval_s)

    async def sweep(self, *, now: float | None = None) -> list[str]:
        """Delete expired job directories; returns their job ids."""
        cutoff = (time.time() if now is None else now) - self._settings.retention_s
        root = self._settings.data_dir / "jobs"
        if not root.is_dir():
            return []
        names = await asyncio.to_thread(lambda: [p.name for p in root.iterdir() if p.is_dir()])
        expired: list[str] = []
        for start in range(0, len(names), 500):
            batch = names[start : start + 500]
            async with self._sessions() as session:
                rows = (
                    await session.execute(
                        select(Job.public_id, Job.status, Job.finished_at).where(Job.public_id.in_(batch))
                    )
                ).all()
            known = {r.public_id: r for r in rows}
            for name in batch:
                row = known.get(name)
                if row is None:
                    with contextlib.suppress(OSError):
                        if (root / name).stat().st_mtime < cutoff:  # belongs to no job (a refused submission)
                            expired.append(name)
                elif row.status in TERMINAL_STATUSES and (row.finished_at or 0) < cutoff:
                    expired.append(name)
        for name in expired:
            await asyncio.to_thread(shutil.rmtree, root / name, True)
        if expired:
            logger.info(
                "retention: deleted the files of %d job(s) older than %g s", len(expired), self._settings.retention_s
            )
        return expired

    async def sweep_clips(self, *, now: float | None = None) -> list[str]:
        """Delete the clips (rows, then folders) made more than ``clip_retention_days`` ago (0: none), and clip
        folders with no row that are older than an hour (a lost job's registration); returns the clip ids."""
        now = time.time() if now is None else now
        removed: list[str] = []
        days = self._settings.clip_retention_days
        while days > 0:
            async with self._sessions() as session:
                rows = await clip_store.expired_clips(session=session, created_before=now - days * 86400.0)
                await clip_store.delete_clips(session=session, ids=[row.id for row in rows])
            for row in rows:
                await asyncio.to_thread(shutil.rmtree, clip_dir(self._settings, row.public_id), True)
            removed += [row.public_id for row in rows]
            if len(rows) < 500:
                break
        root = self._settings.data_dir / CLIPS_DIR
        names = await asyncio.to_thread(lambda: [p.name for p in root.iterdir() if p.is_dir()]) if root.is_dir() else []
        for start in range(0, len(names), 500):
            batch = names[start : start + 500]
            async with self._sessions() as session:
                known = await clip_store.known_clip_ids(session=session, public_ids=batch)
            for name in set(batch) - known:
                with contextlib.suppress(OSError):
                    if (root / name).stat().st_mtime < now - _ORPHAN_GRACE_S:
                        await asyncio.to_thread(shutil.rmtree, root / name, True)
                        removed.append(name)
        if removed:
            logger.info("retention: deleted %d clip(s) (TRITONE_CLIP_RETENTION_DAYS=%g)", len(removed), days)
        return removed
