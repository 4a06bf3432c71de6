"""Keyword-only async functions over the database: the only module that writes SQL.

Ownership rule: a worker's writes to a running job are conditional on ``status = 'running' AND worker_id = me``.
A write that changes no row means the job was cancelled or re-claimed after a lapsed lease, and the worker must stop.
Together with the claim (``FOR UPDATE SKIP LOCKED`` on PostgreSQL, a conditional ``UPDATE`` on SQLite), this is what
keeps two orchestrator processes from ever running the same job.
"""

from __future__ import annotations

import time
import uuid
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import and_, case, func, or_, select, text, update
from sqlalchemy.ext.asyncio import AsyncSession

from orchestrator.db import TERMINAL_STATUSES, Job, JobEvent, StageRun

# Any constant shared by all processes: serialises the queue-bound check with the insert on PostgreSQL.
_PG_SUBMIT_LOCK = 0x7472_6974_0001


class QueueFullError(Exception):
    def __init__(self, active: int, limit: int) -> None:
        super().__init__(f"the job queue is full ({active} of {limit} jobs queued or running); retry later")
        self.active = active
        self.limit = limit


@dataclass(frozen=True)
class QueueEntry:
    id: int
    public_id: str
    owner: str


def _now() -> float:
    return time.time()


def _claimed(worker_id: str, now: float, lease_s: float) -> dict[str, Any]:
    """The columns a claim sets: running under this worker's lease, one more attempt."""
    return {
        "status": "running",
        "worker_id": worker_id,
        "lease_expires_at": now + lease_s,
        "attempts": Job.attempts + 1,
        "started_at": func.coalesce(Job.started_at, now),
        "updated_at": now,
    }


def _claimable(now: float) -> Any:
    return or_(Job.status == "queued", and_(Job.status == "running", Job.lease_expires_at < now))


async def create_job(
    *,
    session: AsyncSession,
    kind: str,
    owner: str,
    params: dict[str, Any],
    callback_url: str | None = None,
    queue_max: int,
    public_id: str | None = None,
) -> Job:
    """Insert a queued job, or raise :class:`QueueFullError` when ``queue_max`` jobs are already queued or running."""
    if session.bind is not None and session.bind.dialect.name == "postgresql":
        await session.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": _PG_SUBMIT_LOCK})
    active = await count_active(session=session)
    if active >= queue_max:
        await session.rollback()
        raise QueueFullError(active, queue_max)
    now = _now()
    job = Job(
        public_id=public_id or str(uuid.uuid4()),
        kind=kind,
        owner=owner,
        status="queued",
        params=params,
        state={},
        callback_url=callback_url,
        attempts=0,
        created_at=now,
        updated_at=now,
    )
    session.add(job)
    await session.flush()
    session.add(JobEvent(job_id=job.id, kind="status", data={"status": "queued"}, created_at=now))
    await session.commit()
    return job


async def count_active(*, session: AsyncSession) -> int:
    stmt = select(func.count()).select_from(Job).where(Job.status.in_(("queued", "running")))
    return int((await session.execute(stmt)).scalar_one())


async def count_by_status(*, session: AsyncSession, owner: str | None = None) -> dict[str, int]:
    """Jobs per status: everyone's, or ``owner``'s only."""
    stmt = select(Job.status, func.count()).group_by(Job.status)
    if owner is not None:
        stmt = stmt.where(Job.owner == owner)
    rows = (await session.execute(stmt)).all()
    return {status: int(n) for status, n in rows}


async def get_job(*, session: AsyncSession, public_id: str, owner: str | None = None) -> Job | None:
    stmt = select(Job).where(Job.public_id == public_id)
    if owner is not None:
        stmt = stmt.where(Job.owner == owner)
    return (await session.execute(stmt)).scalar_one_or_none()


async def get_jobs(*, session: AsyncSession, public_ids: Sequence[str], owner: str) -> list[Job]:
    if not public_ids:
        return []
    stmt = select(Job).where(Job.public_id.in_(list(public_ids)), Job.owner == owner)
    return list((await session.execute(stmt)).scalars())


async def list_owned_jobs(
    *,
    session: AsyncSession,
    owner: str,
    kind: str,
    statuses: Sequence[str] | None = None,
    limit: int = 50,
    offset: int = 0,
) -> tuple[list[Job], int]:
    """The owner's jobs of ``kind`` (optionally only some statuses), newest first, and how many there are."""
    where = [Job.owner == owner, Job.kind == kind]
    if statuses:
        where.append(Job.status.in_(list(statuses)))
    total = (await session.execute(select(func.count()).select_from(Job).where(*where))).scalar_one()
    stmt = select(Job).where(*where).order_by(Job.created_at.desc(), Job.id.desc()).limit(limit).offset(offset)
    return list((await session.execute(stmt)).scalars()), int(total)


async def get_job_by_id(*, session: AsyncSession, job_id: int) -> Job | None:
    return await session.get(Job, job_id, populate_existing=True)


