"""The FastAPI application: ``create_app(settings)`` builds it; its lifespan owns the database engine, the Triton
gateway, the webhook sender and the worker tasks, and stops them cleanly (running jobs go back to the queue).

Run it with ``uvicorn --factory orchestrator.app:create_app`` (settings from ``TRITONE_*``), or ``tritone serve``.
"""

from __future__ import annotations

import logging
import os
import socket
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from fastapi.staticfiles import StaticFiles
from starlette.exceptions import HTTPException as StarletteHTTPException

from orchestrator.bodylimit import BodyLimitMiddleware, SecurityHeadersMiddleware
from orchestrator.context import AppContext
from orchestrator.db import make_engine, make_sessionmaker
from orchestrator.errors import ApiError, error_body, validation_error
from orchestrator.migrations import run_migrations
from orchestrator.routers import (
    acestep,
    acestep_compat,
    auth,
    chat,
    clips,
    edits,
    events,
    files,
    health,
    library,
    ops,
    producer,
    site,
    song,
    stems,
)
from orchestrator.schemas.acestep import MusicGenerateCreate
from orchestrator.schemas.auth import LoginRequest
from orchestrator.schemas.song import SongCancel, SongCreate
from orchestrator.schemas.stems import StemsCreate
from orchestrator.services.auth import AuthService, check_open_auth
from orchestrator.services.callbacks import CallbackPayloads
from orchestrator.services.events import EventBus
from orchestrator.services.jobs import JobService
from orchestrator.services.producer_views import CALLBACK_FORMAT, ProducerViews
from orchestrator.services.queue import QueueInfo, WorkerPool
from orchestrator.services.storage import RetentionSweeper
from orchestrator.services.triton import StageGateway, TritonGateway
from orchestrator.services.webhooks import WebhookSender
from orchestrator.settings import Settings

logger = logging.getLogger(__name__)

WEB_STATIC = Path(__file__).resolve().parent / "web" / "static"
# Request models by path, so a 422 can quote the field's allowed values.
_BODY_MODELS: dict[str, type] = {
    "/v1/song/create": SongCreate,
    "/v1/song/cancel": SongCancel,
    "/auth/login": LoginRequest,
    "/v1/music/generate": MusicGenerateCreate,
    "/release_task": MusicGenerateCreate,
    "/v1/stems": StemsCreate,
}


def _worker_id() -> str:
    return f"{socket.gethostname()[:32]}:{os.getpid()}:{uuid.uuid4().hex[:8]}"


def create_app(settings: Settings | None = None, *, gateway: StageGateway | None = None) -> FastAPI:
    """The orchestrator. ``gateway`` replaces the Triton gateway (tests pass an in-process stage runner)."""
    settings = settings or Settings()
    check_open_auth(settings)  # TRITONE_AUTH=none only on loopback (or a loudly logged override)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        settings.data_dir.mkdir(parents=True, exist_ok=True)
        engine = make_engine(settings.resolved_database_url, pool_size=settings.database_pool_size)
        await run_migrations(engine)
        sessions = make_sessionmaker(engine)
        stage_gateway = gateway if gateway is not None else TritonGateway(settings)
        await stage_gateway.start()
        auth = AuthService(settings)
        payloads = CallbackPayloads(auth, settings)  # final callbacks carry the result (services/callbacks.py)
        payloads.register(CALLBACK_FORMAT, ProducerViews(auth, settings).callback)
        webhooks = WebhookSender(settings, sessions, payloads)  # durable outbox in the database
        await webhooks.start()
        bus = EventBus()
        queue_info = QueueInfo(settings, sessions)
        await queue_info.start()
        jobs = JobService(
            settings=settings,
            sessions=sessions,
            gateway=stage_gateway,
            bus=bus,
            webhooks=webhooks,
            queue_info=queue_info,
        )
        worker_id = _worker_id()
        pool: WorkerPool | None = None
        if settings.triton_concurrency > 0:
            pool = WorkerPool(
                settings=settings,
                sessions=sessions,
                run_job=lambda job: jobs.run(job, worker_id),
                worker_id=worker_id,
                on_change=queue_info.invalidate,
                gateway=stage_gateway,  # no claims while no Triton server is healthy
            )
            jobs.on_submitted = pool.wake
            pool.start()
        app.state.ctx = AppContext(
            settings=settings,
            engine=engine,
            sessions=sessions,
            auth=auth,
            gateway=stage_gateway,
            bus=bus,
            webhooks=webhooks,
            queue_info=queue_info,
            jobs=jobs,
            pool=pool,
            worker_id=worker_id,
        )
        logger.info(
            "orchestrator %s ready (database %s, triton %s)",
            worker_id,
            engine.url.render_as_string(hide_password=True),
            settings.triton_urls,
        )
        sweeper = RetentionSweeper(settings, sessions)  # job files deleted retention_s after a job ends
        sweeper.start()
        try:
            yield
        finally:
            await sweeper.stop()
            if pool is not None:
                await pool.stop(grace_s=settings.shutdown_grace_s)
            await webhooks.close()
            await queue_info.stop()
            await stage_gateway.close()
            await engine.dispose()
            logger.info("orchestrator %s stopped", worker_id)

    app = FastAPI(
        title="Tritone",
        version="0.1.0",
        description="Song generation: an LLM lyricist and ACE-Step, served by NVIDIA Triton.",
        lifespan=lifespan,
    )
    app.state.settings = settings

    app.add_middleware(
        BodyLimitMiddleware,  # counted as streamed; per route (orchestrator/bodylimit.py)
        json_limit=settings.json_body_max_bytes,
        upload_limit=2 * settings.upload_max_bytes + (1 << 20),  # two uploads + fields
        max_depth=settings.json_max_depth,
    )
    app.add_middleware(SecurityHeadersMiddleware)

    @app.exception_handler(ApiError)
    async def _api_error(request: Request, exc: ApiError) -> JSONResponse:
        return JSONResponse(error_body(exc.status, exc.message, exc.field), status_code=exc.status, headers=exc.headers)

    @app.exception_handler(RequestValidationError)
    async def _validation(request: Request, exc: RequestValidationError) -> JSONResponse:
        err = validation_error(list(exc.errors()), _BODY_MODELS.get(request.url.path))
        return JSONResponse(error_body(422, err.message, err.field), status_code=422)

    @app.exception_handler(StarletteHTTPException)
    async def _http(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        return JSONResponse(
            error_body(exc.status_code, str(exc.detail)), status_code=exc.status_code, headers=exc.headers
        )

    @app.exception_handler(Exception)
    async def _unexpected(request: Request, exc: Exception) -> JSONResponse:
        logger.exception("unhandled error on %s %s", request.method, request.url.path)
        return JSONResponse(error_body(500, f"internal error: {type(exc).__name__}"), status_code=500)

    for module in (
        health, auth, song, library, site, acestep, acestep_compat, chat, clips, edits, stems, events, files
    ):
        app.include_router(module.router)
    app.include_router(producer.router)  # its routes answer in the seed's envelope, errors too
    ops.install(app)  # request ids, /metrics, database outages as 503 (before the page's catch-all mount)
    if WEB_STATIC.is_dir():
        app.mount("/", StaticFiles(directory=WEB_STATIC, html=True), name="web")
    return app
