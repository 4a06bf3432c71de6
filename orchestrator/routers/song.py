"""The song API (seed 000): create, status, cancel. Answers use the page's envelope ``{code, data, error}``."""

from __future__ import annotations

from typing import Annotated, Any
from urllib.parse import quote

from fastapi import APIRouter, Query

from orchestrator import store
from orchestrator.errors import ApiError
from orchestrator.routers.deps import Ctx, User, error_responses
from orchestrator.schemas.common import envelope
from orchestrator.schemas.song import (
    NextStep,
    SongCancel,
    SongCreate,
    SongCreated,
    SongCreateResponse,
    SongStatusResponse,
)
from orchestrator.services import views

router = APIRouter(tags=["song"])

_ERRORS = error_responses(
    (401, "not logged in / invalid token"),
    (404, "unknown intent_id"),
    (422, "a field is invalid (the error names it)"),
    (429, "job queue full (see Retry-After)"),
    (503, "lyricist not enabled"),
)

IntentId = Annotated[str, Query(min_length=1, max_length=64, description="from POST /v1/song/create")]


@router.post("/v1/song/create", response_model=SongCreateResponse, responses=_ERRORS)
async def create_song(body: SongCreate, ctx: Ctx, user: User) -> dict[str, Any]:
    job = await ctx.jobs.submit_song(owner=user, body=body)
    created = SongCreated(
        intent_id=job.public_id,
        status="lyrics_pending",
        next_step=NextStep(
            url=f"/v1/song/status?intent_id={quote(job.public_id)}", poll_interval_sec=ctx.settings.poll_interval_sec
        ),
    )
    return envelope(created.model_dump())


@router.get("/v1/song/status", response_model=SongStatusResponse, responses=_ERRORS)
async def song_status(intent_id: IntentId, ctx: Ctx, user: User) -> dict[str, Any]:
    async with ctx.sessions() as session:
        job = await store.get_job(session=session, public_id=intent_id, owner=user)
    if job is None or job.kind != "song":
        raise ApiError(404, f"unknown intent_id {intent_id!r}", field="intent_id")
    status = await views.song_status(job, queue_info=ctx.queue_info, auth=ctx.auth)
    return envelope(status.model_dump())


@router.post("/v1/song/cancel", response_model=SongStatusResponse, responses=_ERRORS)
async def cancel_song(body: SongCancel, ctx: Ctx, user: User) -> dict[str, Any]:
    job = await ctx.jobs.cancel(owner=user, public_id=body.intent_id)
    if job is None or job.kind != "song":
        raise ApiError(404, f"unknown intent_id {body.intent_id!r}", field="intent_id")
    if ctx.pool is not None:
        ctx.pool.cancel_local(job.id)
    status = await views.song_status(job, queue_info=ctx.queue_info, auth=ctx.auth)
    return envelope(status.model_dump())
