"""Fixtures for the orchestrator tests: the real PostgreSQL on 127.0.0.1:5432 (one database per test session,
dropped afterwards) and SQLite files."""

from __future__ import annotations

import asyncio
import os
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

PG_HOST = os.environ.get("TRITONE_TEST_PG_HOST", "127.0.0.1")
PG_PORT = int(os.environ.get("TRITONE_TEST_PG_PORT", "5432"))
PG_USER = os.environ.get("TRITONE_TEST_PG_USER", "postgres")


async def _admin(sql: str) -> None:
    import asyncpg

    conn = await asyncpg.connect(host=PG_HOST, port=PG_PORT, user=PG_USER, database="postgres", timeout=5)
    try:
        await conn.execute(sql)
    finally:
        await conn.close()


@pytest.fixture(scope="session")
def pg_database() -> Iterator[str]:
    """A fresh PostgreSQL database for this test session (dropped at the end)."""
    name = f"tritone_test_{uuid.uuid4().hex[:12]}"
    try:
        asyncio.run(_admin(f'CREATE DATABASE "{name}"'))
    except (OSError, Exception) as exc:  # no server: say so instead of failing every test
        pytest.skip(f"PostgreSQL at {PG_HOST}:{PG_PORT} is not reachable as {PG_USER!r}: {exc}")
    try:
        yield f"postgresql+asyncpg://{PG_USER}@{PG_HOST}:{PG_PORT}/{name}"
    finally:
        asyncio.run(_admin(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))


async def _truncate(url: str) -> None:
    import asyncpg

    conn = await asyncpg.connect(url.replace("postgresql+asyncpg://", "postgresql://"))
    try:
        if await conn.fetchval("SELECT to_regclass('public.jobs') IS NOT NULL"):
            await conn.execute("TRUNCATE jobs, job_events, stage_runs RESTART IDENTITY CASCADE")
            if await conn.fetchval("SELECT to_regclass('public.webhook_outbox') IS NOT NULL"):
                await conn.execute("TRUNCATE webhook_outbox RESTART IDENTITY")
            if await conn.fetchval("SELECT to_regclass('public.clips') IS NOT NULL"):
                await conn.execute("TRUNCATE clips RESTART IDENTITY")
    finally:
        await conn.close()


@pytest.fixture
def pg_url(pg_database: str) -> str:
    """The session's PostgreSQL database, emptied before each test."""
    asyncio.run(_truncate(pg_database))
    return pg_database


@pytest.fixture(params=["sqlite", "postgres"])
def db_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """Each test using this runs twice: on an SQLite file and on the real PostgreSQL."""
    if request.param == "sqlite":
        return f"sqlite+aiosqlite:///{tmp_path / 'tritone.db'}"
    return str(request.getfixturevalue("pg_url"))
