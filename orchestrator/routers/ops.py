"""What operating the service needs on every route, installed by :func:`install` (``create_app`` calls it after its
own middleware and routers, before the web page's catch-all mount): request ids (``services/logcontext.py``), request
metrics and ``GET /metrics`` (``routers/metrics.py``), and database outages answered 503 with ``Retry-After``."""

from __future__ import annotations

import logging

import sqlalchemy.exc
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse

from orchestrator.errors import error_body
from orchestrator.routers import metrics
from orchestrator.services import logcontext
from orchestrator.services import metrics as service_metrics
from orchestrator.services.availability import is_database_outage

logger = logging.getLogger(__name__)

RETRY_AFTER_S = 5


async def _database_outage(request: Request, exc: Exception) -> JSONResponse:
    if not is_database_outage(exc):
        logger.exception("unhandled error on %s %s", request.method, request.url.path, exc_info=exc)
        return JSONResponse(error_body(500, f"internal error: {type(exc).__name__}"), status_code=500)
    service_metrics.DATABASE_ERRORS.labels(where="request").inc()
    logger.warning("%s %s: the database is unreachable (%r)", request.method, request.url.path, exc)
    message = f"the database is unavailable; retry in {RETRY_AFTER_S} s"
    return JSONResponse(error_body(503, message), status_code=503, headers={"Retry-After": str(RETRY_AFTER_S)})


def install(app: FastAPI) -> None:
    logcontext.install()
    # Handlers for these classes run inside the app (a plain 503 response), not in the outermost error middleware.
    app.add_exception_handler(sqlalchemy.exc.SQLAlchemyError, _database_outage)
    app.add_exception_handler(OSError, _database_outage)  # ConnectionRefusedError & co. (asyncpg connects)
    metrics.instrument(app)
    app.add_middleware(logcontext.RequestIdMiddleware)
    app.include_router(metrics.router)
