"""The page's generated reference data (seed 000's sections): ``GET /v1/site`` (limits, performance, the request
fields table, error codes, the AI-integration prompt), ``POST /v1/site/examples`` (curl / Python / JavaScript for a
request body) and the operator's samples (``GET /v1/site/samples``). No authentication: nothing here is a user's."""

from __future__ import annotations

import re
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Request
from fastapi.responses import FileResponse
from pydantic import BaseModel, Field

from orchestrator import store
from orchestrator.errors import ApiError
from orchestrator.routers.deps import Ctx
from orchestrator.services import site
from orchestrator.services.site_examples import SSE_EVENTS, ai_prompt, code_examples
from orchestrator.services.views import wrapped

router = APIRouter(tags=["site"])

_SAMPLE_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._ -]{0,200}\.(flac|wav|mp3|ogg)$", re.IGNORECASE)


class ExamplesRequest(BaseModel):
    body: Annotated[dict[str, Any], Field(max_length=64, description="a POST /v1/song/create body")]
    auth: Literal["login", "api_key"] = "login"


def _base(request: Request) -> str:
    return str(request.base_url).rstrip("/")


@router.get("/v1/site")
async def site_data(request: Request, ctx: Ctx) -> dict[str, Any]:
    """Everything the page's reference sections show, from the live schema, settings and stats."""
    openapi = request.app.openapi()
    async with ctx.sessions() as session:
        counts = await store.count_by_status(session=session)
    queue = {s: counts.get(s, 0) for s in ("queued", "running")}  # queue figures only: no user's history
    means = await ctx.queue_info.stage_means()
    return wrapped(
        {
            "limits": site.limits(ctx.settings),
            "performance": site.performance(means, queue, await ctx.queue_info.job_seconds("song"), ctx.settings),
            "fields": site.request_fields(openapi),
            "statuses": site.song_statuses(openapi),
            "sse_events": list(SSE_EVENTS),
            "errors": site.error_codes(openapi, ctx.settings),
            "prompt": ai_prompt(openapi, ctx.settings, _base(request)),
            "samples": len(site.list_samples(ctx.settings.samples_dir)),
        }
    )


@router.post("/v1/site/examples")
async def examples(body: ExamplesRequest, request: Request) -> dict[str, Any]:
    """Code that makes the song ``body`` describes: log in (or an API key), create, poll, download."""
    return wrapped(code_examples(_base(request), body.body, auth=body.auth))


@router.get("/v1/site/samples")
async def samples(ctx: Ctx) -> dict[str, Any]:
    return wrapped({"samples": site.list_samples(ctx.settings.samples_dir)})


@router.get("/v1/site/samples/{name}", response_class=FileResponse)
async def sample_file(name: str, ctx: Ctx) -> FileResponse:
    folder = ctx.settings.samples_dir
    if folder is None or not _SAMPLE_NAME.match(name) or not (folder / name).is_file():
        raise ApiError(404, f"no sample named {name!r}", field="name")
    return FileResponse(folder / name)
