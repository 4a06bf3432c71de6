"""Clips: every audio item the service made or received, as a durable row (``clips``) and a folder of files.

A clip's folder, ``<data_dir>/clips/<clip id>/``, holds (hard links where the job already wrote the file, so a clip
costs no second copy and outlives the job's own retention):

- ``audio.<ext>`` — the audio as served (the job's item file in the requested format, or the upload as sent);
- ``source.flac`` — the lossless 48 kHz stereo audio when ``audio`` is not already lossless (mp3, 16-bit wav); an
  edit that needs audio (the ACE-Step API's ``src_audio_id``, stems) reads :attr:`ClipPaths.source`;
- ``latents.npy`` — the sampler's final latents for this item (the array the VAE decoded; ACE-Step 1.5 ``[T, C]``,
  v1 ``[8, 16, T]``; ``extra.latent_shape``, ``extra.family``). An edit on the same family and version set can start
  from them instead of re-encoding the audio (:func:`load_latents`); uploads have none;
- ``cover.png`` and ``lyrics.lrc`` when the job made them.

Lineage: ``parent_id`` (the clip an edit started from; it may since have been deleted — the id is kept, dangling)
and ``action`` (``generate``, the ACE-Step task type such as ``cover``/``repaint``/``extend``, ``stems``,
``upload``, or what an edit pipeline names). A job declares them in its params: ``parent_clip_id`` and
``clip_action`` (defaults: the source clip the submission resolved, else none; the task type, else ``generate``).

Registration: :func:`job_clip_rows` (called by the stage engine's ``succeed`` for every job kind, in one place)
links the files and gives the rows, which the engine commits in the same transaction as the job's success; each
result item gets its ``clip_id``. Another user's clip id is not found (:class:`ClipNotFoundError`, a 404), exactly
like an id that never existed.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import logging
import os
import shutil
import time
import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from sqlalchemy.ext.asyncio import async_sessionmaker

from orchestrator import clip_store
from orchestrator.db import Clip
from orchestrator.errors import ApiError
from orchestrator.families import MAX_DURATION_S
from orchestrator.media.audio import SAMPLE_RATE, AudioDecodeError, decode_audio, encode_audio
from orchestrator.media.probe import AudioHeader, AudioHeaderError, check_header
from orchestrator.services.storage import (
    LATENTS,
    WAVEFORM,
    DiskFullError,
    StorageQuota,
    clip_dir,
    safe_file_name,
    save_npy_atomic,
    tree_bytes,
    write_atomic,
)
from orchestrator.settings import Settings

logger = logging.getLogger(__name__)

# Job item i's clip id is uuid5(this, "<job id>/<i>"): a re-run of the registration names the same clip.
_JOB_ITEM_NAMESPACE = uuid.UUID("6f1d3c2a-8a4e-5b7f-9c1d-2e3f4a5b6c7d")
_LOSSLESS = {".flac"}
LATENT_SOURCE_FAMILIES = frozenset({"acestep15"})  # the sampler's src_latents input (v1 encodes its source)
_LOSSLESS_FORMATS = {"flac", "wav32"}
AUDIO_NAME, COVER_NAME = "audio", "cover"  # + the file's own suffix
SOURCE_NAME, LATENTS_NAME, LRC_NAME = "source.flac", "latents.npy", "lyrics.lrc"


class ClipNotFoundError(ApiError):
    """No such clip of the caller's (also another user's id): a 404 naming the field it came from."""

    def __init__(self, clip_id: str, field: str = "clip_id") -> None:
        super().__init__(404, f"{field}: no such clip: {clip_id!r} (not one of your clips)", field=field)
        self.clip_id = clip_id


@dataclass(frozen=True)
class ClipPaths:
    """A clip's files on this machine (``latents``/``cover``/``lrc``: None when it has none)."""

    directory: Path
    audio: Path
    source: Path  # 48 kHz stereo, lossless when the clip was made here (uploads: the file as sent)
    latents: Path | None
    cover: Path | None
    lrc: Path | None


def clip_paths(settings: Settings, clip: Clip) -> ClipPaths:
    directory = clip_dir(settings, clip.public_id)

    def opt(name: str | None) -> Path | None:
        return directory / name if name else None

    return ClipPaths(
        directory=directory,
        audio=directory / clip.audio_file,
        source=directory / clip.source_file,
        latents=opt(clip.latents_file),
        cover=opt(clip.cover_file),
        lrc=opt(clip.lrc_file),
    )


def is_clip_id(value: str) -> bool:
    try:
        return str(uuid.UUID(value)) == value.lower()
    except (ValueError, AttributeError, TypeError):
        return False


