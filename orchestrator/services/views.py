"""How a job row is shown: the song API's status, the ACE-Step API's job and query_result entries, file links."""

from __future__ import annotations

import json
import time
from typing import Any
from urllib.parse import quote

from orchestrator.db import Job
from orchestrator.schemas.acestep import JobPublic, JobResultPublic
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


def song_phase(job: Job) -> str:
    if job.status in ("succeeded", "failed", "cancelled"):
        return job.status
    done = (job.state or {}).get("done", [])
    if job.stage in ("audio", "post") or "metadata" in done:
        return "audio_pending"
    if "lyrics" in done:
        return "lyrics_ready"
    return "lyrics_pending"


async def song_status(job: Job, *, queue_info: QueueInfo, auth: AuthService) -> SongStatusPublic:
    result = job.result or {}
    state = job.state or {}
    meta = result.get("metadata") or state.get("meta") or {}
    position = await queue_info.position(job.public_id) if job.status == "queued" else 0
    items = [
        SongItem(
            index=item["index"],
            audio_url=file_url(auth, job, item["file"]),
            format=item["format"],
            duration=item["duration"],
            seed=item["seed"],
        )
        for item in result.get("items", [])
    ]
    progress = job.progress or {}
    return SongStatusPublic(
        intent_id=job.public_id,
        status=song_phase(job),  # type: ignore[arg-type]
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
        eta_seconds=await queue_info.eta(job, position),
        error=job.error,
        created_at=job.created_at,
        finished_at=job.finished_at,
    )


def _job_result(job: Job, auth: AuthService) -> JobResultPublic | None:
    if job.status != "succeeded" or not job.result:
        return None
    result = job.result
    meta = result.get("metadata") or {}
    paths = [audio_url(auth, job, item["file"]) for item in result.get("items", [])]
    lm = result.get("lm_metas") or {}
    metas = {
        "bpm": meta.get("bpm"),
        "duration": meta.get("duration"),
        "genres": lm.get("genres", ""),
        "keyscale": meta.get("key_scale"),
        "timesignature": None if meta.get("time_signature") is None else str(meta.get("time_signature")),
    }
    return JobResultPublic(
        audio_paths=paths,
        first_audio_path=paths[0] if paths else None,
        second_audio_path=paths[1] if len(paths) > 1 else None,
        generation_info=str(result.get("generation_info", "")),
        status_message="Generation completed successfully",
        seed_value=",".join(str(s) for s in meta.get("seeds") or []),
        bpm=meta.get("bpm"),
        duration=meta.get("duration"),
        genres=metas["genres"] or None,
        keyscale=meta.get("key_scale"),
        timesignature=metas["timesignature"],
        metas=metas,
        lyrics=result.get("lyrics"),
        caption=result.get("caption"),
    )


async def job_public(job: Job, *, queue_info: QueueInfo, auth: AuthService) -> JobPublic:
    position = await queue_info.position(job.public_id) if job.status == "queued" else 0
    return JobPublic(
        job_id=job.public_id,
        status=job.status,  # type: ignore[arg-type]
        stage=job.stage,
        created_at=job.created_at,
        finished_at=job.finished_at,
        queue_position=position,
        eta_seconds=await queue_info.eta(job, position),
        progress=job.progress,
        result=_job_result(job, auth),
        error=job.error,
    )


def query_result_entry(job: Job, auth: AuthService) -> dict[str, Any]:
    """Upstream's /query_result entry: status 0 (queued/running), 1 (succeeded), 2 (failed or cancelled); result is
    a JSON string holding one object per audio file."""
    code = {"succeeded": 1, "failed": 2, "cancelled": 2}.get(job.status, 0)
    entries: list[dict[str, Any]] = []
    result = _job_result(job, auth)
    if result is not None:
        for path in result.audio_paths:
            entries.append(
                {
                    "file": path,
                    "wave": "",
                    "status": 1,
                    "create_time": int(job.created_at),
                    "env": "tritone",
                    "prompt": result.caption or "",
                    "lyrics": result.lyrics or "",
                    "metas": result.metas,
                    "generation_info": result.generation_info,
                    "seed_value": result.seed_value,
                    "lm_model": "lm",
                    "dit_model": str((job.params or {}).get("family", "")),
                }
            )
    return {
        "task_id": job.public_id,
        "status": code,
        "result": json.dumps(entries, ensure_ascii=False),
        "error": job.error,
    }


def wrapped(data: Any, code: int = 200) -> dict[str, Any]:
    """Upstream ACE-Step's response wrapper."""
    return {"data": data, "code": code, "error": None, "timestamp": int(time.time() * 1000), "extra": None}
