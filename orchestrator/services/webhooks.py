"""``callback_url`` webhooks: one HMAC-signed POST per stage change, retried with exponential backoff.

Signature: ``X-Tritone-Signature: t=<unix seconds>,v1=<hex HMAC-SHA256(secret, "<t>.<raw body>")>`` — a receiver
recomputes it with its user's secret (``TRITONE_WEBHOOK_SECRETS[user]``, else one derived per user from
``TRITONE_WEBHOOK_SECRET``; ``GET /v1/webhooks/secret`` shows a user theirs) and rejects old timestamps. With a
database (the app), events go through the durable outbox (``services/outbox.py``): at-least-once across restarts,
in order per job, ``X-Tritone-Delivery`` / ``Idempotency-Key`` = the event's ``event_id`` on every attempt.
Hosts that resolve to loopback, private, link-local or otherwise non-public addresses — including every IPv6 form
that embeds or reaches one (``services/netguard.py``) — are refused when the URL is submitted and before each
attempt, and the attempt connects to the address that was just validated (no second DNS lookup: no rebinding),
unless ``TRITONE_ALLOW_PRIVATE_CALLBACKS=true``. Redirects are not followed.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import hmac
import json
import logging
import socket
import time
import uuid
from collections.abc import Mapping
from typing import Any, Protocol
from urllib.parse import urlsplit

import httpx
from sqlalchemy.ext.asyncio import async_sessionmaker

from orchestrator.db import Job
from orchestrator.errors import ApiError
from orchestrator.services.netguard import PINNED, is_public, pinned_client, refused
from orchestrator.services.outbox import Outbox, Outcome
from orchestrator.settings import Settings

logger = logging.getLogger(__name__)


class CallbackRefusedError(ValueError):
    pass


def sign(secret: str, timestamp: int, body: bytes) -> str:
    mac = hmac.new(secret.encode(), f"{timestamp}.".encode() + body, hashlib.sha256).hexdigest()
    return f"t={timestamp},v1={mac}"


def verify_signature(secret: str, header: str, body: bytes, *, tolerance_s: float = 300.0) -> bool:
    """The receiver's side (used by tests and documented for users)."""
    try:
        parts = dict(item.split("=", 1) for item in header.split(","))
        timestamp = int(parts["t"])
    except (KeyError, ValueError):
        return False
    if abs(time.time() - timestamp) > tolerance_s:
        return False
    return hmac.compare_digest(sign(secret, timestamp, body), header)


_is_public = is_public  # the policy lives in services/netguard.py


class FinalPayloads(Protocol):
    """What a job's final callback carries (``services/callbacks.py``)."""

    def quiet(self, params: Mapping[str, Any] | None) -> bool: ...

    async def terminal(self, job: Job) -> tuple[str, dict[str, Any]]: ...


