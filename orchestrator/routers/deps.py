"""Dependencies shared by the routes: the app context and the caller's identity."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Query, Request
from fastapi.security import APIKeyHeader, HTTPAuthorizationCredentials, HTTPBearer

from orchestrator.context import AppContext
from orchestrator.errors import ApiError

bearer_scheme = HTTPBearer(auto_error=False, description="a token from POST /auth/login")
api_key_scheme = APIKeyHeader(name="X-API-Key", auto_error=False, description="an API key from TRITONE_API_KEYS")


def get_ctx(request: Request) -> AppContext:
    ctx: AppContext = request.app.state.ctx
    return ctx


Ctx = Annotated[AppContext, Depends(get_ctx)]


def identify(
    ctx: AppContext, bearer: HTTPAuthorizationCredentials | None, api_key: str | None, access_token: str | None = None
) -> str:
    if api_key:
        return ctx.auth.user_from_api_key(api_key)
    if bearer is not None and bearer.credentials:
        return ctx.auth.user_from_token(bearer.credentials)
    if access_token:
        return ctx.auth.user_from_token(access_token)
    raise ApiError(
        401,
        "authentication required: send 'Authorization: Bearer <token>' (POST /auth/login) or 'X-API-Key: <key>'",
        headers={"WWW-Authenticate": "Bearer"},
    )


def current_user(
    ctx: Ctx,
    bearer: Annotated[HTTPAuthorizationCredentials | None, Depends(bearer_scheme)],
    api_key: Annotated[str | None, Depends(api_key_scheme)],
) -> str:
    return identify(ctx, bearer, api_key)


def current_user_or_query_token(
    ctx: Ctx,
    bearer: Annotated[HTTPAuthorizationCredentials | None, Depends(bearer_scheme)],
    api_key: Annotated[str | None, Depends(api_key_scheme)],
    access_token: Annotated[
        str | None, Query(max_length=4096, description="for EventSource and <audio src>, which cannot send headers")
    ] = None,
) -> str:
    return identify(ctx, bearer, api_key, access_token)


User = Annotated[str, Depends(current_user)]
StreamUser = Annotated[str, Depends(current_user_or_query_token)]
