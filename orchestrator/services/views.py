"""How a job row is shown: the song API's status, file links, upstream's response wrapper (the ACE-Step API's
shapes: ``acestep_views.py``)."""

from __future__ import annotations

import time
from typing import Any
from urllib.parse import quote

from orchestrator.db import Job
from orchestrator.schemas.lyrics import ItemLyrics
from orchestrator.schemas.song import SongItem, SongMetadata, SongProgress, SongStatusPublic
from orchestrator.services.auth import AuthService
from orchestrator.services.queue import QueueInfo


def file_path(job: Job, name: str) -> str:
    """A file's path as the file routes know it: ``<job id>/<file name>``."""
    return f"{job.public_id}/{name}"


def file_url(auth: AuthService, job: Job, name: str) -> str:
    path = file_path(job, name)
    return f"/v1/files/{path}?{auth.signed_query(path)}"


def audio_url(auth: AuthService, job: Job, name: str) -> str:
    """ACE-Step style: ``/v1/audio?path=…`` (signed, so it works in a browser without a header)."""
    path = file_path(job, name)
    return f"/v1/audio?path={quote(path, safe='')}&{auth.signed_query(path)}"


def item_timing(auth: AuthService, job: Job, item: dict[str, Any]) -> ItemLyrics:
    """An item's lyric timing (all null when its request did not set align_lyrics)."""
    lrc_file = item.get("lrc_file")
    return ItemLyrics(
        lrc=item.get("lrc"),
        lrc_url=file_url(auth, job, lrc_file) if lrc_file else None,
        aligned_lyrics=item.get("aligned_lyrics"),
        alignment_score=item.get("alignment_score"),
    )


def song_phase(job: Job) -> str:
    if job.status in ("succeeded", "failed", "cancelled"):
        return job.status
    done = (job.state or {}).get("done", [])
    if job.stage in ("audio", "post") or "metadata" in done:
        return "audio_pending"
    if "lyrics" in done:
        return "lyrics_ready"
    return "lyrics_pending"


async def song_status(job: Job, *, queue_info: QueueInfo | None, auth: AuthService) -> SongStatusPublic:
    """The song API's view of ``job`` (``queue_info`` None: no queue place or estimate, e.g. for a callback)."""
    result = job.result or {}
    state = job.state or {}
    meta = result.get("metadata") or state.get("meta") or {}
    position = await queue_info.position(job.public_id) if queue_info is not None and job.status == "queued" else 0
    items = [
        SongItem(
            index=item["index"],
            audio_url=file_url(auth, job, item["file"]),
            format=item["format"],
            duration=item["duration"],
            seed=item["seed"],
            clip_id=item.get("clip_id"),
            **item_timing(auth, job, item).model_dump(),
        )
        for item in result.get("items", [])
    ]
    progress = job.progress or {}
    return SongStatusPublic(
        intent_id=job.public_id,
        status=song_phase(job),  # type: ignore[arg-type]
        warnings=[str(w) for w in result.get("warnings") or []],
        lyrics=job.lyrics,
        title=job.title or result.get("title") or state.get("title"),
        progress=SongProgress(
            stage=progress.get("stage"), step=int(progress.get("step", 0)), total=int(progress.get("total", 0))
        ),
        items=items,
        cover_url=file_url(auth, job, result["cover"]) if result.get("cover") else None,
        metadata=SongMetadata(
            title=result.get("title") or state.get("title"),
            caption=result.get("caption") or state.get("caption"),
            bpm=meta.get("bpm"),
            key_scale=meta.get("key_scale"),
            time_signature=None if meta.get("time_signature") is None else str(meta.get("time_signature")),
            duration=meta.get("duration"),
            seeds=meta.get("seeds") or (job.params or {}).get("seeds"),
        ),
        queue_position=position,
        eta_seconds=None if queue_info is None else await queue_info.eta(job, position),
        error=job.error,
        created_at=job.created_at,
        finished_at=job.finished_at,
    )


def wrapped(data: Any, code: int = 200) -> dict[str, Any]:
    """Upstream ACE-Step's response wrapper."""
    return {"data": data, "code": code, "error": None, "timestamp": int(time.time() * 1000), "extra": None}