class WebhookSender:
    def __init__(
        self, settings: Settings, sessions: async_sessionmaker | None = None, payloads: FinalPayloads | None = None
    ) -> None:
        self._settings = settings
        self.payloads = payloads
        secret = (
            settings.webhook_secret
            or hashlib.sha256(b"tritone-webhook\0" + settings.resolved_jwt_secret().encode()).hexdigest()
        )
        self.secret = secret  # the master key: per-user secrets derive from it
        final = payloads.terminal if payloads is not None else None
        self.outbox = Outbox(settings, sessions, self.attempt, final=final) if sessions is not None else None
        self._client: httpx.AsyncClient | None = None
        self._chains: dict[str, asyncio.Task[None]] = {}
        self._tasks: set[asyncio.Task[None]] = set()

    def secret_for(self, owner: str) -> str:
        """The signing secret of ``owner``'s callbacks: configured, or derived from the master key (never shared)."""
        configured = self._settings.webhook_secrets.get(owner)
        if configured:
            return configured
        return hmac.new(self.secret.encode(), b"tritone-webhook-user\0" + owner.encode(), hashlib.sha256).hexdigest()

    async def start(self) -> None:
        self._client, self.backend = pinned_client(timeout_s=self._settings.webhook_timeout_s)
        if self.outbox is not None:
            await self.outbox.start()

    async def close(self, *, grace_s: float = 2.0) -> None:
        if self.outbox is not None:
            await self.outbox.close(grace_s=grace_s)
        pending = [t for t in self._tasks if not t.done()]
        if pending:
            await asyncio.wait(pending, timeout=grace_s)
        for task in pending:
            task.cancel()
        for task in pending:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        if self._client is not None:
            await self._client.aclose()
            self._client = None

    async def check_url(self, url: str) -> list[str]:
        """Refuse a callback URL whose host is not public (unless allowed); the addresses it resolved to, to connect
        to. Raises :class:`CallbackRefusedError`."""
        parts = urlsplit(url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise CallbackRefusedError("must be an absolute http:// or https:// URL")
        try:
            port = parts.port or (443 if parts.scheme == "https" else 80)
        except ValueError:
            raise CallbackRefusedError("has an invalid port") from None
        try:
            infos = await asyncio.get_running_loop().getaddrinfo(parts.hostname, port, type=socket.SOCK_STREAM)
        except (socket.gaierror, UnicodeError):
            raise CallbackRefusedError(f"host {parts.hostname!r} does not resolve") from None
        addresses = sorted({str(info[4][0]) for info in infos})
        private = [] if self._settings.allow_private_callbacks else refused(addresses)
        if private:
            raise CallbackRefusedError(
                f"host {parts.hostname!r} resolves to a loopback/private address ({', '.join(map(str, private))}); "
                "callbacks go to public hosts only (set TRITONE_ALLOW_PRIVATE_CALLBACKS=true to allow)"
            )
        if not addresses:
            raise CallbackRefusedError(f"host {parts.hostname!r} does not resolve")
        return addresses

    async def validate(self, url: str | None) -> str | None:
        """For request handlers: a refused URL is the client's mistake (422 naming ``callback_url``)."""
        if url is None:
            return None
        try:
            await self.check_url(url)
        except CallbackRefusedError as exc:
            raise ApiError(422, f"callback_url {exc}", field="callback_url") from None
        return url

    def quiet(self, params: Mapping[str, Any] | None) -> bool:
        """A job whose callback format sends only the final event (the Producer API's): no queued/stage events."""
        return self.payloads is not None and self.payloads.quiet(params)

    def send_final(self, *, job_id: str, url: str, event: str, payload: dict[str, Any]) -> None:
        """The job's final event: with an outbox and :class:`FinalPayloads`, its body is built from the finished job
        row (the result with its links, or the job's callback format) when it is written; else ``payload``."""
        if self.outbox is not None and self.payloads is not None:
            self.outbox.enqueue_final(job_id=job_id, url=url)
            return
        self.send(job_id=job_id, url=url, event=event, payload=payload)

    def send(self, *, job_id: str, url: str, event: str, payload: dict[str, Any]) -> None:
        """Queue one delivery; deliveries for the same job go out one after another, in order."""
        if self.outbox is not None:
            self.outbox.enqueue(job_id=job_id, url=url, event=event, payload=payload)
            return
        body = {"job_id": job_id, "event": event, "timestamp": time.time(), **payload}
        previous = self._chains.get(job_id)
        task = asyncio.create_task(self._deliver_after(previous, url, event, body), name=f"webhook-{job_id}")
        self._chains[job_id] = task
        self._tasks.add(task)

        def _done(t: asyncio.Task[None]) -> None:
            self._tasks.discard(t)
            if self._chains.get(job_id) is t:
                del self._chains[job_id]

        task.add_done_callback(_done)

    async def _deliver_after(
        self, previous: asyncio.Task[None] | None, url: str, event: str, body: dict[str, Any]
    ) -> None:
        if previous is not None:
            with contextlib.suppress(Exception, asyncio.CancelledError):
                await asyncio.shield(previous)
        await self.deliver(url, event, body)

    async def deliver(self, url: str, event: str, body: dict[str, Any], *, owner: str = "") -> bool:
        """Without an outbox: up to ``webhook_max_attempts`` attempts in this task, backing off between them."""
        raw = json.dumps(body, ensure_ascii=False, separators=(",", ":")).encode()
        delivery = str(uuid.uuid4())
        delay = self._settings.webhook_backoff_s
        for attempt in range(1, self._settings.webhook_max_attempts + 1):
            outcome, _ = await self.attempt(url, event, raw, delivery, attempt, owner)
            if outcome != "retry":
                return outcome == "delivered"
            if attempt < self._settings.webhook_max_attempts:
                await asyncio.sleep(delay)
                delay *= 2
        logger.warning("webhook %s to %s: gave up after %d attempts", event, url, self._settings.webhook_max_attempts)
        return False

    async def attempt(
        self, url: str, event: str, raw: bytes, delivery: str, attempt: int, owner: str
    ) -> tuple[Outcome, str | None]:
        """One POST: validate the host again, connect to the validated address, sign with ``owner``'s secret."""
        try:
            addresses = await self.check_url(url)
        except CallbackRefusedError as exc:
            logger.warning("webhook %s to %s refused: %s", event, url, exc)
            return "refused", str(exc)
        host = (urlsplit(url).hostname or "").strip("[]")
        timestamp = int(time.time())
        headers = {
            "Content-Type": "application/json",
            "User-Agent": "tritone-webhook/1",
            "X-Tritone-Event": event,
            "X-Tritone-Delivery": delivery,
            "Idempotency-Key": delivery,
            "X-Tritone-Attempt": str(attempt),
            "X-Tritone-Signature": sign(self.secret_for(owner) if owner else self.secret, timestamp, raw),
        }
        assert self._client is not None, "WebhookSender.start() was not called"
        token = PINNED.set({host: addresses[0]})
        try:
            response = await self._client.post(url, content=raw, headers=headers)
        except httpx.HTTPError as exc:
            logger.info("webhook %s to %s failed (attempt %d): %s", event, url, attempt, exc)
            return "retry", f"{type(exc).__name__}: {exc}"
        finally:
            PINNED.reset(token)
        status = response.status_code
        if 200 <= status < 300:
            logger.debug("webhook %s to %s delivered (attempt %d)", event, url, attempt)
            return "delivered", None
        if 400 <= status < 500 and status not in (408, 409, 425, 429):
            logger.warning("webhook %s to %s answered %d: not retried", event, url, status)
            return "refused", f"the receiver answered {status}"
        logger.info("webhook %s to %s: status %d (attempt %d), will retry", event, url, status, attempt)
        return "retry", f"the receiver answered {status}"
