"""``POST /v1/stems``: split a song into stems — an uploaded ``file`` (multipart, with the fields as form fields) or
``job_id`` + ``item`` (JSON or form), one of your own finished results. The job is followed like every job:
``GET /v1/jobs/{job_id}`` (its ``result`` lists the stems and the zip), ``GET /v1/jobs/{job_id}/events``,
``POST /v1/jobs/{job_id}/cancel``, webhooks to ``callback_url``."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request
from pydantic import ValidationError

from orchestrator.errors import ApiError, validation_error
from orchestrator.routers.bodies import body_openapi, read_body
from orchestrator.routers.deps import Ctx, User, error_responses
from orchestrator.schemas.stems import StemsCreate, StemsCreated
from orchestrator.services.jobs.stems import ClipSource, ItemSource, StemsSource, UploadSource

router = APIRouter(tags=["stems"])

_ERRORS = error_responses(
    (401, "not authenticated"),
    (404, "job_id: no such job of yours"),
    (413, "upload too large"),
    (415, "unsupported content type"),
    (422, "a field is invalid (the error names it): stems, file, job_id, item, ..."),
    (429, "job queue full (see Retry-After)"),
    (503, "no separator is served"),
)


def _openapi() -> dict[str, Any]:
    file = "the song (WAV, FLAC, OGG, MP3, AIFF; at most 600 s)"
    return body_openapi(StemsCreate, {"file": file}, required=True, urlencoded=False)


@router.post("/v1/stems", response_model=StemsCreated, status_code=202, responses=_ERRORS, openapi_extra=_openapi())
async def create_stems(request: Request, ctx: Ctx, user: User) -> StemsCreated:
    raw, uploads = await read_body(request, ctx, upload_fields={"file": "file"}, max_files=1)
    try:
        body = StemsCreate.model_validate(raw)
    except ValidationError as exc:
        raise validation_error(exc.errors(), StemsCreate) from None
    upload = uploads.get("file")
    if sum((upload is not None, body.job_id is not None, body.clip_id is not None)) > 1:
        raise ApiError(422, "file: send one source (a file, a clip_id or a job_id + item), not both", field="file")
    source: StemsSource
    if upload is not None:
        source = UploadSource(upload.data, upload.filename)
    elif body.job_id is not None:
        source = ItemSource(body.job_id, body.item)
    elif body.clip_id is not None:
        source = ClipSource(body.clip_id)
    else:
        raise ApiError(422, "file: upload the song as 'file' (multipart), or name clip_id or job_id (+ item)",
                       field="file")
    job = await ctx.jobs.submit_stems(
        owner=user, source=source, stems=body.stems, method=body.method, callback_url=body.callback_url,
        tracks=body.tracks, steps=body.inference_steps,
    )
    return StemsCreated(
        job_id=job.public_id,
        queue_position=await ctx.queue_info.position(job.public_id),
        stems=int((job.params or {}).get("stems", body.stems)),
        status_url=f"/v1/jobs/{job.public_id}",
        events_url=f"/v1/jobs/{job.public_id}/events",
    )
