"""``GET /health``: the service, its database and its Triton servers (no authentication)."""

from __future__ import annotations

import importlib.metadata
from typing import Any

from fastapi import APIRouter
from sqlalchemy import text

from orchestrator.routers.deps import Ctx
from orchestrator.services.views import wrapped

router = APIRouter(tags=["health"])


def _version() -> str:
    try:
        return importlib.metadata.version("tritone")
    except importlib.metadata.PackageNotFoundError:
        return "0+unknown"


@router.get("/health")
async def health(ctx: Ctx) -> dict[str, Any]:
    try:
        async with ctx.sessions() as session:
            await session.execute(text("SELECT 1"))
        database = "ok"
    except Exception as exc:
        database = f"error: {type(exc).__name__}"
    servers = await ctx.gateway.health()
    return wrapped(
        {
            "status": "ok" if database == "ok" else "degraded",
            "service": "Tritone",
            "version": _version(),
            "database": database,
            "triton": [
                {"url": s.url, "healthy": s.healthy, "in_flight": s.in_flight, "error": s.last_error} for s in servers
            ],
            "workers": 0 if ctx.pool is None else ctx.settings.triton_concurrency,
        }
    )
