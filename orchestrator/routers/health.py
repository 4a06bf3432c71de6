"""``GET /health``: the service, its database and its Triton servers (no authentication); ``"status": "degraded"``
while the database is unreachable or no Triton server is healthy.

``GET /ready``: the readiness probe for a load balancer or Kubernetes — 200 when this process can take work (the
database answers, a Triton server is healthy, not shutting down), else 503 with ``Retry-After`` and the reasons (no
internal addresses).
"""

from __future__ import annotations

import asyncio
import importlib.metadata
from typing import Annotated, Any

from fastapi import APIRouter, Depends
from fastapi.responses import JSONResponse
from fastapi.security import HTTPAuthorizationCredentials
from sqlalchemy import text

from orchestrator.errors import ApiError
from orchestrator.routers.deps import Ctx, api_key_scheme, bearer_scheme, identify_optional
from orchestrator.services.availability import gateway_serving
from orchestrator.services.views import wrapped

_PROBE_TIMEOUT_S = 2.0

router = APIRouter(tags=["health"])


def _caller(
    ctx: Ctx,
    bearer: Annotated[HTTPAuthorizationCredentials | None, Depends(bearer_scheme)],
    api_key: Annotated[str | None, Depends(api_key_scheme)],
) -> str | None:
    """Who asks /health: full details for a valid credential; a missing or bad one sees the minimal answer."""
    try:
        return identify_optional(ctx, bearer, api_key)
    except ApiError:
        return None


Caller = Annotated[str | None, Depends(_caller)]


def _version() -> str:
    try:
        return importlib.metadata.version("tritone")
    except importlib.metadata.PackageNotFoundError:
        return "0+unknown"


@router.get("/health")
async def health(ctx: Ctx, caller: Caller) -> dict[str, Any]:
    database = await _database(ctx)
    servers = await ctx.gateway.health()
    serving = gateway_serving(ctx.gateway) and (not servers or any(s.healthy for s in servers))
    if caller is None:  # anonymous: the verdict only — no internal addresses, errors or sizes
        return wrapped(
            {
                "status": "ok" if database == "ok" and serving else "degraded",
                "service": "Tritone",
                "version": _version(),
                "database": "ok" if database == "ok" else "error",
                "triton": [{"healthy": s.healthy} for s in servers],
            }
        )
    return wrapped(
        {
            "status": "ok" if database == "ok" and serving else "degraded",
            "service": "Tritone",
            "version": _version(),
            "database": database,
            "triton": [
                {"url": s.url, "healthy": s.healthy, "in_flight": s.in_flight, "error": s.last_error} for s in servers
            ],
            "workers": 0 if ctx.pool is None else ctx.settings.triton_concurrency,
        }
    )


async def _database(ctx: Ctx) -> str:
    try:
        async with asyncio.timeout(_PROBE_TIMEOUT_S):
            async with ctx.sessions() as session:
                await session.execute(text("SELECT 1"))
        return "ok"
    except Exception as exc:
        return f"error: {type(exc).__name__}"


@router.get("/ready", responses={503: {"description": "not ready: the reasons are listed"}})
async def ready(ctx: Ctx) -> JSONResponse:
    reasons = []
    if ctx.pool is not None and ctx.pool.stopping:
        reasons.append("shutting down")
    if await _database(ctx) != "ok":
        reasons.append("the database is unreachable")
    if not gateway_serving(ctx.gateway):
        reasons.append("no Triton server is healthy")
    if reasons:
        return JSONResponse({"ready": False, "reasons": reasons}, status_code=503, headers={"Retry-After": "5"})
    return JSONResponse({"ready": True, "reasons": []})
