"""``POST /auth/login``: a username and password for an expiring bearer token (failed logins are throttled per
username and per client address); ``POST /auth/url-token``: a short-lived token for one job's event stream or files,
for URLs (EventSource, ``<audio src>``) — the bearer token never goes into a URL; ``GET /v1/webhooks/secret``: the
caller's own callback signing secret."""

from __future__ import annotations

import asyncio

from fastapi import APIRouter, Request

from orchestrator import store
from orchestrator.errors import ApiError
from orchestrator.routers.deps import Ctx, User
from orchestrator.schemas.auth import (
    LoginRequest,
    TokenPublic,
    UrlTokenPublic,
    UrlTokenRequest,
    WebhookSecretPublic,
)

router = APIRouter(tags=["auth"])


@router.post("/auth/login", response_model=TokenPublic, responses={401: {}, 429: {}})
async def login(body: LoginRequest, ctx: Ctx, request: Request) -> TokenPublic:
    client = request.client.host if request.client else "unknown"
    limits = ctx.jobs.limits
    limits.check_login(body.username, client)
    # PBKDF2 takes tens of milliseconds: off the event loop.
    ok = await asyncio.to_thread(ctx.auth.authenticate, body.username, body.password)
    if not ok:
        limits.login_failed(body.username, client)
        raise ApiError(401, "wrong username or password", headers={"WWW-Authenticate": "Bearer"})
    token, ttl = ctx.auth.issue_token(body.username)
    return TokenPublic(access_token=token, expires_in=ttl)


@router.post("/auth/url-token", response_model=UrlTokenPublic, responses={401: {}, 404: {}})
async def url_token(body: UrlTokenRequest, ctx: Ctx, user: User) -> UrlTokenPublic:
    async with ctx.sessions() as session:
        job = await store.get_job(session=session, public_id=body.job_id, owner=user)
    if job is None:
        raise ApiError(404, f"no such job: {body.job_id}", field="job_id")
    token, ttl = ctx.auth.issue_url_token(user, purpose=body.purpose, job_id=body.job_id)
    return UrlTokenPublic(access_token=token, purpose=body.purpose, expires_in=ttl)


@router.get("/v1/webhooks/secret", response_model=WebhookSecretPublic, responses={401: {}})
async def webhook_secret(ctx: Ctx, user: User) -> WebhookSecretPublic:
    return WebhookSecretPublic(secret=ctx.webhooks.secret_for(user))
