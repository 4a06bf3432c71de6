"""``callback_url`` webhooks: one HMAC-signed POST per stage change, retried with exponential backoff.

Signature: ``X-Tritone-Signature: t=<unix seconds>,v1=<hex HMAC-SHA256(secret, "<t>.<raw body>")>`` — a receiver
recomputes it with the shared secret (``TRITONE_WEBHOOK_SECRET``) and rejects old timestamps. Deliveries for one job
go out in order. Hosts that resolve to loopback, private, link-local or otherwise non-public addresses are refused
(when the URL is submitted and again before each delivery, against DNS rebinding) unless
``TRITONE_ALLOW_PRIVATE_CALLBACKS=true``. Redirects are not followed.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import hmac
import ipaddress
import json
import logging
import socket
import time
import uuid
from typing import Any
from urllib.parse import urlsplit

import httpx

from orchestrator.errors import ApiError
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


def _is_public(address: str) -> bool:
    ip = ipaddress.ip_address(address.split("%", 1)[0])
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    return not (
        ip.is_private
        or ip.is_loopback
        or ip.is_link_local
        or ip.is_multicast
        or ip.is_reserved
        or ip.is_unspecified
        or (isinstance(ip, ipaddress.IPv4Address) and ip in ipaddress.ip_network("100.64.0.0/10"))
    )


class WebhookSender:
    def __init__(self, settings: Settings) -> None:
        self._settings = settings
        secret = (
            settings.webhook_secret
            or hashlib.sha256(b"tritone-webhook\0" + settings.resolved_jwt_secret().encode()).hexdigest()
        )
        self.secret = secret
        self._client: httpx.AsyncClient | None = None
        self._chains: dict[str, asyncio.Task[None]] = {}
        self._tasks: set[asyncio.Task[None]] = set()

    async def start(self) -> None:
        self._client = httpx.AsyncClient(timeout=self._settings.webhook_timeout_s, follow_redirects=False)

    async def close(self, *, grace_s: float = 2.0) -> None:
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

    async def check_url(self, url: str) -> None:
        """Refuse a callback URL whose host is not public (unless allowed). Raises :class:`CallbackRefusedError`."""
        parts = urlsplit(url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise CallbackRefusedError("must be an absolute http:// or https:// URL")
        if self._settings.allow_private_callbacks:
            return
        try:
            port = parts.port or (443 if parts.scheme == "https" else 80)
        except ValueError:
            raise CallbackRefusedError("has an invalid port") from None
        try:
            infos = await asyncio.get_running_loop().getaddrinfo(parts.hostname, port, type=socket.SOCK_STREAM)
        except (socket.gaierror, UnicodeError):
            raise CallbackRefusedError(f"host {parts.hostname!r} does not resolve") from None
        addresses = {info[4][0] for info in infos}
        private = sorted(a for a in addresses if not _is_public(str(a)))
        if private:
            raise CallbackRefusedError(
                f"host {parts.hostname!r} resolves to a loopback/private address ({', '.join(map(str, private))}); "
                "callbacks go to public hosts only (set TRITONE_ALLOW_PRIVATE_CALLBACKS=true to allow)"
            )

    async def validate(self, url: str | None) -> str | None:
        """For request handlers: a refused URL is the client's mistake (422 naming ``callback_url``)."""
        if url is None:
            return None
        try:
            await self.check_url(url)
        except CallbackRefusedError as exc:
            raise ApiError(422, f"callback_url {exc}", field="callback_url") from None
        return url

    def send(self, *, job_id: str, url: str, event: str, payload: dict[str, Any]) -> None:
        """Queue one delivery; deliveries for the same job go out one after another, in order."""
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

    async def deliver(self, url: str, event: str, body: dict[str, Any]) -> bool:
        raw = json.dumps(body, ensure_ascii=False, separators=(",", ":")).encode()
        delivery = str(uuid.uuid4())
        delay = self._settings.webhook_backoff_s
        for attempt in range(1, self._settings.webhook_max_attempts + 1):
            try:
                await self.check_url(url)
            except CallbackRefusedError as exc:
                logger.warning("webhook %s for job %s refused: %s", event, body.get("job_id"), exc)
                return False
            timestamp = int(time.time())
            headers = {
                "Content-Type": "application/json",
                "User-Agent": "tritone-webhook/1",
                "X-Tritone-Event": event,
                "X-Tritone-Delivery": delivery,
                "X-Tritone-Attempt": str(attempt),
                "X-Tritone-Signature": sign(self.secret, timestamp, raw),
            }
            status: int | None = None
            try:
                assert self._client is not None, "WebhookSender.start() was not called"
                response = await self._client.post(url, content=raw, headers=headers)
                status = response.status_code
                if 200 <= status < 300:
                    logger.debug("webhook %s for job %s delivered (attempt %d)", event, body.get("job_id"), attempt)
                    return True
                if 400 <= status < 500 and status not in (408, 409, 425, 429):
                    logger.warning("webhook %s to %s answered %d: not retried", event, url, status)
                    return False
            except httpx.HTTPError as exc:
                logger.info("webhook %s to %s failed (attempt %d): %s", event, url, attempt, exc)
            if attempt < self._settings.webhook_max_attempts:
                logger.info("webhook %s to %s: status %s, retrying in %.1f s", event, url, status, delay)
                await asyncio.sleep(delay)
                delay *= 2
        logger.warning("webhook %s to %s: gave up after %d attempts", event, url, self._settings.webhook_max_attempts)
        return False
