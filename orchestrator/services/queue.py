"""The queue: where a job stands (position, eta) and the workers that take jobs off it.

The queue itself is the ``jobs`` table (status ``queued``), so it survives restarts and is shared by every
orchestrator process on the same database. :class:`WorkerPool` runs ``triton_concurrency`` jobs at a time in this
process — the concurrency limit towards Triton — claiming them in fair order (see ``store.fair_queue``), keeping their
leases alive, stopping them when cancelled, and handing them back to the queue on shutdown.

Outages: while no Triton server is healthy the workers claim nothing (queued jobs wait in the queue rather than fail
one stage after another); while the database is unreachable they back off, and a job whose run was cut short by the
outage is handed back to the queue, its attempt given back, once the database answers again.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import time
from collections.abc import Callable, Coroutine
from typing import Any

from sqlalchemy.ext.asyncio import async_sessionmaker

from orchestrator import store
from orchestrator.db import Job
from orchestrator.services import metrics
from orchestrator.services.availability import Backoff, gateway_serving, is_database_outage, wait_gateway
from orchestrator.services.availability import brief as _brief
from orchestrator.settings import Settings

logger = logging.getLogger(__name__)

# Stages each kind of job runs (for eta): a song always writes lyrics, an ACE-Step job rarely does.
_KIND_STAGES = {
    "song": ("lyrics", "metadata", "audio", "post"),
    "music": ("metadata", "audio", "post"),
    "stems": ("separate", "post"),
}
_POSITIONS_TTL_S = 0.5
_MIN_REFRESH_S = 0.25
_MEANS_TTL_S = 5.0


class QueueInfo:
    """Queue positions and eta estimates. A background task refreshes them (positions every 0.5 s, stage times every
    5 s), so answering a status request never waits for the queue to be re-read."""

    def __init__(self, settings: Settings, sessions: async_sessionmaker) -> None:
        self._settings = settings
        self._sessions = sessions
        self._positions: dict[str, int] = {}
        self._positions_at = 0.0
        self._running = 0
        self._means: dict[str, float] = {}
        self._means_at = 0.0
        self._lock = asyncio.Lock()
        self._task: asyncio.Task[None] | None = None
        self._dirty = asyncio.Event()
        self.counts: dict[str, int] = {}

    async def start(self) -> None:
        await self._refresh_positions()
        await self._refresh_means()
        self._task = asyncio.create_task(self._loop(), name="queue-info")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None

    async def _loop(self) -> None:
        while True:
            # asyncio.timeout, not wait_for: on 3.11 wait_for can swallow a cancellation racing with the wake-up.
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(_POSITIONS_TTL_S):
                    await self._dirty.wait()
            # Coalesce bursts (a busy API changes the queue many times a second): at most ~4 refreshes per second.
            await asyncio.sleep(_MIN_REFRESH_S)
            self._dirty.clear()
            try:
                await self._refresh_positions()
                if time.monotonic() - self._means_at >= _MEANS_TTL_S:
                    await self._refresh_means()
            except Exception as exc:
                if not is_database_outage(exc):
                    logger.exception("refreshing queue positions failed")
                else:
                    metrics.DATABASE_ERRORS.labels(where="queue_info").inc()
                    logger.warning("refreshing queue positions: the database is unreachable (%s)", _brief(exc))
                await asyncio.sleep(1.0)

    def invalidate(self) -> None:
        """The queue changed (a submission, a claim, a finish): refresh soon."""
        self._dirty.set()

    async def _refresh_positions(self) -> None:
        async with self._lock:
            async with self._sessions() as session:
                order = await store.fair_queue(session=session)
                counts = await store.count_by_status(session=session)
            self._positions = {entry.public_id: i + 1 for i, entry in enumerate(order)}
            self._running = counts.get("running", 0)
            self._positions_at = time.monotonic()
            self.counts = counts
        metrics.set_job_counts(counts)
        metrics.QUEUE_DEPTH.set(len(order))
        metrics.QUEUE_USERS.set(len({entry.owner for entry in order}))
        metrics.set_queue_by_class(
            [entry.owner for entry in order], self._settings.user_classes, self._settings.admin_users
        )

    async def _refresh_means(self) -> None:
        async with self._sessions() as session:
            self._means = await store.stage_time_means(session=session)
        self._means_at = time.monotonic()

    async def positions(self) -> dict[str, int]:
        if self._task is None and time.monotonic() - self._positions_at >= _POSITIONS_TTL_S:
            await self._refresh_positions()  # not started (tools and tests that use it directly)
        return self._positions

    async def stage_means(self) -> dict[str, float]:
        if self._task is None and time.monotonic() - self._means_at >= _MEANS_TTL_S:
            await self._refresh_means()
        return self._means

    async def job_seconds(self, kind: str = "song") -> float:
        """Measured mean wall time of one job of ``kind`` (sum of its stages' means), or the configured guess."""
        means = await self.stage_means()
        stages = _KIND_STAGES.get(kind, _KIND_STAGES["song"])
        guess = self._settings.default_job_seconds / len(stages)  # unmeasured stages: an even share of the guess
        return sum(means.get(s, guess) for s in stages)

    async def position(self, public_id: str) -> int:
        """1-based place of a queued job; one submitted since the last refresh counts as last in line."""
        positions = await self.positions()
        return positions.get(public_id) or len(positions) + 1

    async def eta(self, job: Job, position: int) -> float | None:
        """Seconds until the job should be done: queued → waves of ``concurrency`` jobs ahead of it, plus its own
        run; running → the means of the stages it has not finished, less the time spent in the current one."""
        if job.status in ("succeeded", "failed", "cancelled"):
            return 0.0
        slots = max(1, self._settings.triton_concurrency)
        per_job = await self.job_seconds(job.kind)
        if job.status == "queued":
            # Jobs ahead of it: the running ones and the queued ones before it; they go ``slots`` at a time.
            waves = math.ceil((self._running + max(position, 1)) / slots)
            return round(waves * per_job, 1)
        means = await self.stage_means()
        stages = _KIND_STAGES.get(job.kind, _KIND_STAGES["song"])
        done = set((job.state or {}).get("done", []))
        remaining = sum(means.get(s, per_job / len(stages)) for s in stages if s not in done)
        started = (job.state or {}).get("stage_started_at")
        elapsed = time.time() - float(started) if job.stage and started else 0.0
        return round(max(0.0, remaining - elapsed), 1)

    async def retry_after(self) -> int:
        """Seconds after which a slot is likely free (for 429 Retry-After)."""
        per_job = await self.job_seconds()
        return max(1, math.ceil(per_job / max(1, self._settings.triton_concurrency)))


class WorkerPool:
    def __init__(
        self,
        *,
        settings: Settings,
        sessions: async_sessionmaker,
        run_job: Callable[[Job], Coroutine[Any, Any, None]],
        worker_id: str,
        on_change: Callable[[], None] | None = None,
        gateway: object | None = None,
    ) -> None:
        self._settings = settings
        self._sessions = sessions
        self._run_job = run_job
        self.worker_id = worker_id
        self._on_change = on_change or (lambda: None)
        # Asked before each claim: no job is taken while no Triton server is healthy (see availability.Serving).
        self._gateway = gateway
        self._loops: list[asyncio.Task[None]] = []
        self._active: dict[int, asyncio.Task[None]] = {}
        self._wake = asyncio.Event()
        self._stopping = False
        self._paused_reason: str | None = None

    @property
    def stopping(self) -> bool:
        return self._stopping

    @property
    def paused_reason(self) -> str | None:
        """Why the workers are not claiming now (no healthy Triton server, the database unreachable), or None."""
        return self._paused_reason

    def _pause(self, reason: str | None) -> None:
        if reason != self._paused_reason:
            if reason is None:
                logger.info("worker %s: claiming jobs again", self.worker_id)
            else:
                logger.warning("worker %s: not claiming jobs: %s", self.worker_id, reason)
            self._paused_reason = reason

    @property
    def active_job_ids(self) -> list[int]:
        return list(self._active)

    def start(self) -> None:
        for i in range(self._settings.triton_concurrency):
            self._loops.append(asyncio.create_task(self._loop(i), name=f"worker-{self.worker_id}-{i}"))
        logger.info("worker %s: %d job slot(s)", self.worker_id, len(self._loops))

    def wake(self) -> None:
        self._wake.set()

    def cancel_local(self, job_id: int) -> bool:
        """Stop a job this process is running (its row is already marked cancelled)."""
        task = self._active.get(job_id)
        if task is None:
            return False
        task.cancel()
        return True

    async def stop(self, grace_s: float = 30.0) -> None:
        """Stop taking jobs, interrupt running ones and hand them back to the queue (their attempt given back) for the
        next start, waiting at most ``grace_s`` seconds for that."""
        self._stopping = True
        self._wake.set()
        for task in list(self._active.values()):
            task.cancel()
        if self._loops:
            await asyncio.wait(self._loops, timeout=grace_s)
        for loop in self._loops:
            loop.cancel()
        for loop in self._loops:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await loop
        self._loops.clear()

    async def _claim(self) -> Job | None:
        async with self._sessions() as session:
            return await store.claim_next_job(
                session=session,
                worker_id=self.worker_id,
                lease_s=self._settings.job_lease_s,
                max_attempts=self._settings.job_max_attempts,
            )

    async def _loop(self, slot: int) -> None:
        backoff = Backoff(0.25, self._settings.outage_backoff_max_s)
        while not self._stopping:
            if not gateway_serving(self._gateway):
                self._pause("no Triton server is healthy")
                await wait_gateway(self._gateway, 0.5)
                continue
            try:
                job = await self._claim()
                backoff.reset()
                self._pause(None)
            except Exception as exc:
                if not is_database_outage(exc):
                    logger.exception("worker %s: claiming a job failed; retrying", self.worker_id)
                else:
                    metrics.DATABASE_ERRORS.labels(where="claim").inc()
                    self._pause(f"the database is unreachable ({_brief(exc)})")
                await backoff.sleep()
                continue
            if job is None:
                self._wake.clear()
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(self._settings.claim_poll_s):
                        await self._wake.wait()
                continue
            self._on_change()
            logger.info("worker %s slot %d: job %s (attempt %d)", self.worker_id, slot, job.public_id, job.attempts)
            task = asyncio.create_task(self._run_job(job), name=f"job-{job.public_id}")
            self._active[job.id] = task
            metrics.SLOTS_BUSY.set(len(self._active))
            keeper = asyncio.create_task(self._keep_lease(job.id, task), name=f"lease-{job.public_id}")
            try:
                await asyncio.wait({task})
            finally:
                keeper.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await keeper
                self._active.pop(job.id, None)
                metrics.SLOTS_BUSY.set(len(self._active))
            if task.cancelled() and self._stopping:
                await self._hand_back(job, "shutdown")
            elif not task.cancelled() and (error := task.exception()) is not None:
                if is_database_outage(error):
                    metrics.DATABASE_ERRORS.labels(where="job").inc()
                    logger.warning(
                        "worker %s: job %s stopped: the database is unreachable (%s); handing it back once it answers",
                        self.worker_id,
                        job.public_id,
                        _brief(error),
                    )
                    await self._hand_back(job, "database outage")
                else:
                    logger.error("worker %s: job %s crashed: %r", self.worker_id, job.public_id, error)
            self._on_change()

    async def _hand_back(self, job: Job, why: str) -> None:
        """Requeue ``job`` (its attempt given back), retrying while the database is unreachable — at most until its
        lease would have lapsed anyway (then any worker re-claims it), or one try when shutting down."""
        backoff = Backoff(0.25, self._settings.outage_backoff_max_s)
        deadline = time.monotonic() + self._settings.job_lease_s
        while True:
            try:
                async with self._sessions() as session:
                    if await store.release_job(session=session, job_id=job.id, worker_id=self.worker_id):
                        logger.info("worker %s: job %s back in the queue (%s)", self.worker_id, job.public_id, why)
                return
            except Exception as exc:
                if self._stopping or not is_database_outage(exc) or time.monotonic() > deadline:
                    logger.warning(
                        "worker %s: could not hand job %s back (%s); its lease will lapse and it will be re-claimed",
                        self.worker_id,
                        job.public_id,
                        _brief(exc),
                    )
                    return
                await backoff.sleep()

    async def _keep_lease(self, job_id: int, task: asyncio.Task[None]) -> None:
        """Renew the lease; when the job stops being ours (cancelled, or re-claimed after a stall) stop running it."""
        interval = min(2.0, self._settings.job_lease_s / 3)
        while not task.done():
            await asyncio.sleep(interval)
            try:
                async with self._sessions() as session:
                    ours = await store.renew_lease(
                        session=session, job_id=job_id, worker_id=self.worker_id, lease_s=self._settings.job_lease_s
                    )
            except Exception as exc:
                if is_database_outage(exc):
                    metrics.DATABASE_ERRORS.labels(where="lease").inc()
                    logger.warning("worker %s: lease renewal for job %d: %s", self.worker_id, job_id, _brief(exc))
                else:
                    logger.exception("worker %s: lease renewal failed for job %d", self.worker_id, job_id)
                continue
            if not ours and not task.done():
                logger.info(
                    "worker %s: job %d is no longer ours (cancelled or re-claimed); stopping", self.worker_id, job_id
                )
                task.cancel()
                return
