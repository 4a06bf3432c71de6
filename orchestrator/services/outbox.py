"""The webhook outbox: every callback event is a row in ``webhook_outbox`` before it is sent, so a delivery survives
a restart of the orchestrator (at-least-once) and carries the same idempotency key (``event_id``) on every attempt.

- :meth:`Outbox.enqueue` (sync, called where the event happens) writes the row in a task and wakes the loop;
- the loop (:meth:`Outbox.run_once`, every ``outbox_poll_s`` or when woken) takes, per job, the oldest pending event
  — so one job's events go out in order — claims it under a lease (several orchestrators may share a database),
  makes one attempt and records the outcome: delivered, retry at ``webhook_backoff_s * 2**(attempt-1)``, or dead
  after ``webhook_max_attempts`` / a refusal;
- :meth:`Outbox.close` stops within its grace period: a delivery cut short stays pending and is sent after restart;
- :meth:`Outbox.recover` (at start) closes the one gap left — a process killed between a job's terminal write and its
  event's row: a terminal job with a callback but no terminal event gets one. A job's terminal event has a fixed id
  (:func:`terminal_event_id`), so the live path and recovery (or two processes recovering) never send it twice.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time
import uuid
from collections.abc import Awaitable, Callable
from typing import Any, Literal

from sqlalchemy import or_, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import async_sessionmaker

from orchestrator.db import TERMINAL_STATUSES, Job, WebhookOutbox
from orchestrator.services import metrics
from orchestrator.services.availability import is_database_outage
from orchestrator.settings import Settings

logger = logging.getLogger(__name__)

Outcome = Literal["delivered", "retry", "refused"]
# (url, event, raw body, event id, attempt number, owner) -> (outcome, error text)
AttemptFn = Callable[[str, str, bytes, str, int, str], Awaitable[tuple[Outcome, str | None]]]
# (a finished job) -> (event, payload) of its final callback
FinalFn = Callable[[Job], Awaitable[tuple[str, dict[str, Any]]]]

_BATCH = 200
_RECOVER_WINDOW_S = 86_400.0  # terminal jobs this recent are checked for a missing final event at start
_TERMINAL_NS = uuid.UUID("6f1d3c2e-6b7a-4d59-9a43-0c9f3f1e7a21")


def terminal_event_id(job_id: str) -> str:
    """The final event of a job has one id, whoever writes it."""
    return str(uuid.uuid5(_TERMINAL_NS, f"{job_id}:terminal"))


_MAX_BACKOFF_S = 600.0


class Outbox:
    def __init__(
        self, settings: Settings, sessions: async_sessionmaker, attempt: AttemptFn, *, final: FinalFn | None = None
    ) -> None:
        self._settings = settings
        self._sessions = sessions
        self._attempt = attempt
        self._final = final
        self._wake = asyncio.Event()
        self._stopping = False
        self._loop_task: asyncio.Task[None] | None = None
        self._inserts: set[asyncio.Task[None]] = set()
        self._inflight: set[asyncio.Task[None]] = set()

    # --- writing -------------------------------------------------------------------------------------------------
    def enqueue(self, *, job_id: str, url: str, event: str, payload: dict[str, Any]) -> None:
        terminal = payload.get("status") in TERMINAL_STATUSES
        event_id = terminal_event_id(job_id) if terminal else str(uuid.uuid4())
        body = {"job_id": job_id, "event": event, "event_id": event_id, "timestamp": time.time(), **payload}
        raw = json.dumps(body, ensure_ascii=False, separators=(",", ":"))
        task = asyncio.create_task(self.insert(job_id, url, event, event_id, raw), name=f"outbox-{job_id}")
        self._inserts.add(task)
        task.add_done_callback(self._inserts.discard)

    def enqueue_final(self, *, job_id: str, url: str) -> None:
        """A finished job's final event, its body built from the job row as it is written (the same body recovery
        writes)."""
        task = asyncio.create_task(self._insert_final(job_id, url), name=f"outbox-final-{job_id}")
        self._inserts.add(task)
        task.add_done_callback(self._inserts.discard)

    async def _insert_final(self, job_id: str, url: str) -> None:
        try:
            async with self._sessions() as session:
                job = await session.scalar(select(Job).where(Job.public_id == job_id))
            if job is None:
                return
            raw = await self._final_body(job)
        except Exception:
            logger.exception("webhook: the final event of job %s could not be built", job_id)
            return
        body = json.loads(raw)
        await self.insert(job_id, url, body["event"], body["event_id"], raw)

    async def _final_body(self, job: Job) -> str:
        event, payload = await self._final(job) if self._final is not None else _terminal_payload(job)
        body: dict[str, Any] = {"job_id": job.public_id, "event": event, "event_id": terminal_event_id(job.public_id)}
        body.update(timestamp=time.time(), **payload)
        return json.dumps(body, ensure_ascii=False, separators=(",", ":"))

    async def insert(self, job_id: str, url: str, event: str, event_id: str, raw: str) -> None:
        now = time.time()
        try:
            async with self._sessions() as session, session.begin():
                owner = await session.scalar(select(Job.owner).where(Job.public_id == job_id))
                session.add(
                    WebhookOutbox(
                        event_id=event_id,
                        job_public_id=job_id,
                        owner=owner or "",
                        url=url,
                        event=event,
                        body=raw,
                        status="pending",
                        attempts=0,
                        next_attempt_at=now,
                        created_at=now,
                    )
                )
        except IntegrityError:
            logger.debug("webhook %s for job %s is in the outbox already (event %s)", event, job_id, event_id)
            return
        except Exception:
            logger.exception("webhook %s for job %s could not be written to the outbox", event, job_id)
            return
        self._wake.set()

    async def recover(self) -> int:
        """Write the final event of recently finished jobs whose event was lost with a killed process."""
        since = time.time() - _RECOVER_WINDOW_S
        async with self._sessions() as session:
            jobs = (
                await session.scalars(
                    select(Job).where(
                        Job.callback_url.is_not(None), Job.status.in_(TERMINAL_STATUSES), Job.finished_at >= since
                    )
                )
            ).all()
            wanted = {terminal_event_id(job.public_id): job for job in jobs}
            present: set[str] = set()
            ids = list(wanted)
            for start in range(0, len(ids), 500):
                rows = await session.scalars(
                    select(WebhookOutbox.event_id).where(WebhookOutbox.event_id.in_(ids[start : start + 500]))
                )
                present.update(rows.all())
        missing = [job for event_id, job in wanted.items() if event_id not in present]
        for job in missing:
            raw = await self._final_body(job)
            await self.insert(
                job.public_id, str(job.callback_url), json.loads(raw)["event"], terminal_event_id(job.public_id), raw
            )
        if missing:
            logger.warning("webhook outbox: wrote the lost final event of %d job(s)", len(missing))
        return len(missing)

    # --- delivering ----------------------------------------------------------------------------------------------
    async def start(self) -> None:
        self._stopping = False
        try:
            await self.recover()
        except Exception:
            logger.exception("webhook outbox: recovering lost final events failed; continuing without")
        self._loop_task = asyncio.create_task(self._loop(), name="webhook-outbox")

    async def _loop(self) -> None:
        outage = False
        while not self._stopping:
            try:
                await self.run_once()
                if outage:
                    logger.info("webhook outbox: the database answers again; delivering")
                outage = False
            except Exception as exc:
                if not is_database_outage(exc):
                    logger.exception("webhook outbox pass failed; retrying in %.1f s", self._settings.outbox_poll_s)
                elif not outage:  # one line per outage, not a traceback per pass
                    logger.warning("webhook outbox: database unreachable (%s); deliveries wait for it", exc)
                outage = outage or is_database_outage(exc)
            self._wake.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), timeout=self._settings.outbox_poll_s)

    async def run_once(self) -> int:
        """One pass: claim and attempt the due head event of every job; returns how many were attempted."""
        now = time.time()
        async with self._sessions() as session:
            rows = (
                await session.scalars(
                    select(WebhookOutbox)
                    .where(WebhookOutbox.status == "pending")
                    .order_by(WebhookOutbox.id)
                    .limit(_BATCH)
                )
            ).all()
        heads: dict[str, WebhookOutbox] = {}
        for row in rows:
            heads.setdefault(row.job_public_id, row)
        due = [r for r in heads.values() if r.next_attempt_at <= now and (r.lease_until or 0) < now]
        claimed = [r for r in due if await self._claim(r, now)]
        tasks = [asyncio.create_task(self._deliver(r)) for r in claimed]
        for task in tasks:
            self._inflight.add(task)
            task.add_done_callback(self._inflight.discard)
        if tasks:
            await asyncio.gather(*tasks, return_exceptions=True)
        return len(tasks)

    async def _claim(self, row: WebhookOutbox, now: float) -> bool:
        lease = now + self._settings.webhook_timeout_s + 30.0
        async with self._sessions() as session, session.begin():
            result = await session.execute(
                update(WebhookOutbox)
                .where(
                    WebhookOutbox.id == row.id,
                    WebhookOutbox.status == "pending",
                    or_(WebhookOutbox.lease_until.is_(None), WebhookOutbox.lease_until < now),
                )
                .values(lease_until=lease)
            )
        return bool(getattr(result, "rowcount", 0))

    async def _deliver(self, row: WebhookOutbox) -> None:
        attempt = row.attempts + 1
        try:
            outcome, error = await self._attempt(
                row.url, row.event, row.body.encode(), row.event_id, attempt, row.owner
            )
        except asyncio.CancelledError:  # shutting down: hand the event back at once (it is sent after restart)
            with contextlib.suppress(Exception):
                await asyncio.shield(self._release(row.id))
            raise
        except Exception as exc:  # a bug in an attempt must not kill the loop; retried like a failed POST
            outcome, error = "retry", f"{type(exc).__name__}: {exc}"
        now = time.time()
        values: dict[str, Any] = {"attempts": attempt, "lease_until": None, "last_error": error}
        if outcome == "delivered":
            values.update(status="delivered", finished_at=now)
        elif outcome == "refused" or attempt >= self._settings.webhook_max_attempts:
            values.update(status="dead", finished_at=now)
            logger.warning(
                "webhook %s for job %s given up after %d attempt(s): %s", row.event, row.job_public_id, attempt, error
            )
        else:
            delay = min(self._settings.webhook_backoff_s * 2 ** (attempt - 1), _MAX_BACKOFF_S)
            values["next_attempt_at"] = now + delay
        metrics.webhook_outcome(row.event, "gave_up" if outcome == "retry" and "status" in values else outcome)
        async with self._sessions() as session, session.begin():
            await session.execute(update(WebhookOutbox).where(WebhookOutbox.id == row.id).values(**values))
        if outcome == "retry" and values.get("status") is None:
            asyncio.get_running_loop().call_later(
                max(0.0, values["next_attempt_at"] - time.time()) + 0.01, self._wake.set
            )

    async def _release(self, row_id: int) -> None:
        async with self._sessions() as session, session.begin():
            await session.execute(update(WebhookOutbox).where(WebhookOutbox.id == row_id).values(lease_until=None))

    async def close(self, *, grace_s: float = 2.0) -> None:
        """Write what is being written, let attempts under way finish within ``grace_s``, then stop."""
        deadline = time.monotonic() + grace_s
        if self._inserts:
            await asyncio.wait(list(self._inserts), timeout=max(0.1, grace_s))
        self._stopping = True
        self._wake.set()
        if self._inflight:
            await asyncio.wait(list(self._inflight), timeout=max(0.0, deadline - time.monotonic()))
        if self._loop_task is not None:
            self._loop_task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._loop_task
            self._loop_task = None


def _terminal_payload(job: Job) -> tuple[str, dict[str, Any]]:
    """The final event without :class:`~orchestrator.services.callbacks.CallbackPayloads` (an outbox built without
    one): ``done`` with a summary / ``failed`` / a ``status`` of cancelled."""
    if job.status == "succeeded":
        result = job.result or {}
        summary = {
            "title": result.get("title"),
            "metadata": result.get("metadata"),
            "items": len(result.get("items", [])),
        }
        return "done", {"status": "succeeded", "result": summary}
    if job.status == "failed":
        return "failed", {"status": "failed", "error": job.error}
    return "status", {"status": "cancelled"}