async def get_clip(sessions: async_sessionmaker, *, owner: str, clip_id: str, field: str = "clip_id") -> Clip:
    """``owner``'s clip ``clip_id``; :class:`ClipNotFoundError` (404) when there is none of theirs."""
    if not is_clip_id(clip_id):
        raise ClipNotFoundError(clip_id, field)
    async with sessions() as session:
        clip = await clip_store.get_clip(session=session, public_id=clip_id.lower(), owner=owner)
    if clip is None:
        raise ClipNotFoundError(clip_id, field)
    return clip


def read_source_bytes(settings: Settings, clip: Clip, field: str = "clip_id") -> bytes:
    """The clip's source audio file as bytes (what a submission decodes like an upload); 404 when its files are gone."""
    path = clip_paths(settings, clip).source
    if not path.is_file():
        raise ApiError(
            404, f"{field}: the files of clip {clip.public_id} are gone from the data directory", field=field
        )
    return path.read_bytes()


def load_source_audio(settings: Settings, clip: Clip) -> np.ndarray:
    """The clip's audio as float32 ``[2, samples]`` at 48 kHz."""
    return decode_audio(read_source_bytes(settings, clip), target_rate=SAMPLE_RATE)


def source_latents(settings: Settings, clip: Clip, family: str) -> np.ndarray | None:
    """The latents an edit of ``family`` can start from instead of encoding the clip's audio: the clip's own, when it
    was made by that family and the family's sampler takes them (``src_latents``; ACE-Step 1.5, whose version sets
    share one VAE). None otherwise — the edit encodes the audio."""
    if family not in LATENT_SOURCE_FAMILIES or (clip.extra or {}).get("family") != family:
        return None
    return load_latents(settings, clip)


def load_latents(settings: Settings, clip: Clip) -> np.ndarray | None:
    """The latents the clip was decoded from (None for uploads and clips made before latents were kept)."""
    path = clip_paths(settings, clip).latents
    if path is None or not path.is_file():
        return None
    return np.asarray(np.load(path), dtype=np.float32)


# --- registration of a job's items -----------------------------------------------------------------------------------
def job_item_clip_id(job_id: str, index: int) -> str:
    return str(uuid.uuid5(_JOB_ITEM_NAMESPACE, f"{job_id}/{index}"))


def _place(source: Path, target: Path) -> None:
    """``target`` becomes ``source``'s content: a hard link (no copy; survives the job folder's removal), a copy
    across file systems. Atomic: a reader never sees a half file."""
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = target.with_name(f".{target.name}.{os.getpid()}.part")
    tmp.unlink(missing_ok=True)
    try:
        os.link(source, tmp)
    except OSError:
        shutil.copyfile(source, tmp)
    os.replace(tmp, target)


def _action(params: Mapping[str, Any]) -> str:
    if params.get("clip_action"):
        return str(params["clip_action"])
    task = params.get("task_type")
    return "generate" if task in (None, "", "text2music") else str(task)


