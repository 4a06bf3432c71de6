"""Dependencies shared by the routes: the app context, the caller's identity, plain (file-less) bodies and the
OpenAPI description of their errors."""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Annotated, Any

from fastapi import Depends, Query, Request
from fastapi.security import APIKeyHeader, HTTPAuthorizationCredentials, HTTPBearer

from orchestrator.context import AppContext
from orchestrator.errors import ApiError
from orchestrator.schemas.common import ErrorEnvelope

bearer_scheme = HTTPBearer(auto_error=False, description="an API key, or a token from POST /auth/login")
api_key_scheme = APIKeyHeader(name="X-API-Key", auto_error=False, description="an API key from TRITONE_API_KEYS")


def get_ctx(request: Request) -> AppContext:
    ctx: AppContext = request.app.state.ctx
    return ctx


Ctx = Annotated[AppContext, Depends(get_ctx)]


_AUTH_REQUIRED = (
    "authentication required: send 'Authorization: Bearer <API key or token from POST /auth/login>', "
    "'X-API-Key: <key>', or upstream's 'ai_token' body field"
)


def identify_optional(
    ctx: AppContext, bearer: HTTPAuthorizationCredentials | None, api_key: str | None, access_token: str | None = None
) -> str | None:
    """The caller from the credentials sent (a bad one is a 401); None when none were sent and auth is required.
    Bearer values may be an API key (upstream's convention) or a login token. ``TRITONE_AUTH=none``: the open user."""
    if api_key:
        return ctx.auth.user_from_api_key(api_key)
    if bearer is not None and bearer.credentials:
        return ctx.auth.user_from_credential(bearer.credentials)
    if access_token:
        return ctx.auth.user_from_token(access_token)
    return ctx.auth.open_user


def identify(
    ctx: AppContext, bearer: HTTPAuthorizationCredentials | None, api_key: str | None, access_token: str | None = None
) -> str:
    user = identify_optional(ctx, bearer, api_key, access_token)
    if user is None:
        raise ApiError(401, _AUTH_REQUIRED, headers={"WWW-Authenticate": "Bearer"})
    return user


def body_user(ctx: AppContext, user: str | None, body: Mapping[str, Any]) -> str:
    """The caller of a route that also takes upstream's ``ai_token`` body field (an API key or a login token)."""
    token = body.get("ai_token")
    if isinstance(token, str) and token.strip():
        return ctx.auth.user_from_credential(token.strip())
    if user is None:
        raise ApiError(401, _AUTH_REQUIRED, headers={"WWW-Authenticate": "Bearer"})
    return user


def current_user(
    ctx: Ctx,
    bearer: Annotated[HTTPAuthorizationCredentials | None, Depends(bearer_scheme)],
    api_key: Annotated[str | None, Depends(api_key_scheme)],
) -> str:
    user = identify(ctx, bearer, api_key)
    ctx.jobs.limits.check_request(user)  # TRITONE_REQUEST_RATE per user (a key counts as its user): 429 + Retry-After
    return user


def current_user_or_query_token(
    ctx: Ctx,
    request: Request,
    bearer: Annotated[HTTPAuthorizationCredentials | None, Depends(bearer_scheme)],
    api_key: Annotated[str | None, Depends(api_key_scheme)],
    access_token: Annotated[
        str | None,
        Query(max_length=4096, description="for EventSource: a short-lived token from POST /auth/url-token"),
    ] = None,
) -> str:
    if access_token and not api_key and (bearer is None or not bearer.credentials):
        job_id = request.path_params.get("job_id") or request.query_params.get("intent_id")
        return ctx.auth.user_from_url_token(access_token, purpose="events", job_id=job_id)
    return identify(ctx, bearer, api_key)


def optional_user(
    ctx: Ctx,
    bearer: Annotated[HTTPAuthorizationCredentials | None, Depends(bearer_scheme)],
    api_key: Annotated[str | None, Depends(api_key_scheme)],
) -> str | None:
    return identify_optional(ctx, bearer, api_key)


User = Annotated[str, Depends(current_user)]
# For routes that read upstream's ``ai_token`` from the body: resolve with :func:`body_user`.
MaybeUser = Annotated[str | None, Depends(optional_user)]
StreamUser = Annotated[str, Depends(current_user_or_query_token)]


async def json_object(request: Request, *, holding: str = "") -> dict[str, Any]:
    """The JSON body as an object (an empty body: ``{}``); a 422 on ``body`` otherwise, saying what it holds."""
    body = await request.body()
    if not body.strip():
        return {}
    try:
        raw = json.loads(body)
    except ValueError as exc:
        raise ApiError(422, f"body: not valid JSON ({exc})", field="body") from None
    if not isinstance(raw, dict):
        raise ApiError(422, "body: must be a JSON object" + (f" with {holding}" if holding else ""), field="body")
    return raw


async def fields_body(request: Request, *, max_fields: int, holding: str = "") -> dict[str, Any]:
    """A JSON object or a urlencoded/multipart form without files (upstream's routes take both) as a dict."""
    content_type = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if content_type in ("application/x-www-form-urlencoded", "multipart/form-data"):
        form = await request.form(max_files=0, max_fields=max_fields)
        return {k: v for k, v in form.items() if isinstance(v, str)}
    return await json_object(request, holding=holding)


def error_responses(*codes: tuple[int, str], model: type = ErrorEnvelope) -> dict[int | str, dict[str, Any]]:
    """A route's OpenAPI ``responses``: each (status, what it means there), answered in ``model``'s envelope."""
    return {code: {"model": model, "description": text} for code, text in codes}
