"""Request ids in the logs: every log record carries ``request_id`` (the HTTP request's, or ``job:<id>`` while a worker
runs a job; ``-`` outside both), so one request's or one job's lines can be picked out of a busy log.

- :class:`RequestIdMiddleware` (plain ASGI) takes the client's ``X-Request-ID`` when it is a short token, else makes
  one, keeps it in a context variable for the request and answers it in the ``X-Request-ID`` header;
- :func:`install` adds ``record.request_id`` to every record (a log-record factory: no handler needs configuring) so a
  format can say ``%(request_id)s``; :data:`LOG_FORMAT` is the one ``tritone serve`` uses;
- :class:`JsonFormatter` writes one JSON object per line (``TRITONE_LOG_JSON=1`` with ``tritone serve``).
"""

from __future__ import annotations

import contextvars
import json
import logging
import re
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from starlette.types import ASGIApp, Message, Receive, Scope, Send

REQUEST_ID: contextvars.ContextVar[str] = contextvars.ContextVar("tritone_request_id", default="-")
LOG_FORMAT = "%(asctime)s %(levelname)s %(name)s [%(request_id)s] %(message)s"
_HEADER = b"x-request-id"
_VALID = re.compile(rb"[A-Za-z0-9._:-]{1,64}")
_installed = False


def install() -> None:
    """Give every log record a ``request_id`` attribute (idempotent)."""
    global _installed
    if _installed:
        return
    previous = logging.getLogRecordFactory()

    def factory(*args: Any, **kwargs: Any) -> logging.LogRecord:
        record = previous(*args, **kwargs)
        if not hasattr(record, "request_id"):
            record.request_id = REQUEST_ID.get()
        return record

    logging.setLogRecordFactory(factory)
    _installed = True


@contextmanager
def bound(request_id: str) -> Iterator[None]:
    """Log records in this block (and tasks it starts) carry ``request_id``."""
    token = REQUEST_ID.set(request_id)
    try:
        yield
    finally:
        REQUEST_ID.reset(token)


class RequestIdMiddleware:
    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        given = next((v for k, v in scope.get("headers", ()) if k == _HEADER), b"")
        request_id = given.decode() if _VALID.fullmatch(given) else uuid.uuid4().hex[:16]
        header = (_HEADER, request_id.encode())

        async def send_with_id(message: Message) -> None:
            if message["type"] == "http.response.start":
                message = {**message, "headers": [*message.get("headers", []), header]}
            await send(message)

        with bound(request_id):
            await self.app(scope, receive, send_with_id)


class JsonFormatter(logging.Formatter):
    """``{"ts", "level", "logger", "request_id", "message"[, "exc"]}`` per line."""

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "ts": round(record.created, 3),
            "level": record.levelname,
            "logger": record.name,
            "request_id": getattr(record, "request_id", "-"),
            "message": record.getMessage(),
        }
        if record.exc_info:
            entry["exc"] = self.formatException(record.exc_info)
        return json.dumps(entry, ensure_ascii=False)
