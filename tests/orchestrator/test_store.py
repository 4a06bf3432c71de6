"""The durable queue in the database: claims, fairness, leases, ownership — on SQLite and the real PostgreSQL."""

from __future__ import annotations

import asyncio
import time

import pytest
from sqlalchemy import update

from orchestrator import store
from orchestrator.db import Job, make_engine, make_sessionmaker
from orchestrator.migrations import run_migrations


@pytest.fixture
async def sessions(db_url: str):
    engine = make_engine(db_url)
    await run_migrations(engine)
    await run_migrations(engine)  # idempotent
    try:
        yield make_sessionmaker(engine)
    finally:
        await engine.dispose()


async def _submit(sessions, owner: str, n: int = 1, queue_max: int = 1000) -> list[Job]:
    jobs = []
    for i in range(n):
        async with sessions() as session:
            jobs.append(
                await store.create_job(session=session, kind="song", owner=owner, params={"i": i}, queue_max=queue_max)
            )
    return jobs


async def _claim(sessions, worker: str = "w1", lease_s: float = 30.0) -> Job | None:
    async with sessions() as session:
        return await store.claim_next_job(session=session, worker_id=worker, lease_s=lease_s, max_attempts=3)


async def test_fair_order_interleaves_users(sessions) -> None:
    alice = await _submit(sessions, "alice", 4)
    bob = await _submit(sessions, "bob", 1)
    carol = await _submit(sessions, "carol", 2)
    async with sessions() as session:
        order = [e.public_id for e in await store.fair_queue(session=session)]
    # rank 1: each user's first job (in submission order), rank 2: each user's second, ...
    expected = [alice[0], bob[0], carol[0], alice[1], carol[1], alice[2], alice[3]]
    assert order == [j.public_id for j in expected]
    # Claims follow that order; a running job counts against its owner's rank.
    first = await _claim(sessions)
    assert first is not None and first.public_id == alice[0].public_id
    async with sessions() as session:
        order = [e.public_id for e in await store.fair_queue(session=session)]
    assert order[:3] == [bob[0].public_id, carol[0].public_id, alice[1].public_id]


async def test_claim_marks_running_with_lease_and_never_twice(sessions) -> None:
    jobs = await _submit(sessions, "alice", 6)
    claimed = await asyncio.gather(*(_claim(sessions, f"w{i}") for i in range(10)))
    got = [j for j in claimed if j is not None]
    assert sorted(j.public_id for j in got) == sorted(j.public_id for j in jobs)  # each exactly once
    for job in got:
        assert job.status == "running" and job.attempts == 1 and job.lease_expires_at > time.time()
    assert await _claim(sessions) is None


async def test_ownership_rules_writes(sessions) -> None:
    (job,) = await _submit(sessions, "alice")
    claimed = await _claim(sessions, "w1", lease_s=30)
    assert claimed is not None
    async with sessions() as session:
        assert await store.update_job(session=session, job_id=job.id, worker_id="w1", stage="lyrics")
        assert not await store.update_job(session=session, job_id=job.id, worker_id="intruder", stage="audio")
        assert await store.renew_lease(session=session, job_id=job.id, worker_id="w1", lease_s=30)
    # A cancelled job stops being the worker's: its next write fails, and it cannot finish it as succeeded.
    async with sessions() as session:
        cancelled = await store.cancel_job(session=session, public_id=job.public_id, owner="alice")
        assert cancelled is not None and cancelled.status == "cancelled"
    async with sessions() as session:
        assert not await store.renew_lease(session=session, job_id=job.id, worker_id="w1", lease_s=30)
        assert not await store.finish_job(session=session, job_id=job.id, worker_id="w1", status="succeeded")
        assert (await store.get_job(session=session, public_id=job.public_id)).status == "cancelled"


async def test_lapsed_lease_is_reclaimed_then_given_up(sessions) -> None:
    (job,) = await _submit(sessions, "alice")
    for attempt in (1, 2, 3):
        claimed = await _claim(sessions, f"w{attempt}")
        assert claimed is not None and claimed.attempts == attempt
        assert await _claim(sessions, "other") is None  # the lease is live: nobody else gets it
        async with sessions() as session:  # the worker "dies": its lease lapses
            await session.execute(update(Job).where(Job.id == job.id).values(lease_expires_at=time.time() - 1))
            await session.commit()
    # a fourth interruption exceeds max_attempts=3: the job fails instead of looping forever
    assert await _claim(sessions, "w4") is None
    async with sessions() as session:
        final = await store.get_job(session=session, public_id=job.public_id)
    assert final.status == "failed" and "interrupted" in final.error


async def test_release_requeues_and_queue_bound(sessions) -> None:
    (job,) = await _submit(sessions, "alice", 1, queue_max=2)
    await _submit(sessions, "bob", 1, queue_max=2)
    with pytest.raises(store.QueueFullError):
        await _submit(sessions, "carol", 1, queue_max=2)
    claimed = await _claim(sessions, "w1")
    assert claimed is not None
    async with sessions() as session:
        assert await store.release_job(session=session, job_id=claimed.id, worker_id="w1")
        again = await store.get_job(session=session, public_id=claimed.public_id)
        assert again.status == "queued" and again.worker_id is None
        counts = await store.count_by_status(session=session)
    assert counts == {"queued": 2}