def job_clip_rows(
    settings: Settings,
    *,
    job_id: str,
    kind: str,
    owner: str,
    params: Mapping[str, Any],
    result: dict[str, Any],
    directory: Path,
    sample_rate: int = SAMPLE_RATE,
) -> list[dict[str, Any]]:
    """Link every result item's files into its clip folder and return the clips' column values (the caller inserts
    them with the job's success). Sets ``clip_id`` on each item of ``result``. Blocking (files): run it in a thread."""
    meta = result.get("metadata") or {}
    model = result.get("model") or {}
    latents = np.load(directory / LATENTS, mmap_mode="r") if (directory / LATENTS).is_file() else None
    waveform = np.load(directory / WAVEFORM, mmap_mode="r") if (directory / WAVEFORM).is_file() else None
    cover = directory / result["cover"] if result.get("cover") else None
    rows: list[dict[str, Any]] = []
    for position, item in enumerate(result.get("items") or []):
        if not item.get("file"):
            continue
        index = int(item.get("index", position))
        clip_id = job_item_clip_id(job_id, index)
        folder = clip_dir(settings, clip_id)
        audio_src = directory / item["file"]
        audio_name = AUDIO_NAME + audio_src.suffix.lower()
        _place(audio_src, folder / audio_name)
        source_name = audio_name
        lossless = audio_src.suffix.lower() in _LOSSLESS or item.get("format") in _LOSSLESS_FORMATS
        if not lossless and waveform is not None and index < waveform.shape[0]:
            encode_audio(np.asarray(waveform[index]), sample_rate=sample_rate, fmt="flac", path=folder / SOURCE_NAME)
            source_name = SOURCE_NAME
        latents_name, extra = None, {"format": item.get("format"), "job_kind": kind}
        if latents is not None and index < latents.shape[0]:
            save_npy_atomic(folder / LATENTS_NAME, np.ascontiguousarray(latents[index], dtype=np.float32))
            latents_name, extra["latent_shape"] = LATENTS_NAME, list(latents.shape[1:])
        cover_name = None
        if cover is not None and cover.is_file():
            cover_name = COVER_NAME + cover.suffix.lower()
            _place(cover, folder / cover_name)
        lrc_name = None
        if item.get("lrc_file") and (directory / item["lrc_file"]).is_file():
            _place(directory / item["lrc_file"], folder / LRC_NAME)
            lrc_name = LRC_NAME
        extra |= {
            "job_file": item["file"],  # the job's own copy, removed with the clip (DELETE /v1/clips/{id})
            "job_lrc_file": lrc_name and item["lrc_file"],
            "family": model.get("family") or params.get("family"),
            "version_set": model.get("version_set") or params.get("version_set"),
            "time_signature": meta.get("time_signature"),
            "stem": item.get("stem") or (item.get("name") if kind == "stems" else None),
        }
        item["clip_id"] = clip_id
        rows.append(
            {
                "public_id": clip_id,
                "owner": owner,
                "origin": "job",
                "action": str(item.get("action") or _action(params)),
                "parent_id": item.get("parent_clip_id") or params.get("parent_clip_id"),
                "job_id": job_id,
                "item_index": index,
                "title": item.get("title") or result.get("title") or params.get("title"),
                "lyrics": result.get("lyrics"),
                "caption": result.get("caption") or params.get("caption") or params.get("prompt"),
                "model": model.get("name"),
                "seed": item.get("seed"),
                "duration": item.get("duration") or meta.get("duration"),
                "bpm": meta.get("bpm"),
                "key_scale": meta.get("key_scale"),
                "audio_file": audio_name,
                "audio_format": str(item.get("format") or audio_src.suffix.lstrip(".")),
                "source_file": source_name,
                "latents_file": latents_name,
                "cover_file": cover_name,
                "lrc_file": lrc_name,
                "extra": {k: v for k, v in extra.items() if v is not None},
                "size_bytes": tree_bytes(folder),
                "created_at": time.time(),
            }
        )
    return rows


def remove_files(settings: Settings, clip_id: str) -> None:
    """Delete a clip's folder (its hard links; the job's own files are the job's retention's)."""
    with contextlib.suppress(ValueError):
        shutil.rmtree(clip_dir(settings, clip_id), ignore_errors=True)



# --- the library: uploads, pages, deletion ----------------------------------------------------------------------------
_UPLOAD_SUFFIX = {"WAV": ".wav", "WAVEX": ".wav", "FLAC": ".flac", "OGG": ".ogg", "MP3": ".mp3", "MPEG": ".mp3",
                  "AIFF": ".aiff"}


async def read_audio(name: str, data: bytes, *, max_seconds: float) -> tuple[AudioHeader, np.ndarray]:
    """An upload (or a file read back) as its declared header and 48 kHz stereo float32 ``[2, samples]``: the header
    checked before the decode, the decoded length after; a 422 naming ``name`` (and what the file declared)
    otherwise."""
    try:
        header = check_header(data, max_seconds=max_seconds)
    except AudioHeaderError as exc:
        raise ApiError(422, f"{name}: {exc.field}: {exc.message}", field=name) from None
    try:
        wave = await asyncio.to_thread(decode_audio, data, target_rate=SAMPLE_RATE)
    except AudioDecodeError as exc:
        raise ApiError(422, f"{name}: could not decode the audio: {exc}", field=name) from None
    seconds = wave.shape[-1] / SAMPLE_RATE
    if seconds > max_seconds:
        raise ApiError(422, f"{name}: audio is {seconds:.0f} s long; at most {max_seconds:g} s is accepted", field=name)
    return header, wave


async def decode_source(name: str, data: bytes, *, max_seconds: float) -> np.ndarray:
    """:func:`read_audio`'s waveform (the submissions' sources)."""
    return (await read_audio(name, data, max_seconds=max_seconds))[1]


