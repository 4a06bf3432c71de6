"""The Producer API (seed 002): ``POST /producer/audios``, ``POST /producer/upload``, ``POST /producer/tasks``.
Its routes answer in the seed's envelope — also for errors, which :class:`ProducerRoute`
renders as ``{success: false, error: {code, message}, trace_id}`` (a validation error is a 400 naming the field,
never the 422 of the other APIs)."""

from __future__ import annotations

import logging
import uuid
from collections.abc import Callable, Coroutine
from typing import Any

from fastapi import APIRouter, Request, Response
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from fastapi.routing import APIRoute
from starlette.exceptions import HTTPException as StarletteHTTPException

from orchestrator.errors import ApiError, validated, validation_error
from orchestrator.routers.bodies import read_body
from orchestrator.routers.deps import Ctx, User
from orchestrator.routers.ops import RETRY_AFTER_S
from orchestrator.schemas.producer import (
    ProducerAccepted,
    ProducerAnswer,
    ProducerAudioCreate,
    ProducerBatch,
    ProducerError,
    ProducerTaskQuery,
    ProducerUploaded,
    ProducerUploadUrl,
)
from orchestrator.services import logcontext
from orchestrator.services.availability import is_database_outage
from orchestrator.services.clip_views import clip_file_url
from orchestrator.services.producer import ProducerError as CodedError
from orchestrator.services.producer import ProducerService
from orchestrator.services.producer_views import ProducerViews, error_body, error_code, status_of

logger = logging.getLogger(__name__)

_BODY_MODELS: dict[str, type] = {
    "/producer/audios": ProducerAudioCreate,
    "/producer/tasks": ProducerTaskQuery,
    "/producer/upload": ProducerUploadUrl,
}


def trace_id() -> str:
    """The request's id (``X-Request-ID``, in every log line of the request) when it is one, else a new uuid."""
    current = logcontext.REQUEST_ID.get()
    return current if current not in ("", "-") else str(uuid.uuid4())


class ProducerRoute(APIRoute):
    """Every failure of a Producer route in the seed's error shape, with its codes."""

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        handler = super().get_route_handler()

        async def route(request: Request) -> Response:
            try:
                return await handler(request)
            except RequestValidationError as exc:
                err = validation_error(list(exc.errors()), _BODY_MODELS.get(request.url.path))
                return JSONResponse(error_body(trace_id(), "token_mismatched", err.message), status_code=400)
            except ApiError as exc:
                status = status_of(exc)
                code = exc.code if isinstance(exc, CodedError) else error_code(status)
                return JSONResponse(error_body(trace_id(), code, exc.message), status_code=status, headers=exc.headers)
            except StarletteHTTPException as exc:  # e.g. a body that is not UTF-8: FastAPI's 400
                status = 400 if exc.status_code == 422 else exc.status_code
                body = error_body(trace_id(), error_code(status), f"body: {exc.detail}")
                return JSONResponse(body, status_code=status, headers=exc.headers)
            except Exception as exc:
                if is_database_outage(exc):
                    headers = {"Retry-After": str(RETRY_AFTER_S)}
                    message = f"the database is unavailable; retry in {RETRY_AFTER_S} s"
                    return JSONResponse(error_body(trace_id(), "api_error", message), status_code=503, headers=headers)
                logger.exception("producer %s failed", request.url.path)
                message = f"internal error: {type(exc).__name__}"
                return JSONResponse(error_body(trace_id(), "api_error", message), status_code=500)

        return route


router = APIRouter(prefix="/producer", tags=["producer"], route_class=ProducerRoute)
_ERRORS: dict[int | str, dict[str, Any]] = {
    code: {"model": ProducerError, "description": text}
    for code, text in (
        (400, "token_mismatched: a field is missing or invalid (the message names it); api_not_implemented"),
        (401, "invalid_token: no or an unknown API key"),
        (404, "not_found: no such task or audio of yours"),
        (429, "too_many_requests (see Retry-After)"),
        (500, "api_error: the task failed, or the server did"),
    )
}


def _service(ctx: Ctx) -> ProducerService:
    return ProducerService(
        jobs=ctx.jobs,
        sessions=ctx.sessions,
        gateway=ctx.gateway,
        bus=ctx.bus,
        webhooks=ctx.webhooks,
        settings=ctx.settings,
    )


def _base_url(ctx: Ctx, request: Request) -> str:
    return ctx.settings.public_url or str(request.base_url).rstrip("/")


@router.post(
    "/audios",
    response_model=ProducerAnswer | ProducerAccepted,
    responses=_ERRORS,
    summary="generate / cover / extend / upload_* / replace_section / swap_* / variation / stems",
)
async def create_audios(body: ProducerAudioCreate, request: Request, ctx: Ctx, user: User) -> Response:
    service = _service(ctx)
    trace = trace_id()
    job = await service.create(owner=user, body=body, base_url=_base_url(ctx, request), trace_id=trace)
    if body.callback_url:
        return JSONResponse({"task_id": job.public_id})
    job = await service.wait(job, ctx.settings.producer_wait_s)
    status, answer = ProducerViews(ctx.auth, ctx.settings).answer(job, trace)
    return JSONResponse(answer, status_code=status)


@router.post("/upload", response_model=ProducerUploaded, responses=_ERRORS)
async def upload(request: Request, ctx: Ctx, user: User) -> Response:
    """A multipart ``file``, or ``{"audio_url": …}`` (JSON or a form): the song becomes a clip whose ``audio_id``
    the ``upload_*`` actions (and every other) take."""
    fields, files = await read_body(request, ctx, upload_fields={"file": "file"}, max_files=1)
    url = validated(ProducerUploadUrl, fields).audio_url if fields or not files else None
    if url is not None and files:
        raise ApiError(400, "audio_url: send a file or an audio_url, not both", field="audio_url")
    clip = await _service(ctx).upload(owner=user, data=files["file"].data if files else None, audio_url=url)
    data = {
        "audio_id": clip.public_id,
        "title": clip.title,
        "duration": str(clip.duration),
        "audio_url": f"{_base_url(ctx, request)}{clip_file_url(ctx.auth, clip, clip.audio_file)}",
    }
    return JSONResponse({"success": True, "task_id": str(uuid.uuid4()), "trace_id": trace_id(), "data": data})


@router.post("/tasks", response_model=ProducerAnswer | ProducerBatch, responses=_ERRORS)
async def query_tasks(query: ProducerTaskQuery, ctx: Ctx, user: User) -> Response:
    trace = trace_id()
    found = await _service(ctx).tasks(owner=user, query=query)
    shown = ProducerViews(ctx.auth, ctx.settings)
    answers = []
    for job in found:
        if isinstance(job, str):
            answers.append((404, error_body(trace, "not_found", f"id: no task {job!r} of yours", task_id=job)))
        else:  # the query worked: a failed task is answered 200, its body saying success false
            answers.append((200, shown.answer(job, trace)[1]))
    if query.action == "retrieve":
        status, answer = answers[0]
        return JSONResponse(answer, status_code=status)
    batch = {"success": True, "trace_id": trace, "count": len(answers), "items": [a for _, a in answers]}
    return JSONResponse(batch)
