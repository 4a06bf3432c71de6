"""Per-user and per-client limits, with the maintained ``limits`` library (moving windows, in-process memory):

- login throttling: failed logins per username and per client address (``login_rate``); while either is spent,
  ``POST /auth/login`` answers 429 + ``Retry-After`` without checking the password;
- authenticated requests per user (``request_rate``) and submissions per user (``submit_rate``); an API key or a
  token counts as its user;
- queued + running jobs per user (``user_queue_max``), so one tenant cannot take the whole queue.

Each refusal is an :class:`~orchestrator.errors.ApiError` 429 with ``Retry-After`` and the setting to raise.
The windows live where ``rate_limit_storage`` says: ``memory://`` (one process; behind N orchestrators a user gets up
to N times the rate) or ``redis://host:port`` (shared: every process counts against the same windows).
"""

from __future__ import annotations

import math
import time

from limits import RateLimitItem, parse
from limits.storage import Storage, storage_from_string
from limits.strategies import MovingWindowRateLimiter
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession

from orchestrator.db import Job
from orchestrator.errors import ApiError
from orchestrator.settings import Settings


def _parse(setting: str, value: str) -> RateLimitItem:
    try:
        return parse(value)
    except ValueError:
        raise ValueError(
            f"TRITONE_{setting.upper()}={value!r} is not a rate; write e.g. '10/minute' or '100 per hour'"
        ) from None


def _too_many(message: str, retry_after: float, field: str | None = None) -> ApiError:
    seconds = max(1, math.ceil(retry_after))
    return ApiError(429, f"{message}; retry in {seconds} s", field=field, headers={"Retry-After": str(seconds)})


def _storage(uri: str) -> Storage:
    try:
        storage = storage_from_string(uri, key_prefix="tritone-limits")
    except Exception as exc:  # unknown scheme, or the client library for it is missing
        raise ValueError(
            f"TRITONE_RATE_LIMIT_STORAGE={uri!r} cannot be used ({exc}); use memory:// or redis://host:6379"
        ) from None
    if not isinstance(storage, Storage):
        raise ValueError(f"TRITONE_RATE_LIMIT_STORAGE={uri!r} names an async storage; use memory:// or redis://")
    return storage


class RateLimits:
    def __init__(self, settings: Settings) -> None:
        self._settings = settings
        self._limiter = MovingWindowRateLimiter(_storage(settings.rate_limit_storage))
        self._login = _parse("login_rate", settings.login_rate)
        self._submit = _parse("submit_rate", settings.submit_rate)
        self._request = _parse("request_rate", settings.request_rate)

    def _retry_after(self, item: RateLimitItem, *keys: str) -> float:
        return float(self._limiter.get_window_stats(item, *keys).reset_time) - time.time()

    # --- login ---------------------------------------------------------------------------------------------------
    def check_login(self, username: str, client: str) -> None:
        """429 while this username or this client address has spent its failed-login allowance."""
        for kind, key in (("user", username), ("client", client)):
            if not self._limiter.test(self._login, "login", kind, key):
                raise _too_many(
                    f"too many failed logins for this {'username' if kind == 'user' else 'address'} "
                    f"(TRITONE_LOGIN_RATE={self._settings.login_rate})",
                    self._retry_after(self._login, "login", kind, key),
                    field="username" if kind == "user" else None,
                )

    def login_failed(self, username: str, client: str) -> None:
        self._limiter.hit(self._login, "login", "user", username)
        self._limiter.hit(self._login, "login", "client", client)

    # --- requests and submissions --------------------------------------------------------------------------------
    def check_request(self, user: str) -> None:
        if not self._limiter.hit(self._request, "request", user):
            raise _too_many(
                f"user {user!r} sends requests faster than TRITONE_REQUEST_RATE={self._settings.request_rate}",
                self._retry_after(self._request, "request", user),
            )

    def check_submit(self, owner: str) -> None:
        if not self._limiter.hit(self._submit, "submit", owner):
            raise _too_many(
                f"user {owner!r} submits faster than TRITONE_SUBMIT_RATE={self._settings.submit_rate}",
                self._retry_after(self._submit, "submit", owner),
            )

    async def check_user_queue(self, session: AsyncSession, owner: str, retry_after: float) -> None:
        active = await session.scalar(
            select(func.count()).select_from(Job).where(Job.owner == owner, Job.status.in_(("queued", "running")))
        )
        cap = self._settings.user_queue_max
        if int(active or 0) >= cap:
            raise _too_many(
                f"user {owner!r} already has {active} queued or running jobs, the most one user may have "
                f"(TRITONE_USER_QUEUE_MAX={cap}); wait for one to finish or cancel one",
                retry_after,
            )
