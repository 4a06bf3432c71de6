"""``POST /auth/login``: a username and password for an expiring bearer token."""

from __future__ import annotations

import asyncio

from fastapi import APIRouter

from orchestrator.errors import ApiError
from orchestrator.routers.deps import Ctx
from orchestrator.schemas.auth import LoginRequest, TokenPublic

router = APIRouter(tags=["auth"])


@router.post("/auth/login", response_model=TokenPublic)
async def login(body: LoginRequest, ctx: Ctx) -> TokenPublic:
    # PBKDF2 takes tens of milliseconds: off the event loop.
    ok = await asyncio.to_thread(ctx.auth.authenticate, body.username, body.password)
    if not ok:
        raise ApiError(401, "wrong username or password", headers={"WWW-Authenticate": "Bearer"})
    token, ttl = ctx.auth.issue_token(body.username)
    return TokenPublic(access_token=token, expires_in=ttl)
