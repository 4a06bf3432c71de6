"""Server-sent events: ``GET /v1/song/events?intent_id=…`` and ``GET /v1/jobs/{job_id}/events``.

Events: ``lyrics`` {text: the full text so far}, ``progress`` {stage, step, total}, ``status`` {status, stage},
then ``done`` (the final status) or ``failed`` {error}; the stream ends after the job ends. A new connection starts
with a ``status`` snapshot (and the lyrics so far); ``Last-Event-ID`` resumes after a given event instead. The event
log is in the database, so the stream works whichever orchestrator process runs the job.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from typing import Annotated, Any

from fastapi import APIRouter, Header, Query, Request
from sse_starlette.sse import EventSourceResponse

from orchestrator import store
from orchestrator.context import AppContext
from orchestrator.db import Job
from orchestrator.errors import ApiError
from orchestrator.routers.deps import Ctx, StreamUser
from orchestrator.services import acestep_views, views

router = APIRouter(tags=["events"])

_POLL_S = 1.0  # cross-process fallback: how often the stream re-reads the event log without a local wake-up


def _status_payload(job: Job, song: bool) -> dict[str, Any]:
    return {
        "status": views.song_phase(job) if song else job.status,
        "job_status": job.status,
        "stage": job.stage,
        "error": job.error,
    }


async def _final(ctx: AppContext, job: Job, song: bool) -> tuple[str, dict[str, Any]]:
    if job.status == "succeeded":
        if song:
            return "done", (await views.song_status(job, queue_info=ctx.queue_info, auth=ctx.auth)).model_dump()
        return "done", (await acestep_views.job_public(job, queue_info=ctx.queue_info, auth=ctx.auth)).model_dump()
    if job.status == "failed":
        return "failed", {"status": "failed", "error": job.error}
    return "status", _status_payload(job, song)


async def _stream(
    ctx: AppContext, request: Request, job: Job, song: bool, last_event_id: int | None
) -> AsyncIterator[dict[str, Any]]:
    after = last_event_id or 0
    if last_event_id is None:
        async with ctx.sessions() as session:
            after = await store.last_event_id(session=session, job_id=job.id)
        yield {"event": "status", "id": str(after), "data": json.dumps(_status_payload(job, song))}
        if job.lyrics:
            yield {"event": "lyrics", "id": str(after), "data": json.dumps({"text": job.lyrics})}
        if job.progress and job.progress.get("total"):
            yield {"event": "progress", "id": str(after), "data": json.dumps(job.progress)}
    while True:
        if job.status in ("succeeded", "failed", "cancelled"):
            kind, data = await _final(ctx, job, song)
            yield {"event": kind, "id": str(after), "data": json.dumps(data, default=str)}
            return
        if await request.is_disconnected():
            return
        async with ctx.sessions() as session:
            events = await store.list_events(session=session, job_id=job.id, after_id=after)
            fresh = await store.get_job_by_id(session=session, job_id=job.id)
        for event in events:
            after = event.id
            if event.kind in ("done", "failed"):
                continue  # sent once, with the full final payload, below
            data = dict(event.data)
            if event.kind == "status" and song:
                data = {**data, "job_status": data.get("status")}
                if fresh is not None:
                    data["status"] = views.song_phase(fresh)
            yield {"event": event.kind, "id": str(event.id), "data": json.dumps(data, default=str)}
        if fresh is None:
            return
        job = fresh
        if job.status not in ("succeeded", "failed", "cancelled") and not events:
            await ctx.bus.wait(job.id, _POLL_S)


async def _open(ctx: AppContext, user: str, public_id: str, song: bool) -> Job:
    async with ctx.sessions() as session:
        job = await store.get_job(session=session, public_id=public_id, owner=user)
    if job is None or (song and job.kind != "song"):
        name = "intent_id" if song else "job_id"
        raise ApiError(404, f"unknown {name} {public_id!r}", field=name)
    return job


LastEventId = Annotated[str | None, Header(alias="Last-Event-ID", max_length=32)]


def _last_id(value: str | None) -> int | None:
    if value is None or not value.strip():
        return None
    try:
        return max(0, int(value))
    except ValueError:
        raise ApiError(422, "Last-Event-ID: must be an integer event id", field="Last-Event-ID") from None


@router.get("/v1/song/events", response_class=EventSourceResponse, responses={401: {}, 404: {}})
async def song_events(
    request: Request,
    intent_id: Annotated[str, Query(min_length=1, max_length=64)],
    ctx: Ctx,
    user: StreamUser,
    last_event_id: LastEventId = None,
) -> EventSourceResponse:
    job = await _open(ctx, user, intent_id, song=True)
    return EventSourceResponse(_stream(ctx, request, job, True, _last_id(last_event_id)), ping=15)


@router.get("/v1/jobs/{job_id}/events", response_class=EventSourceResponse, responses={401: {}, 404: {}})
async def job_events(
    request: Request, job_id: str, ctx: Ctx, user: StreamUser, last_event_id: LastEventId = None
) -> EventSourceResponse:
    job = await _open(ctx, user, job_id, song=False)
    return EventSourceResponse(_stream(ctx, request, job, False, _last_id(last_event_id)), ping=15)