async def fair_queue(*, session: AsyncSession, now: float | None = None) -> list[QueueEntry]:
    """Claimable jobs in the order workers take them: FIFO with per-user fairness.

    A user's k-th waiting job ranks ``running_jobs(user) + k``; jobs run in (rank, submission) order. A user who queues
    fifty songs therefore does not starve one who queues a single song after them. Jobs whose lease lapsed (their
    worker died) come first: they were already running.
    """
    now = _now() if now is None else now
    rows = (
        await session.execute(
            select(Job.id, Job.public_id, Job.owner, Job.status).where(_claimable(now)).order_by(Job.id)
        )
    ).all()
    running = dict(
        (
            await session.execute(
                select(Job.owner, func.count())
                .where(Job.status == "running", Job.lease_expires_at >= now)
                .group_by(Job.owner)
            )
        ).all()
    )
    per_user: dict[str, int] = defaultdict(int)
    ranked: list[tuple[int, int, QueueEntry]] = []
    for job_id, public_id, owner, status in rows:
        if status == "running":  # lapsed lease: resume first
            ranked.append((-1, job_id, QueueEntry(job_id, public_id, owner)))
            continue
        per_user[owner] += 1
        ranked.append((int(running.get(owner, 0)) + per_user[owner], job_id, QueueEntry(job_id, public_id, owner)))
    ranked.sort(key=lambda r: (r[0], r[1]))
    return [entry for _, _, entry in ranked]


async def claim_next_job(
    *, session: AsyncSession, worker_id: str, lease_s: float, max_attempts: int = 1_000_000
) -> Job | None:
    """Take the next job in fair order for ``worker_id`` (status running, lease set, attempts + 1), or None.

    PostgreSQL: the candidate row is locked with ``SELECT … FOR UPDATE SKIP LOCKED`` so concurrent claimers pass over
    each other's picks. SQLite: an ``UPDATE … WHERE <still claimable>`` is atomic (writes are serialised) and its row
    count says whether this worker won.
    """
    now = _now()
    order = await fair_queue(session=session, now=now)
    if not order:
        await session.rollback()
        return None
    postgres = session.bind is not None and session.bind.dialect.name == "postgresql"
    claimed_id: int | None = None
    if postgres:
        ids = [entry.id for entry in order[:64]]
        stmt = (
            select(Job.id)
            .where(Job.id.in_(ids), _claimable(now))
            .order_by(case({job_id: rank for rank, job_id in enumerate(ids)}, value=Job.id))
            .limit(1)
            .with_for_update(skip_locked=True)
        )
        claimed_id = (await session.execute(stmt)).scalar_one_or_none()
        if claimed_id is not None:
            await session.execute(
                update(Job)
                .where(Job.id == claimed_id)
                .values(**_claimed(worker_id, now, lease_s))
            )
    else:
        for entry in order[:64]:
            result = await session.execute(
                update(Job)
                .where(Job.id == entry.id, _claimable(now))
                .values(**_claimed(worker_id, now, lease_s))
            )
            if getattr(result, "rowcount", 0) == 1:
                claimed_id = entry.id
                break
    if claimed_id is None:
        await session.rollback()
        return None
    await session.commit()
    job = await get_job_by_id(session=session, job_id=claimed_id)
    if job is not None and job.attempts > max_attempts:
        await finish_job(
            session=session,
            job_id=job.id,
            worker_id=worker_id,
            status="failed",
            error=f"the job was interrupted {job.attempts - 1} times (limit {max_attempts}); giving up",
        )
        return None
    if job is not None and job.attempts > 1:
        await add_event(
            session=session, job_id=job.id, kind="status", data={"status": "running", "resumed": job.attempts}
        )
    return job


def _owned(job_id: int, worker_id: str) -> Any:
    return and_(Job.id == job_id, Job.status == "running", Job.worker_id == worker_id)


async def renew_lease(*, session: AsyncSession, job_id: int, worker_id: str, lease_s: float) -> bool:
    """Extend the lease; False when the job is no longer this worker's (cancelled, or re-claimed by another)."""
    now = _now()
    result = await session.execute(update(Job).where(_owned(job_id, worker_id)).values(lease_expires_at=now + lease_s))
    await session.commit()
    return getattr(result, "rowcount", 0) == 1


async def update_job(*, session: AsyncSession, job_id: int, worker_id: str, **values: Any) -> bool:
    """Set columns on a job this worker owns; False when it does not own it any more."""
    values["updated_at"] = _now()
    result = await session.execute(update(Job).where(_owned(job_id, worker_id)).values(**values))
    await session.commit()
    return getattr(result, "rowcount", 0) == 1


