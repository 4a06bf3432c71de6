"""Alembic environment: runs on the connection the service hands over (see ``run_migrations``)."""

from __future__ import annotations

import asyncio

from alembic import context
from sqlalchemy.engine import Connection

from orchestrator.db import Base

target_metadata = Base.metadata


def _run(connection: Connection) -> None:
    context.configure(
        connection=connection,
        target_metadata=target_metadata,
        render_as_batch=connection.dialect.name == "sqlite",
    )
    with context.begin_transaction():
        context.run_migrations()


def _run_standalone() -> None:
    """``alembic`` on the command line: connect with the service's own settings."""
    from orchestrator.db import make_engine
    from orchestrator.settings import Settings

    engine = make_engine(Settings().resolved_database_url)

    async def go() -> None:
        async with engine.begin() as conn:
            await conn.run_sync(_run)
        await engine.dispose()

    asyncio.run(go())


connection = context.config.attributes.get("connection")
if connection is not None:
    _run(connection)
else:
    _run_standalone()
