"""``GET /v1/song/list``: the caller's songs, newest first — the page's library (until a clip table exists, the
library is the caller's song jobs). Each entry is the song's status plus the request it was made from, so a page can
play, download and reuse its settings and seeds."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from fastapi import APIRouter, Query

from orchestrator import store
from orchestrator.routers.deps import Ctx, User
from orchestrator.schemas.common import envelope
from orchestrator.schemas.song import SongCreate
from orchestrator.services import views

router = APIRouter(tags=["song"])

_STATUSES = {"succeeded": ("succeeded",), "finished": ("succeeded", "failed", "cancelled"), "all": None}
# The request fields a page can put back into its form (everything the caller chose, nothing server-internal).
_REUSABLE = tuple(name for name in SongCreate.model_fields if name != "callback_url")


@router.get("/v1/song/list")
async def list_songs(
    ctx: Ctx,
    user: User,
    status: Annotated[Literal["succeeded", "finished", "all"], Query(description="which songs")] = "succeeded",
    limit: Annotated[int, Query(ge=1, le=100)] = 20,
    offset: Annotated[int, Query(ge=0)] = 0,
) -> dict[str, Any]:
    async with ctx.sessions() as session:
        jobs, total = await store.list_owned_jobs(
            session=session, owner=user, kind="song", statuses=_STATUSES[status], limit=limit, offset=offset
        )
    songs = []
    for job in jobs:
        entry = (await views.song_status(job, queue_info=ctx.queue_info, auth=ctx.auth)).model_dump()
        params = job.params or {}
        entry["request"] = {k: params[k] for k in _REUSABLE if params.get(k) is not None}
        entry["request"]["model"] = params.get("model") or (
            f"{params['family']}:{params['version_set']}" if params.get("version_set") else params.get("family")
        )
        songs.append(entry)
    return envelope({"songs": songs, "total": total, "limit": limit, "offset": offset})
