"""Request guards in front of every route (plain ASGI, no per-request task):

- :class:`BodyLimitMiddleware` — the body is counted as it arrives (``Content-Length`` or chunked, it makes no
  difference), against a per-route limit: ``json_body_max_bytes`` for JSON and forms, the upload limit for multipart
  on the routes that take uploads. Over the limit: 413 naming ``body`` at once, before the rest is read, and the app
  sees a disconnect — it never holds more than the limit. JSON (and form) bodies are also checked for nesting
  deeper than ``json_max_depth`` (422 naming ``body``) before any parser recurses into them.
- :class:`SecurityHeadersMiddleware` — ``nosniff`` and ``Referrer-Policy`` on every answer; on the web page also a
  Content-Security-Policy (``frame-ancestors 'none'``, scripts and styles from this origin only) and
  ``X-Frame-Options: DENY``.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from urllib.parse import unquote_plus

from starlette.responses import JSONResponse
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from orchestrator.errors import error_body

# Routes that accept multipart uploads (the ACE-Step API and upstream's name for it, the clip library's upload, stems).
UPLOAD_PATHS = frozenset({"/v1/music/generate", "/release_task", "/producer/upload", "/v1/clips", "/v1/stems"})
# JSON routes that carry audio as base64 (upstream's chat route: input_audio parts): the upload limit, base64-sized.
BASE64_AUDIO_PATHS = frozenset({"/v1/chat/completions"})

_STRINGS = re.compile(rb'"(?:[^"\\]|\\.)*"', re.DOTALL)
_BRACKETS = re.compile(rb"[\[\]{}]")


def json_depth(raw: bytes) -> int:
    """The deepest bracket nesting in ``raw`` (string contents ignored); linear, no recursion."""
    depth = deepest = 0
    for match in _BRACKETS.finditer(_STRINGS.sub(b'""', raw)):
        if match.group() in (b"[", b"{"):
            depth += 1
            deepest = max(deepest, depth)
        else:
            depth = max(0, depth - 1)
    return deepest


def _header(scope: Scope, name: bytes) -> str:
    for key, value in scope.get("headers", ()):
        if key == name:
            return str(value.decode("latin-1"))
    return ""


class BodyLimitMiddleware:
    def __init__(self, app: ASGIApp, *, json_limit: int, upload_limit: int, max_depth: int) -> None:
        self.app = app
        self.json_limit = json_limit
        self.upload_limit = upload_limit
        self.max_depth = max_depth

    def _limit(self, scope: Scope, content_type: str) -> tuple[int, str]:
        if content_type == "multipart/form-data" and scope.get("path") in UPLOAD_PATHS:
            return self.upload_limit, "uploads (TRITONE_UPLOAD_MAX_BYTES, two files plus the fields)"
        if scope.get("path") in BASE64_AUDIO_PATHS:
            return self.upload_limit * 4 // 3 + self.json_limit, "base64 audio (TRITONE_UPLOAD_MAX_BYTES, as base64)"
        return self.json_limit, "JSON and form bodies (TRITONE_JSON_BODY_MAX_BYTES)"

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        content_type = _header(scope, b"content-type").split(";")[0].strip().lower()
        limit, what = self._limit(scope, content_type)
        message = f"the request body is larger than the limit of {limit} bytes for {what}"
        declared = _header(scope, b"content-length")
        if declared.isdigit() and int(declared) > limit:
            await JSONResponse(error_body(413, message, "body"), status_code=413)(scope, receive, send)
            return
        if content_type in ("", "application/json", "application/x-www-form-urlencoded") or content_type.endswith(
            "+json"
        ):
            await self._buffered(scope, receive, send, limit, message, form=content_type.endswith("urlencoded"))
            return
        await self._streamed(scope, receive, send, limit, message)

    async def _buffered(
        self, scope: Scope, receive: Receive, send: Send, limit: int, message: str, *, form: bool
    ) -> None:
        """Small bodies: read them whole (bounded), check the nesting, then replay them to the app."""
        chunks: list[bytes] = []
        size = 0
        while True:
            event = await receive()
            if event["type"] != "http.request":
                await self.app(scope, _replay([], event), send)
                return
            chunk = event.get("body", b"")
            size += len(chunk)
            if size > limit:
                await JSONResponse(error_body(413, message, "body"), status_code=413)(scope, receive, send)
                return
            chunks.append(chunk)
            if not event.get("more_body", False):
                break
        raw = b"".join(chunks)
        probe = unquote_plus(raw.decode("latin-1")).encode("latin-1", "replace") if form else raw
        depth = json_depth(probe)
        if depth > self.max_depth:
            text = f"body: nested {depth} levels deep; at most {self.max_depth} levels are accepted"
            await JSONResponse(error_body(422, text, "body"), status_code=422)(scope, receive, send)
            return
        await self.app(scope, _replay([raw], None, receive), send)

    async def _streamed(self, scope: Scope, receive: Receive, send: Send, limit: int, message: str) -> None:
        """Large (multipart) bodies pass through as they come; past the limit the app sees a disconnect."""
        size = 0
        refused = False
        started = False

        async def counted_receive() -> Message:
            nonlocal size, refused
            if refused:
                return {"type": "http.disconnect"}
            event = await receive()
            if event["type"] == "http.request":
                size += len(event.get("body", b""))
                if size > limit:
                    refused = True
                    if not started:
                        await JSONResponse(error_body(413, message, "body"), status_code=413)(scope, receive, send)
                    return {"type": "http.disconnect"}
            return event

        async def guarded_send(event: Message) -> None:
            nonlocal started
            if refused:
                return  # our 413 went out; whatever the app answers to the disconnect is dropped
            if event["type"] == "http.response.start":
                started = True
            await send(event)

        await self.app(scope, counted_receive, guarded_send)


def _replay(chunks: Iterable[bytes], first: Message | None, receive: Receive | None = None) -> Receive:
    pending = [{"type": "http.request", "body": b"".join(chunks), "more_body": False}] if first is None else [first]

    async def replayed() -> Message:
        if pending:
            return pending.pop(0)
        if receive is not None:
            return await receive()  # after the body: disconnect notices, as the server sends them
        return {"type": "http.disconnect"}

    return replayed


_PAGE_CSP = (
    "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data: blob:; media-src 'self' blob:; "
    "connect-src 'self'; object-src 'none'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'"
)
_API_PREFIXES = ("/v1/", "/auth/", "/health", "/docs", "/redoc", "/openapi.json", "/release_task", "/query_result")


class SecurityHeadersMiddleware:
    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        path = str(scope.get("path", ""))
        page = not path.startswith(_API_PREFIXES)

        async def with_headers(event: Message) -> None:
            if event["type"] == "http.response.start":
                headers = list(event.get("headers", []))
                names = {k.lower() for k, _ in headers}
                extra = [(b"x-content-type-options", b"nosniff"), (b"referrer-policy", b"no-referrer")]
                if page:
                    extra += [(b"content-security-policy", _PAGE_CSP.encode()), (b"x-frame-options", b"DENY")]
                headers += [(k, v) for k, v in extra if k not in names]
                event = {**event, "headers": headers}
            await send(event)

        await self.app(scope, receive, with_headers)
