"""Alembic migrations, run programmatically at start-up (``await run_migrations(engine)``).

``alembic -c orchestrator/migrations/alembic.ini revision -m "..."`` makes a new version file by hand; the service
itself never needs the alembic command line.
"""

from __future__ import annotations

import asyncio
import fcntl
import logging
from pathlib import Path

from alembic import command
from alembic.config import Config
from sqlalchemy import text
from sqlalchemy.engine import Connection
from sqlalchemy.ext.asyncio import AsyncEngine

logger = logging.getLogger(__name__)

MIGRATIONS_DIR = Path(__file__).resolve().parent
# Any constant works: it only has to be the same in every orchestrator process that shares the database.
_PG_LOCK_KEY = 0x7472_6974_6F6E


def _alembic_config(connection: Connection) -> Config:
    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS_DIR))
    cfg.attributes["connection"] = connection
    return cfg


def _upgrade(connection: Connection) -> None:
    if connection.dialect.name == "postgresql":
        # Two processes starting together: the second waits here, then finds the schema current.
        connection.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": _PG_LOCK_KEY})
    command.upgrade(_alembic_config(connection), "head")


async def run_migrations(engine: AsyncEngine) -> None:
    """Bring the schema to the newest version (idempotent; safe with several processes starting at once)."""
    lock_file = None
    database = engine.url.database
    if engine.dialect.name == "sqlite" and database and database != ":memory:":
        lock_path = Path(database).with_suffix(".migrate.lock")
        lock_path.parent.mkdir(parents=True, exist_ok=True)
        lock_file = lock_path.open("w")
        await asyncio.to_thread(fcntl.flock, lock_file.fileno(), fcntl.LOCK_EX)
    try:
        async with engine.begin() as conn:
            await conn.run_sync(_upgrade)
        logger.info("database schema is current (%s)", engine.url.render_as_string(hide_password=True))
    finally:
        if lock_file is not None:
            fcntl.flock(lock_file.fileno(), fcntl.LOCK_UN)
            lock_file.close()
