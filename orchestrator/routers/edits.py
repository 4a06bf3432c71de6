"""The edit actions (``services/jobs/edits.py``) on the service's own API:

- ``POST /v1/clips/{clip_id}/edits`` — ``{action, ...fields}`` on one of the caller's clips;
- ``POST /v1/edits`` — the same with the source in the body: ``source`` = a clip id or one of the caller's result
  paths (``<job id>/<file>``, as ``GET /v1/jobs/{id}`` hands them out).

Both answer like ``POST /v1/music/generate`` (``{job_id, status, queue_position}``); the job is an ACE-Step job
(``GET /v1/jobs/{job_id}``, its events and webhooks). Fields per action: ``orchestrator/schemas/edits.py``,
``docs/edits.md``.
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request

from orchestrator.errors import ApiError, validated
from orchestrator.routers.deps import Ctx, User, error_responses, json_object
from orchestrator.schemas.acestep import JobCreated
from orchestrator.schemas.edits import EDIT_ACTIONS, EDIT_MODELS, AnyEdit
from orchestrator.services.jobs.edits import EditSubmitter, resolve_source

router = APIRouter(tags=["edits"])

_ERRORS = error_responses(
    (401, "not authenticated"),
    (404, "unknown clip or result"),
    (422, "a field is invalid, or the model cannot do the action (the error names the field)"),
    (429, "job queue full (see Retry-After)"),
)
_OPENAPI = {
    "requestBody": {
        "required": True,
        "content": {
            "application/json": {
                "schema": {"oneOf": [m.model_json_schema() for m in EDIT_MODELS.values()]},
            }
        },
    }
}


def parse_edit(raw: dict[str, Any]) -> AnyEdit:
    """The action's own request model, validated; errors name the field (and the actions, for ``action``)."""
    action = raw.get("action")
    model = EDIT_MODELS.get(action) if isinstance(action, str) else None
    if model is None:
        raise ApiError(422, f"action: must be one of {', '.join(EDIT_ACTIONS)}, got {action!r}", field="action")
    return validated(model, raw)  # type: ignore[return-value]


async def _submit(ctx: Ctx, user: str, source_ref: str, raw: dict[str, Any], field: str) -> JobCreated:
    edit = parse_edit(raw)
    source = await resolve_source(ctx.jobs, owner=user, value=source_ref, field=field)
    job = await EditSubmitter(ctx.jobs).submit(owner=user, source=source, edit=edit)
    return JobCreated(job_id=job.public_id, queue_position=await ctx.queue_info.position(job.public_id))


@router.post("/v1/clips/{clip_id}/edits", response_model=JobCreated, responses=_ERRORS, openapi_extra=_OPENAPI)
async def edit_clip(clip_id: str, request: Request, ctx: Ctx, user: User) -> JobCreated:
    return await _submit(ctx, user, clip_id, await json_object(request, holding="an 'action'"), "clip_id")


@router.post("/v1/edits", response_model=JobCreated, responses=_ERRORS, openapi_extra=_OPENAPI)
async def edit(request: Request, ctx: Ctx, user: User) -> JobCreated:
    raw = await json_object(request, holding="an 'action'")
    source = raw.pop("source", None)
    if not isinstance(source, str) or not source.strip():
        raise ApiError(422, "source: required: a clip id or one of your result paths ('<job id>/<file>')",
                       field="source")
    return await _submit(ctx, user, source.strip(), raw, "source")
