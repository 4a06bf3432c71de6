"""How a Producer task (a job submitted through ``/producer/audios``) is shown: the seed's ``data[]`` items, the stems
item, a failed task's error, and the error envelope (seed 002).

A task is one job; its ``params["producer"]`` holds what the Producer request said that the job itself does not
(the model name, the title, the prompt shown as ``sound``, the action, the request's base URL for absolute links).
Item ids are clip ids (``services/clips.py``), known from submission on, so a client can chain an edit on an id as
soon as the task succeeds.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

from orchestrator.db import Job
from orchestrator.errors import ApiError
from orchestrator.schemas.producer import ErrorCode, ProducerItem, ProducerStemsItem
from orchestrator.services import views
from orchestrator.services.acestep_views import job_progress
from orchestrator.services.auth import AuthService
from orchestrator.services.clips import job_item_clip_id
from orchestrator.settings import Settings

CALLBACK_FORMAT = "producer"  # jobs' params["callback_format"]: their callback is the Producer answer
_TIMING = {"lrc", "aligned_lyrics", "alignment_score"}
_STATES = {"succeeded": "succeeded", "failed": "failed", "cancelled": "cancelled"}
_CODES: dict[int, ErrorCode] = {401: "invalid_token", 403: "invalid_token", 404: "not_found", 429: "too_many_requests"}


def error_code(status: int) -> ErrorCode:
    """The seed's code for an HTTP status: 4xx without a code of its own → ``token_mismatched`` (the seed's "missing or
    invalid parameters"); 5xx → ``api_error``."""
    if status >= 500:
        return "api_error"
    return _CODES.get(status, "token_mismatched")


def error_body(trace_id: str, code: ErrorCode, message: str, task_id: str | None = None) -> dict[str, Any]:
    body: dict[str, Any] = {"success": False, "error": {"code": code, "message": message}, "trace_id": trace_id}
    if task_id is not None:
        body["task_id"] = task_id
    return body


def status_of(exc: ApiError) -> int:
    """The HTTP status a Producer answer uses for ``exc``: the seed has no 422 — a client's mistake is a 400."""
    return 400 if exc.status == 422 else exc.status


def _iso(timestamp: float) -> str:
    return dt.datetime.fromtimestamp(timestamp, tz=dt.UTC).isoformat().replace("+00:00", "Z")


def _seed_shape(item: ProducerItem) -> dict[str, Any]:
    """The seed's keys; the lyric timing keys only when the item has timing."""
    timed = item.lrc is not None or item.aligned_lyrics is not None
    return item.model_dump(exclude=None if timed else _TIMING)


def _number(value: Any) -> str | None:
    return None if value is None else str(value)


class ProducerViews:
    def __init__(self, auth: AuthService, settings: Settings) -> None:
        self._auth = auth
        self._settings = settings

    def _link(self, job: Job, name: str | None) -> str | None:
        if not name:
            return None
        link = views.file_url(self._auth, job, name)
        base = self._settings.public_url or ((job.params or {}).get("producer") or {}).get("base_url")
        return f"{base.rstrip('/')}{link}" if base else link

    def progress(self, job: Job) -> str:
        fraction, _, _ = job_progress(job)
        return f"{round(fraction * 100)}%"

    def state(self, job: Job) -> str:
        return _STATES.get(job.status, "running")

    def items(self, job: Job) -> list[dict[str, Any]]:
        """The task's ``data``: one entry per song (or the stems entry); placeholders while it runs."""
        if job.kind == "stems":
            return [self._stems_item(job)]
        params, result = job.params or {}, job.result or {}
        producer = params.get("producer") or {}
        cover = result.get("cover")
        common: dict[str, Any] = {
            "title": producer.get("title") or result.get("title") or job.title or "Untitled",
            "lyric": result.get("lyrics") or job.lyrics or producer.get("lyric") or "",
            "video_url": None,
            "topic": None,
            "sound": producer.get("prompt") or "",
            "created_at": _iso(job.created_at),
            "model": producer.get("model") or "",
            "progress": self.progress(job),
            "state": self.state(job),
        }
        if job.status == "succeeded":
            shown = []
            for item in result.get("items", []):
                clip_id = item.get("clip_id")
                timing = views.item_timing(self._auth, job, item)
                entry = ProducerItem(
                    id=clip_id,
                    image_url=self._link(job, cover),
                    audio_url=self._link(job, item["file"]),
                    image_id=clip_id if cover else None,
                    seed=_number(item.get("seed")),
                    duration=_number(item.get("duration")),
                    lrc=timing.lrc,
                    aligned_lyrics=timing.aligned_lyrics,
                    alignment_score=timing.alignment_score,
                    **common,
                )
                shown.append(_seed_shape(entry))
            return shown
        seeds = params.get("seeds") or [None] * int(params.get("batch_size") or 1)
        return [
            ProducerItem(
                id=job_item_clip_id(job.public_id, index),  # the clip id the item will have
                image_url=None,
                audio_url=None,
                image_id=None,
                seed=_number(seed),
                duration=None,
                **common,
            ).model_dump(exclude=_TIMING)
            for index, seed in enumerate(seeds)
        ]

    def _stems_item(self, job: Job) -> dict[str, Any]:
        producer = (job.params or {}).get("producer") or {}
        result = job.result or {}
        return ProducerStemsItem(
            title=producer.get("title") or "",
            lyric="",
            stems_url=self._link(job, result.get("zip")) if job.status == "succeeded" else None,
            model=producer.get("model") or "",
            progress=self.progress(job),
            state=self.state(job),  # type: ignore[arg-type]
        ).model_dump()

    def answer(self, job: Job, trace_id: str) -> tuple[int, dict[str, Any]]:
        """``(HTTP status, body)`` of a task as it stands: the seed's answer, or its error shape when it failed."""
        if job.status == "failed":
            message = f"the task failed: {job.error or 'unknown error'}"
            return 500, error_body(trace_id, "api_error", message, task_id=job.public_id)
        return 200, {"success": True, "task_id": job.public_id, "trace_id": trace_id, "data": self.items(job)}

    async def callback(self, job: Job) -> dict[str, Any]:
        """The body POSTed to a Producer task's ``callback_url`` when it ends (the webhook adds its envelope keys)."""
        trace_id = str(((job.params or {}).get("producer") or {}).get("trace_id") or job.public_id)
        return self.answer(job, trace_id)[1]
