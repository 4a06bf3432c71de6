"""The queue: where a job stands (position, eta) and the workers that take jobs off it.

The queue itself is the ``jobs`` table (status ``queued``), so it survives restarts and is shared by every
orchestrator process on the same database. :class:`WorkerPool` runs ``triton_concurrency`` jobs at a time in this
process — the concurrency limit towards Triton — claiming them in fair order (see ``store.fair_queue``), keeping their
leases alive, stopping them when cancelled, and handing them back to the queue on shutdown.
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
from orchestrator.settings import Settings

logger = logging.getLogger(__name__)

# Stages each kind of job runs (for eta): a song always writes lyrics, an ACE-Step job rarely does.
_KIND_STAGES = {"song": ("lyrics", "metadata", "audio", "post"), "music": ("metadata", "audio", "post")}
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
            except Exception:
                logger.exception("refreshing queue positions failed")
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
    ) -> None:
        self._settings = settings
        self._sessions = sessions
        self._run_job = run_job
        self.worker_id = worker_id
        self._on_change = on_change or (lambda: None)
        self._loops: list[asyncio.Task[None]] = []
        self._active: dict[int, asyncio.Task[None]] = {}
        self._wake = asyncio.Event()
        self._stopping = False

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

    async def stop(self) -> None:
        """Stop taking jobs, interrupt running ones and hand them back to the queue for the next start."""
        self._stopping = True
        self._wake.set()
        for task in list(self._active.values()):
            task.cancel()
        if self._loops:
            await asyncio.wait(self._loops, timeout=30)
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
        while not self._stopping:
            try:
                job = await self._claim()
            except Exception:
                logger.exception("worker %s: claiming a job failed; retrying", self.worker_id)
                job = None
                await asyncio.sleep(1.0)
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
            keeper = asyncio.create_task(self._keep_lease(job.id, task), name=f"lease-{job.public_id}")
            try:
                await asyncio.wait({task})
            finally:
                keeper.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await keeper
                self._active.pop(job.id, None)
            if task.cancelled() and self._stopping:
                async with self._sessions() as session:
                    if await store.release_job(session=session, job_id=job.id, worker_id=self.worker_id):
                        logger.info("worker %s: job %s handed back to the queue", self.worker_id, job.public_id)
            elif not task.cancelled() and task.exception() is not None:
                logger.error("worker %s: job %s crashed: %r", self.worker_id, job.public_id, task.exception())
            self._on_change()

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
            except Exception:
                logger.exception("worker %s: lease renewal failed for job %d", self.worker_id, job_id)
                continue
            if not ours and not task.done():
                logger.info(
                    "worker %s: job %d is no longer ours (cancelled or re-claimed); stopping", self.worker_id, job_id
                )
                task.cancel()
                return
