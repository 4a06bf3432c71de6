"""Generated files: ``GET /v1/files/{job_id}/{name}`` and upstream's ``GET /v1/audio?path=<job_id>/<name>``.

Access: an expiring signed link (``expires`` + ``sig``, as the status answers hand out), or the owner's credentials
(header, or ``?access_token=`` for ``<audio src>``). Only a job's result files are served — never uploads or
checkpoints — and names are checked before they touch the file system.
"""

from __future__ import annotations

import re
from typing import Annotated

from fastapi import APIRouter, Depends, Query
from fastapi.responses import FileResponse
from fastapi.security import HTTPAuthorizationCredentials

from orchestrator import store
from orchestrator.errors import ApiError
from orchestrator.routers.deps import Ctx, api_key_scheme, bearer_scheme, identify
from orchestrator.services.jobs import job_dir

router = APIRouter(tags=["files"])

_NAME_RE = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}$")
_JOB_RE = re.compile(r"^[0-9a-f-]{36}$")
_MEDIA_TYPES = {".flac": "audio/flac", ".wav": "audio/wav", ".mp3": "audio/mpeg", ".png": "image/png"}


async def _serve(
    ctx: Ctx,
    job_id: str,
    name: str,
    expires: int | None,
    sig: str | None,
    bearer: HTTPAuthorizationCredentials | None,
    api_key: str | None,
    access_token: str | None,
) -> FileResponse:
    if not _JOB_RE.match(job_id) or not _NAME_RE.match(name) or ".." in name:
        raise ApiError(404, f"no such file: {job_id}/{name}", field="path")
    path_key = f"{job_id}/{name}"
    owner: str | None = None
    if sig is not None or expires is not None:
        if sig is None or expires is None:
            raise ApiError(403, "a signed link needs both 'expires' and 'sig'", field="sig")
        ctx.auth.check_signature(path_key, expires, sig)
    else:
        owner = identify(ctx, bearer, api_key, access_token)
    async with ctx.sessions() as session:
        job = await store.get_job(session=session, public_id=job_id, owner=owner)
    result = (job.result or {}) if job is not None else {}
    served = {item.get("file") for item in result.get("items", [])} | {result.get("cover")}
    if job is None or name not in served:
        raise ApiError(404, f"no such file: {path_key}", field="path")
    path = job_dir(ctx.settings, job_id) / name
    if not path.is_file():
        raise ApiError(404, f"the file {path_key} is gone from the data directory", field="path")
    suffix = path.suffix.lower()
    return FileResponse(path, media_type=_MEDIA_TYPES.get(suffix, "application/octet-stream"), filename=name)


Expires = Annotated[int | None, Query(ge=0, le=2**40, description="signed link expiry (unix seconds)")]
Sig = Annotated[str | None, Query(max_length=128, description="signed link signature")]
AccessToken = Annotated[str | None, Query(max_length=4096)]
Bearer = Annotated[HTTPAuthorizationCredentials | None, Depends(bearer_scheme)]
ApiKey = Annotated[str | None, Depends(api_key_scheme)]


@router.get("/v1/files/{job_id}/{name}", response_class=FileResponse, responses={403: {}, 404: {}})
async def get_file(
    job_id: str,
    name: str,
    ctx: Ctx,
    bearer: Bearer,
    api_key: ApiKey,
    expires: Expires = None,
    sig: Sig = None,
    access_token: AccessToken = None,
) -> FileResponse:
    return await _serve(ctx, job_id, name, expires, sig, bearer, api_key, access_token)


@router.get("/v1/audio", response_class=FileResponse, responses={403: {}, 404: {}})
async def get_audio(
    path: Annotated[str, Query(min_length=1, max_length=256, description="<job_id>/<file name>")],
    ctx: Ctx,
    bearer: Bearer,
    api_key: ApiKey,
    expires: Expires = None,
    sig: Sig = None,
    access_token: AccessToken = None,
) -> FileResponse:
    job_id, _, name = path.strip("/").partition("/")
    return await _serve(ctx, job_id, name, expires, sig, bearer, api_key, access_token)