async def store_upload(
    settings: Settings,
    sessions: async_sessionmaker,
    *,
    owner: str,
    data: bytes,
    title: str | None = None,
    lyrics: str | None = None,
    caption: str | None = None,
    field: str = "file",
    quota: StorageQuota | None = None,
    decoded: tuple[AudioHeader, np.ndarray] | None = None,
) -> tuple[Clip, np.ndarray]:
    """An uploaded file as ``owner``'s clip (action ``upload``) and its decoded 48 kHz waveform (a submission need
    not decode it again): the header probed before any decode (or ``decoded``, :func:`read_audio`'s answer when the
    caller has checked the audio already), the file kept as sent (``audio``) and decoded once to the 48 kHz lossless
    ``source.flac`` edits read. 422 naming ``field`` for audio it cannot take, 429 over the storage quota, 507 when
    the disk is full."""
    if quota is not None:
        await quota.check(owner)
    header, wave = decoded if decoded is not None else await read_audio(field, data, max_seconds=MAX_DURATION_S)
    seconds = wave.shape[-1] / SAMPLE_RATE
    clip_id = str(uuid.uuid4())
    folder = clip_dir(settings, clip_id)
    suffix = _UPLOAD_SUFFIX.get(header.format.upper(), ".audio")
    audio_name = AUDIO_NAME + suffix

    def write() -> int:
        write_atomic(folder / audio_name, lambda handle: handle.write(data))
        encode_audio(wave, sample_rate=SAMPLE_RATE, fmt="flac", path=folder / SOURCE_NAME)
        return tree_bytes(folder)

    try:
        size = await asyncio.to_thread(write)
    except DiskFullError:
        remove_files(settings, clip_id)
        raise ApiError(507, "the server's data disk is full; the upload was not kept — try again later",
                       field=field) from None
    row = Clip(
        public_id=clip_id, owner=owner, origin="upload", action="upload", parent_id=None, job_id=None,
        item_index=None, title=title, lyrics=lyrics, caption=caption, model=None, seed=None,
        duration=round(seconds, 3), bpm=None, key_scale=None, audio_file=audio_name,
        audio_format=suffix.lstrip("."), source_file=SOURCE_NAME, latents_file=None, cover_file=None, lrc_file=None,
        extra={"sample_rate_sent": header.sample_rate, "channels_sent": header.channels}, size_bytes=size,
        created_at=time.time(),
    )
    try:
        async with sessions() as session:
            return await clip_store.insert_clip(session=session, row=row), wave
    except BaseException:
        remove_files(settings, clip_id)
        raise
    finally:
        if quota is not None:
            quota.forget(owner)


def _cursor(clip_id: int) -> str:
    return base64.urlsafe_b64encode(f"c{clip_id}".encode()).decode().rstrip("=")


def _before_id(cursor: str | None) -> int | None:
    if not cursor:
        return None
    try:
        text = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)).decode()
        if text.startswith("c") and text[1:].isdigit():
            return int(text[1:])
    except ValueError:
        pass
    raise ApiError(422, "cursor: not a cursor this service handed out (use next_cursor of the previous page)",
                   field="cursor")


async def list_clips(
    sessions: async_sessionmaker, *, owner: str, limit: int, cursor: str | None = None
) -> tuple[list[Clip], int, str | None]:
    """A page of ``owner``'s clips newest first, their total and the next page's cursor (None: no more)."""
    before = _before_id(cursor)
    async with sessions() as session:
        rows, total = await clip_store.list_clips(session=session, owner=owner, limit=limit + 1, before_id=before)
    more = len(rows) > limit
    rows = rows[:limit]
    return rows, total, (_cursor(rows[-1].id) if more and rows else None)


def _remove_clip_files(settings: Settings, clip: Clip) -> int:
    folder = clip_dir(settings, clip.public_id)
    removed = sum(len(files) for _, _, files in os.walk(folder))
    remove_files(settings, clip.public_id)
    if clip.job_id:
        jobs = settings.data_dir / "jobs" / clip.job_id
        for name in (clip.extra.get("job_file"), clip.extra.get("job_lrc_file")):
            if name and safe_file_name(name) and (jobs / name).is_file():
                (jobs / name).unlink(missing_ok=True)
                removed += 1
    return removed


async def delete_clip(settings: Settings, sessions: async_sessionmaker, *, owner: str, clip_id: str) -> int:
    """Delete ``owner``'s clip: its row, its folder and its job's copy of the item (the job's shared cover stays).
    Its children keep their ``parent_id`` (a dangling, still named, lineage link). Returns the files removed."""
    clip = await get_clip(sessions, owner=owner, clip_id=clip_id)
    async with sessions() as session:
        deleted = await clip_store.delete_clip(session=session, public_id=clip.public_id, owner=owner)
    if deleted is None:  # deleted meanwhile by another request
        raise ClipNotFoundError(clip_id)
    return await asyncio.to_thread(_remove_clip_files, settings, deleted)
