"""Generated files: ``GET /v1/files/{job_id}/{name}`` and upstream's ``GET /v1/audio?path=<job_id>/<name>``.

Access: an expiring signed link (``expires`` + ``sig``, as the status answers hand out), or the owner's credentials
(header, or ``?access_token=`` with a short-lived files token from ``POST /auth/url-token``). Only a job's result
files are served — never uploads or checkpoints — and names are checked before they touch the file system.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated

from fastapi import APIRouter, Depends, Query
from fastapi.responses import FileResponse
from fastapi.security import HTTPAuthorizationCredentials

from orchestrator import store
from orchestrator.errors import ApiError
from orchestrator.routers.deps import Ctx, api_key_scheme, bearer_scheme, identify
from orchestrator.services.jobs import job_dir
from orchestrator.services.storage import safe_file_name

router = APIRouter(tags=["files"])

_JOB_RE = re.compile(r"^[0-9a-f-]{36}$")
_MEDIA_TYPES = {
    ".flac": "audio/flac", ".wav": "audio/wav", ".mp3": "audio/mpeg", ".png": "image/png", ".ogg": "audio/ogg",
    ".aiff": "audio/aiff",
    ".lrc": "text/plain; charset=utf-8",  # lyric timing beside the audio (align_lyrics)
    ".zip": "application/zip",  # a stems job's stems in one file
}


@dataclass(frozen=True)
class FileCredentials:
    """What a file request may carry: a signed link (``expires`` + ``sig``), the owner's header credentials, or a
    short-lived files token in ``?access_token=``."""

    bearer: HTTPAuthorizationCredentials | None
    api_key: str | None
    expires: int | None
    sig: str | None
    access_token: str | None


def file_owner(ctx: Ctx, creds: FileCredentials, *, path_key: str, scope_id: str) -> str | None:
    """Who may read ``path_key``: the caller's user, or None when a valid signed link grants it to anyone
    (``scope_id``: the job or clip a ``?access_token=`` files token must name). Raises 401/403 otherwise."""
    bearer, api_key, expires, sig = creds.bearer, creds.api_key, creds.expires, creds.sig
    access_token = creds.access_token
    owner: str | None = None
    headers = bool(api_key) or (bearer is not None and bool(bearer.credentials)) or ctx.auth.open_user is not None
    if headers:  # the owner's credentials win over a link's expiry (upstream's clients keep the path they got)
        owner = identify(ctx, bearer, api_key)
    elif sig is not None or expires is not None:
        if sig is None or expires is None:
            raise ApiError(403, "a signed link needs both 'expires' and 'sig'", field="sig")
        ctx.auth.check_signature(path_key, expires, sig)
    else:
        if access_token and not api_key and (bearer is None or not bearer.credentials):
            owner = ctx.auth.user_from_url_token(access_token, purpose="files", job_id=scope_id)
        else:
            owner = identify(ctx, bearer, api_key)
    return owner


def media_type(path: Path) -> str:
    return _MEDIA_TYPES.get(path.suffix.lower(), "application/octet-stream")


async def _serve(ctx: Ctx, job_id: str, name: str, creds: FileCredentials) -> FileResponse:
    if not _JOB_RE.match(job_id) or not safe_file_name(name):
        raise ApiError(404, f"no such file: {job_id}/{name}", field="path")
    path_key = f"{job_id}/{name}"
    owner = file_owner(ctx, creds, path_key=path_key, scope_id=job_id)
    async with ctx.sessions() as session:
        job = await store.get_job(session=session, public_id=job_id, owner=owner)
    result = (job.result or {}) if job is not None else {}
    items = result.get("items", [])
    served = {item.get("file") for item in items} | {item.get("lrc_file") for item in items}
    served |= {result.get("cover"), result.get("zip")}
    served.discard(None)
    if job is None or name not in served:
        raise ApiError(404, f"no such file: {path_key}", field="path")
    path = job_dir(ctx.settings, job_id) / name
    if not path.is_file():
        raise ApiError(404, f"the file {path_key} is gone from the data directory", field="path")
    return FileResponse(path, media_type=media_type(path), filename=name)


Expires = Annotated[int | None, Query(ge=0, le=2**40, description="signed link expiry (unix seconds)")]
Sig = Annotated[str | None, Query(max_length=128, description="signed link signature")]
AccessToken = Annotated[str | None, Query(max_length=4096)]
Bearer = Annotated[HTTPAuthorizationCredentials | None, Depends(bearer_scheme)]
ApiKey = Annotated[str | None, Depends(api_key_scheme)]


def _credentials(
    bearer: Bearer, api_key: ApiKey, expires: Expires = None, sig: Sig = None, access_token: AccessToken = None
) -> FileCredentials:
    return FileCredentials(bearer, api_key, expires, sig, access_token)


Credentials = Annotated[FileCredentials, Depends(_credentials)]


@router.get("/v1/files/{job_id}/{name}", response_class=FileResponse, responses={403: {}, 404: {}})
async def get_file(job_id: str, name: str, ctx: Ctx, creds: Credentials) -> FileResponse:
    return await _serve(ctx, job_id, name, creds)


@router.get("/v1/audio", response_class=FileResponse, responses={403: {}, 404: {}})
async def get_audio(
    path: Annotated[str, Query(min_length=1, max_length=256, description="<job_id>/<file name>")],
    ctx: Ctx,
    creds: Credentials,
) -> FileResponse:
    job_id, _, name = path.strip("/").partition("/")
    return await _serve(ctx, job_id, name, creds)
