"""``GET /metrics``: Prometheus text format — HTTP requests by route and status (``prometheus-fastapi-instrumentator``),
the service's own series (:mod:`orchestrator.services.metrics`) and the process's (CPU, memory, GC).

With ``TRITONE_METRICS_TOKEN`` set, a scrape must send ``Authorization: Bearer <token>`` (Prometheus:
``authorization: {credentials: …}``); without it the endpoint is open — keep it on the internal network.
"""

from __future__ import annotations

import hmac

from fastapi import APIRouter, FastAPI, Request, Response
from prometheus_client import CONTENT_TYPE_LATEST, REGISTRY, CollectorRegistry, generate_latest
from prometheus_fastapi_instrumentator import Instrumentator

from orchestrator.errors import ApiError

router = APIRouter(tags=["health"])


def instrument(app: FastAPI) -> None:
    """Count ``app``'s requests by route template and exact status (call before the app starts). Each app gets its own
    registry for these, so that several apps in one process (tests) do not collide."""
    registry = CollectorRegistry(auto_describe=True)
    Instrumentator(
        should_group_status_codes=False,
        should_ignore_untemplated=False,
        should_group_untemplated=True,
        excluded_handlers=["/metrics"],
        registry=registry,
    ).instrument(app)
    app.state.http_metrics = registry


@router.get("/metrics", include_in_schema=False)
async def metrics(request: Request) -> Response:
    token = request.app.state.settings.metrics_token
    if token:
        given = request.headers.get("authorization", "")
        if not hmac.compare_digest(given.encode(), f"Bearer {token}".encode()):
            message = "/metrics needs Authorization: Bearer <TRITONE_METRICS_TOKEN>"
            raise ApiError(401, message, headers={"WWW-Authenticate": "Bearer"})
    body = generate_latest(REGISTRY)
    http: CollectorRegistry | None = getattr(request.app.state, "http_metrics", None)
    if http is not None:
        body += generate_latest(http)
    return Response(body, media_type=CONTENT_TYPE_LATEST)
