"""How a job is shown to ACE-Step clients: ``GET /v1/jobs/{id}`` (seed 003) and upstream's ``/query_result`` entries.

Upstream's clients read progress from the first result entry while a task runs (``progress`` 0–1, ``stage``) and the
top level's ``progress_text``; a failure's ``error``; a success's ``file`` (downloaded as ``<base><file>``),
``metas`` (bpm, duration, keyscale, timesignature, genres, and the prompt/lyrics), ``lm_model`` and ``dit_model``.
"""

from __future__ import annotations

import json
from typing import Any

from orchestrator.db import Job
from orchestrator.schemas.acestep import JobPublic, JobResultPublic
from orchestrator.services.auth import AuthService
from orchestrator.services.queue import QueueInfo
from orchestrator.services.stems_views import stems_result
from orchestrator.services.views import audio_url, item_timing

# Share of a music job's progress each stage stands for (the audio stage's DiT steps fill most of the bar).
_STAGE_SPANS = {"lyrics": (0.0, 0.1), "metadata": (0.1, 0.25), "audio": (0.25, 0.95), "post": (0.95, 1.0)}
_CODES = {"succeeded": 1, "failed": 2, "cancelled": 2}


def job_progress(job: Job) -> tuple[float, str, str]:
    """``(fraction 0–1, stage, text)`` of a job as it stands."""
    if job.status == "succeeded":
        return 1.0, "succeeded", "done"
    if job.status == "queued":
        return 0.0, "queued", "queued: waiting for a worker"
    progress = job.progress or {}
    stage = job.stage or ("failed" if job.status == "failed" else "queued")
    start, end = _STAGE_SPANS.get(stage, (0.0, 0.0))
    step, total = int(progress.get("step", 0) or 0), int(progress.get("total", 0) or 0)
    part = min(1.0, step / total) if total > 0 else 0.0
    fraction = round(start + (end - start) * part, 4)
    detail = f"{progress.get('stage', stage)} {step}/{total}" if total else stage
    if job.status in ("failed", "cancelled"):
        return fraction, stage, f"{job.status} during {stage}: {job.error or job.status}"
    return fraction, stage, f"{stage}: {detail}"


def model_report(job: Job) -> dict[str, Any]:
    """The model, version set, network versions and LM that produced a finished job's audio."""
    result = job.result or {}
    model = dict(result.get("model") or {})
    return {
        "dit_model": str(model.get("name") or (job.params or {}).get("family") or ""),
        "lm_model": str(result.get("lm_model") or ""),
        "lm_requested": result.get("lm_requested"),
        "lm_fallback": bool(result.get("lm_fallback")),
        "model": model or None,
    }


def job_result(job: Job, auth: AuthService) -> JobResultPublic | None:
    if job.status != "succeeded" or not job.result:
        return None
    result = job.result
    meta = result.get("metadata") or {}
    paths = [audio_url(auth, job, item["file"]) for item in result.get("items", [])]
    timed = [item_timing(auth, job, item) for item in result.get("items", []) if "lrc" in item]
    lm = result.get("lm_metas") or {}
    metas = {
        "bpm": meta.get("bpm"),
        "duration": meta.get("duration"),
        "genres": lm.get("genres", ""),
        "keyscale": meta.get("key_scale"),
        "timesignature": None if meta.get("time_signature") is None else str(meta.get("time_signature")),
        "caption": result.get("caption") or "",
        "prompt": result.get("caption") or "",
        "lyrics": result.get("lyrics") or "",
    }
    return JobResultPublic(
        audio_paths=paths,
        clip_ids=[item.get("clip_id") for item in result.get("items", [])],
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
        **model_report(job),
        alignment=timed or None,
        track_names=[str(item["track_name"]) for item in result.get("items", []) if "track_name" in item] or None,
    )


async def job_public(job: Job, *, queue_info: QueueInfo, auth: AuthService) -> JobPublic:
    position = await queue_info.position(job.public_id) if job.status == "queued" else 0
    return JobPublic(
        job_id=job.public_id,
        kind=job.kind,
        status=job.status,  # type: ignore[arg-type]
        stage=job.stage,
        created_at=job.created_at,
        started_at=job.started_at,
        finished_at=job.finished_at,
        queue_position=position,
        eta_seconds=await queue_info.eta(job, position),
        avg_job_seconds=round(await queue_info.job_seconds(job.kind), 3),
        progress=job.progress,
        result=stems_result(job, auth) if job.kind == "stems" else job_result(job, auth),
        error=job.error,
    )


def query_result_entry(job: Job, auth: AuthService) -> dict[str, Any]:
    """Upstream's /query_result entry: status 0 (queued/running), 1 (succeeded), 2 (failed or cancelled); ``result``
    is a JSON string: one object per audio file, or while running / after a failure one object with ``progress``,
    ``stage`` and ``error``."""
    code = _CODES.get(job.status, 0)
    fraction, stage, text = job_progress(job)
    entries: list[dict[str, Any]] = []
    result = job_result(job, auth)
    if result is not None:
        for index, path in enumerate(result.audio_paths):
            timing = result.alignment[index].model_dump() if result.alignment and index < len(result.alignment) else {}
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
                    "lm_model": result.lm_model,
                    "dit_model": result.dit_model,
                    "model": result.model,
                    "progress": 1.0,
                    "stage": "succeeded",
                }
                | timing
                | ({"track_name": result.track_names[index]} if result.track_names else {})
            )
    else:
        entries.append(
            {
                "file": "",
                "wave": "",
                "status": code,
                "create_time": int(job.created_at),
                "env": "tritone",
                "prompt": "",
                "lyrics": "",
                "metas": {},
                "progress": fraction,
                "stage": stage,
                "progress_text": text,
                "error": job.error if code == 2 else None,
            }
        )
    return {
        "task_id": job.public_id,
        "status": code,
        "result": json.dumps(entries, ensure_ascii=False),
        "progress_text": text,
        "error": job.error,
    }


def unknown_task_entry(task_id: str) -> dict[str, Any]:
    """An id this caller has no task under: answered as upstream does (still status 0, empty result)."""
    return {"task_id": task_id, "status": 0, "result": "[]", "progress_text": "", "error": None}
