"""The ACE-Step 1.5 API (seed 003) and upstream's current names for it.

- ``POST /v1/music/generate`` → ``{job_id, status, queue_position}``; ``GET /v1/jobs/{job_id}`` (the page's shapes);
- ``POST /release_task`` → ``{data: {task_id, status, queue_position}, code, error, timestamp, extra}`` and
  ``POST /query_result`` (``task_id_list``) — upstream's renamed endpoints, in its response wrapper;
- ``GET /v1/stats``; the models, upstream's LM routes and seed 001's call are in ``acestep_compat.py``, the chat
  route in ``chat.py``.

Credentials: a header, or upstream's ``ai_token`` body field (``MaybeUser`` + ``body_user``).

``/v1/music/generate`` and ``/release_task`` take JSON, form-urlencoded or multipart bodies (``src_audio`` /
``reference_audio`` uploads, also under upstream's ``ctx_audio`` / ``ref_audio``).
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request
from pydantic import ValidationError

from orchestrator import store
from orchestrator.errors import ApiError, validated, validation_error
from orchestrator.routers.bodies import body_openapi, read_body
from orchestrator.routers.deps import Ctx, MaybeUser, User, body_user, error_responses, fields_body
from orchestrator.schemas.acestep import (
    JobCancelled,
    JobCreated,
    JobPublic,
    MusicGenerateCreate,
    QueryResultRequest,
)
from orchestrator.services import acestep_views, views

router = APIRouter(tags=["ace-step"])

_UPLOAD_FIELDS = {
    "src_audio": "src_audio",
    "ctx_audio": "src_audio",
    "reference_audio": "reference_audio",
    "ref_audio": "reference_audio",
}
_ERRORS = error_responses(
    (401, "not authenticated"),
    (404, "unknown job id"),
    (413, "upload too large"),
    (415, "unsupported content type"),
    (422, "a field is invalid (the error names it)"),
    (429, "job queue full (see Retry-After)"),
)


def _generate_openapi() -> dict[str, Any]:
    return body_openapi(
        MusicGenerateCreate,
        {"src_audio": "source audio (cover/repaint/...)", "reference_audio": "reference audio (style)"},
        required=False,
        urlencoded=True,
    )


async def parse_generate(request: Request, ctx: Ctx) -> tuple[MusicGenerateCreate, dict[str, bytes], dict[str, Any]]:
    """The body (JSON, form or multipart) as the request model, its uploads, and the raw fields (``ai_token``)."""
    raw, files = await read_body(request, ctx, upload_fields=_UPLOAD_FIELDS)
    uploads = {name: upload.data for name, upload in files.items()}
    try:
        return MusicGenerateCreate.model_validate(raw), uploads, raw
    except ValidationError as exc:
        if raw.get("ai_token"):
            body_user(ctx, None, raw)  # a bad credential answers 401 before the body's 422
        raise validation_error(exc.errors(), MusicGenerateCreate) from None


async def _submit(request: Request, ctx: Ctx, user: str | None) -> tuple[str, int]:
    body, uploads, raw = await parse_generate(request, ctx)
    owner = body_user(ctx, user, raw)
    job = await ctx.jobs.submit_music(owner=owner, body=body, uploads=uploads)
    return job.public_id, await ctx.queue_info.position(job.public_id)


@router.post("/v1/music/generate", response_model=JobCreated, responses=_ERRORS, openapi_extra=_generate_openapi())
async def generate(request: Request, ctx: Ctx, user: MaybeUser) -> JobCreated:
    job_id, position = await _submit(request, ctx, user)
    return JobCreated(job_id=job_id, queue_position=position)


@router.post("/release_task", responses=_ERRORS, openapi_extra=_generate_openapi())
async def release_task(request: Request, ctx: Ctx, user: MaybeUser) -> dict[str, Any]:
    """Upstream's submission; credentials also as its ``ai_token`` body field."""
    job_id, position = await _submit(request, ctx, user)
    return views.wrapped({"task_id": job_id, "status": "queued", "queue_position": position})


@router.get("/v1/jobs/{job_id}", response_model=JobPublic, responses=_ERRORS)
async def get_job(job_id: str, ctx: Ctx, user: User) -> JobPublic:
    async with ctx.sessions() as session:
        job = await store.get_job(session=session, public_id=job_id, owner=user)
    if job is None:
        raise ApiError(404, f"unknown job_id {job_id!r}", field="job_id")
    return await acestep_views.job_public(job, queue_info=ctx.queue_info, auth=ctx.auth)


@router.post("/v1/jobs/{job_id}/cancel", response_model=JobCancelled, responses=_ERRORS)
async def cancel_job(job_id: str, ctx: Ctx, user: User) -> JobCancelled:
    job = await ctx.jobs.cancel(owner=user, public_id=job_id)
    if job is None:
        raise ApiError(404, f"unknown job_id {job_id!r}", field="job_id")
    if ctx.pool is not None:
        ctx.pool.cancel_local(job.id)
    return JobCancelled(job_id=job.public_id, status=job.status)


_QUERY_OPENAPI = {
    "requestBody": {
        "required": True,
        "content": {
            "application/json": {"schema": QueryResultRequest.model_json_schema()},
            "application/x-www-form-urlencoded": {"schema": QueryResultRequest.model_json_schema()},
        },
    }
}


@router.post("/query_result", responses=_ERRORS, openapi_extra=_QUERY_OPENAPI)
async def query_result(request: Request, ctx: Ctx, user: MaybeUser) -> dict[str, Any]:
    """Batch status of tasks (``task_id_list``: a list, or a JSON array string as upstream sends it). An id the caller
    has no task under is answered as upstream does: status 0, result ``[]``."""
    raw = await fields_body(request, max_fields=16, holding="task_id_list")
    owner = body_user(ctx, user, raw)
    body = validated(QueryResultRequest, raw)
    async with ctx.sessions() as session:
        jobs = await store.get_jobs(session=session, public_ids=body.task_id_list, owner=owner)
    by_id = {job.public_id: job for job in jobs}
    return views.wrapped(
        [
            acestep_views.query_result_entry(by_id[t], ctx.auth) if t in by_id else acestep_views.unknown_task_entry(t)
            for t in body.task_id_list
        ]
    )


@router.get("/v1/stats", responses=_ERRORS)
async def stats(ctx: Ctx, user: User) -> dict[str, Any]:
    # The caller's own jobs; everyone's for TRITONE_ADMIN_USERS (one tenant must not learn another's load).
    admin = user in ctx.settings.admin_users
    async with ctx.sessions() as session:
        counts = await store.count_by_status(session=session, owner=None if admin else user)
    return views.wrapped(
        {
            "scope": "global" if admin else "user",
            "user_queue_max": ctx.settings.user_queue_max,
            "jobs": {
                "total": sum(counts.values()),
                **{s: counts.get(s, 0) for s in ("queued", "running", "succeeded", "failed", "cancelled")},
            },
            "queue_size": counts.get("queued", 0),
            "queue_maxsize": ctx.settings.queue_max,
            "avg_job_seconds": round(await ctx.queue_info.job_seconds("music"), 3),
            "stage_seconds": {k: round(v, 3) for k, v in (await ctx.queue_info.stage_means()).items()},
        }
    )