async def finish_job(
    *,
    session: AsyncSession,
    job_id: int,
    worker_id: str,
    status: str,
    result: dict[str, Any] | None = None,
    error: str | None = None,
) -> bool:
    """Move an owned job to a terminal status and log the final event, in one transaction."""
    if status not in TERMINAL_STATUSES:
        raise ValueError(f"finish_job: status must be one of {TERMINAL_STATUSES}, got {status!r}")
    now = _now()
    changed = await session.execute(
        update(Job)
        .where(_owned(job_id, worker_id))
        .values(
            status=status,
            result=result,
            error=error,
            finished_at=now,
            updated_at=now,
            lease_expires_at=None,
        )
    )
    if getattr(changed, "rowcount", 0) != 1:
        await session.rollback()
        return False
    kind = {"succeeded": "done", "failed": "failed", "cancelled": "status"}[status]
    data: dict[str, Any] = {"status": status}
    if error:
        data["error"] = error
    session.add(JobEvent(job_id=job_id, kind=kind, data=data, created_at=now))
    await session.commit()
    return True


async def release_job(*, session: AsyncSession, job_id: int, worker_id: str, give_back_attempt: bool = True) -> bool:
    """Hand an owned running job back to the queue (graceful shutdown, a database outage): the next worker resumes it
    at once. The interrupted run does not count against ``job_max_attempts`` unless ``give_back_attempt`` is False."""
    now = _now()
    attempts = case((Job.attempts > 0, Job.attempts - 1), else_=0) if give_back_attempt else Job.attempts
    result = await session.execute(
        update(Job)
        .where(_owned(job_id, worker_id))
        .values(status="queued", worker_id=None, lease_expires_at=None, updated_at=now, attempts=attempts)
    )
    if getattr(result, "rowcount", 0) == 1:
        session.add(JobEvent(job_id=job_id, kind="status", data={"status": "queued", "requeued": True}, created_at=now))
        await session.commit()
        return True
    await session.rollback()
    return False


async def cancel_job(*, session: AsyncSession, public_id: str, owner: str) -> Job | None:
    """Cancel a queued or running job of ``owner``. Returns the job (already-finished jobs are left as they are)."""
    job = await get_job(session=session, public_id=public_id, owner=owner)
    if job is None:
        return None
    now = _now()
    result = await session.execute(
        update(Job)
        .where(Job.id == job.id, Job.status.in_(("queued", "running")))
        .values(status="cancelled", finished_at=now, updated_at=now, lease_expires_at=None)
    )
    if getattr(result, "rowcount", 0) == 1:
        session.add(JobEvent(job_id=job.id, kind="status", data={"status": "cancelled"}, created_at=now))
    await session.commit()
    return await get_job_by_id(session=session, job_id=job.id)


async def add_event(*, session: AsyncSession, job_id: int, kind: str, data: dict[str, Any]) -> int:
    event = JobEvent(job_id=job_id, kind=kind, data=data, created_at=_now())
    session.add(event)
    await session.commit()
    return event.id


async def list_events(*, session: AsyncSession, job_id: int, after_id: int = 0, limit: int = 500) -> list[JobEvent]:
    stmt = select(JobEvent).where(JobEvent.job_id == job_id, JobEvent.id > after_id).order_by(JobEvent.id).limit(limit)
    return list((await session.execute(stmt)).scalars())


async def last_event_id(*, session: AsyncSession, job_id: int) -> int:
    stmt = select(func.max(JobEvent.id)).where(JobEvent.job_id == job_id)
    return int((await session.execute(stmt)).scalar_one_or_none() or 0)


async def start_stage_run(
    *, session: AsyncSession, job_id: int, stage: str, worker_id: str, server: str | None = None
) -> int:
    run = StageRun(job_id=job_id, stage=stage, worker_id=worker_id, server=server, started_at=_now())
    session.add(run)
    await session.commit()
    return run.id


async def finish_stage_run(*, session: AsyncSession, run_id: int, ok: bool, server: str | None = None) -> None:
    values: dict[str, Any] = {"ok": ok, "finished_at": _now()}
    if server is not None:
        values["server"] = server
    await session.execute(update(StageRun).where(StageRun.id == run_id).values(**values))
    await session.commit()


async def stage_runs(*, session: AsyncSession, job_id: int) -> list[StageRun]:
    stmt = select(StageRun).where(StageRun.job_id == job_id).order_by(StageRun.id)
    return list((await session.execute(stmt)).scalars())


async def stage_time_means(*, session: AsyncSession, window: int = 50) -> dict[str, float]:
    """Mean duration of the last ``window`` successful runs of each stage (seconds)."""
    means: dict[str, float] = {}
    for stage in ("lyrics", "metadata", "audio", "post"):
        recent = (
            select((StageRun.finished_at - StageRun.started_at).label("dt"))
            .where(StageRun.stage == stage, StageRun.ok.is_(True), StageRun.finished_at.is_not(None))
            .order_by(StageRun.id.desc())
            .limit(window)
            .subquery()
        )
        mean = (await session.execute(select(func.avg(recent.c.dt)))).scalar_one_or_none()
        if mean is not None:
            means[stage] = float(mean)
    return means


async def running_jobs(*, session: AsyncSession) -> list[Job]:
    stmt = select(Job).where(Job.status == "running").order_by(Job.id)
    return list((await session.execute(stmt)).scalars())


async def is_cancelled(*, session: AsyncSession, job_id: int) -> bool:
    status = (await session.execute(select(Job.status).where(Job.id == job_id))).scalar_one_or_none()
    return status == "cancelled"
