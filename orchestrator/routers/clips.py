"""The clip library: ``GET /v1/clips`` (the caller's, newest first, by cursor), ``GET``/``DELETE /v1/clips/{id}``,
``POST /v1/clips`` (a multipart ``file`` becomes a clip) and ``GET /v1/clips/{id}/files/{name}`` (signed links or
the owner's credentials). Another user's clip id is a 404, like one that never existed. Logic:
``services/clips.py``."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, File, Form, Query, UploadFile
from fastapi.responses import FileResponse

from orchestrator import clip_store
from orchestrator.errors import ApiError
from orchestrator.routers.deps import Ctx, User
from orchestrator.routers.files import Credentials, file_owner, media_type
from orchestrator.schemas.clips import ClipDeleted, ClipPage, ClipPublic
from orchestrator.services import clips
from orchestrator.services.clip_views import clip_file_key, clip_public, served_files

router = APIRouter(tags=["clips"])


@router.get("/v1/clips", response_model=ClipPage)
async def list_clips(
    ctx: Ctx,
    user: User,
    limit: Annotated[int, Query(ge=1, le=100, description="clips per page")] = 20,
    cursor: Annotated[str | None, Query(max_length=64, description="next_cursor of the previous page")] = None,
) -> ClipPage:
    rows, total, next_cursor = await clips.list_clips(ctx.sessions, owner=user, limit=limit, cursor=cursor)
    return ClipPage(items=[clip_public(ctx.auth, row) for row in rows], total=total, limit=limit,
                    next_cursor=next_cursor)


@router.post("/v1/clips", response_model=ClipPublic, status_code=201, responses={413: {}, 422: {}, 507: {}})
async def upload_clip(
    ctx: Ctx,
    user: User,
    file: Annotated[UploadFile, File(description="the audio: WAV, FLAC, OGG, MP3 or AIFF")],
    title: Annotated[str | None, Form(max_length=200)] = None,
    lyrics: Annotated[str | None, Form(max_length=10000)] = None,
    caption: Annotated[str | None, Form(max_length=2000)] = None,
) -> ClipPublic:
    limit = ctx.settings.upload_max_bytes
    data = await file.read(limit + 1)
    if len(data) > limit:
        raise ApiError(413, f"file: the upload is larger than the limit of {limit} bytes", field="file")
    clip, _ = await clips.store_upload(
        ctx.settings, ctx.sessions, owner=user, data=data, title=title, lyrics=lyrics, caption=caption,
        quota=ctx.jobs.quota,
    )
    return clip_public(ctx.auth, clip)


@router.get("/v1/clips/{clip_id}", response_model=ClipPublic, responses={404: {}})
async def get_clip(clip_id: str, ctx: Ctx, user: User) -> ClipPublic:
    return clip_public(ctx.auth, await clips.get_clip(ctx.sessions, owner=user, clip_id=clip_id))


@router.delete("/v1/clips/{clip_id}", response_model=ClipDeleted, responses={404: {}})
async def delete_clip(clip_id: str, ctx: Ctx, user: User) -> ClipDeleted:
    removed = await clips.delete_clip(ctx.settings, ctx.sessions, owner=user, clip_id=clip_id)
    return ClipDeleted(id=clip_id.lower(), files_removed=removed)


@router.get("/v1/clips/{clip_id}/files/{name}", response_class=FileResponse, responses={403: {}, 404: {}})
async def get_clip_file(clip_id: str, name: str, ctx: Ctx, creds: Credentials) -> FileResponse:
    if not clips.is_clip_id(clip_id):
        raise clips.ClipNotFoundError(clip_id)
    owner = file_owner(ctx, creds, path_key=clip_file_key(clip_id, name), scope_id=clip_id)
    async with ctx.sessions() as session:
        clip = await clip_store.get_clip(session=session, public_id=clip_id, owner=owner)
    if clip is None or name not in served_files(clip):
        raise ApiError(404, f"no such file: clip {clip_id}, {name}", field="path")
    path = clips.clip_paths(ctx.settings, clip).directory / name
    if not path.is_file():
        raise ApiError(404, f"the file {name} of clip {clip_id} is gone from the data directory", field="path")
    return FileResponse(path, media_type=media_type(path), filename=name)
