"""Drill: PostgreSQL stopped under load and started again. A private server (``initdb`` + ``pg_ctl`` on a free port in
a temp folder) — never the machine's own. Requests meanwhile fail fast with 503 (``/ready`` too), no job is lost, all
resume and succeed."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.orchestrator.drills import PostgresInstance, database_outage_drill, postgres_instance, postgres_missing

pytestmark = pytest.mark.skipif(postgres_missing() is not None, reason=f"no private PostgreSQL: {postgres_missing()}")


@pytest.fixture
def postgres() -> Iterator[PostgresInstance]:
    with postgres_instance() as instance:
        yield instance


async def test_postgres_restart_under_load_loses_no_job(tmp_path, postgres: PostgresInstance) -> None:
    result = await database_outage_drill(tmp_path, postgres, jobs=4, outage_s=3.0)
    assert (result.succeeded, result.failed, result.lost) == (4, 0, 0), (result.line(), result.errors)
    assert result.ready_503, "/ready did not answer 503 while the database was down"
    assert set(result.outage_statuses) == {503}, (result.outage_statuses, result.errors)
    assert not result.errors, result.errors
