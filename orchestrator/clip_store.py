"""Keyword-only async functions over the ``clips`` table (``store.py`` holds the jobs'). The only module that writes
clip SQL; ``services/clips.py`` holds the logic (files, lineage, retention).

Owner rule: every read or delete a user can reach takes ``owner`` — another user's clip id is not found, exactly like
an id that never existed.
"""

from __future__ import annotations

from collections.abc import Sequence

from sqlalchemy import delete, func, select
from sqlalchemy.ext.asyncio import AsyncSession

from orchestrator.db import Clip


def stage_clips(*, session: AsyncSession, rows: Sequence[Clip]) -> None:
    """Add ``rows`` to ``session`` without committing: they land with the caller's next commit (the engine commits
    them with the job's success, so a job never succeeds without its clips, nor leaves clips of a lost run)."""
    session.add_all(list(rows))


async def insert_clip(*, session: AsyncSession, row: Clip) -> Clip:
    session.add(row)
    await session.commit()
    return row


async def get_clip(*, session: AsyncSession, public_id: str, owner: str | None) -> Clip | None:
    """The clip, or None when there is none — or it is not ``owner``'s (``owner=None``: anyone's, internal use)."""
    stmt = select(Clip).where(Clip.public_id == public_id)
    if owner is not None:
        stmt = stmt.where(Clip.owner == owner)
    return (await session.execute(stmt)).scalar_one_or_none()


async def job_clips(*, session: AsyncSession, job_id: str) -> list[Clip]:
    """The clips a job made, in item order."""
    stmt = select(Clip).where(Clip.job_id == job_id).order_by(Clip.item_index, Clip.id)
    return list((await session.execute(stmt)).scalars())


async def list_clips(
    *, session: AsyncSession, owner: str, limit: int, before_id: int | None = None
) -> tuple[list[Clip], int]:
    """``owner``'s clips newest first (by insertion order), at most ``limit``, those older than ``before_id`` when it
    is given (the cursor), and how many the owner has in all."""
    where = [Clip.owner == owner]
    total = (await session.execute(select(func.count()).select_from(Clip).where(*where))).scalar_one()
    if before_id is not None:
        where.append(Clip.id < before_id)
    stmt = select(Clip).where(*where).order_by(Clip.id.desc()).limit(limit)
    return list((await session.execute(stmt)).scalars()), int(total)


async def delete_clip(*, session: AsyncSession, public_id: str, owner: str) -> Clip | None:
    """Delete ``owner``'s clip row; returns it (None: no such clip of theirs). Its children keep their
    ``parent_id``."""
    row = await get_clip(session=session, public_id=public_id, owner=owner)
    if row is None:
        return None
    await session.execute(delete(Clip).where(Clip.id == row.id))
    await session.commit()
    return row


async def expired_clips(*, session: AsyncSession, created_before: float, limit: int = 500) -> list[Clip]:
    stmt = select(Clip).where(Clip.created_at < created_before).order_by(Clip.id).limit(limit)
    return list((await session.execute(stmt)).scalars())


async def delete_clips(*, session: AsyncSession, ids: Sequence[int]) -> int:
    if not ids:
        return 0
    result = await session.execute(delete(Clip).where(Clip.id.in_(list(ids))))
    await session.commit()
    return int(getattr(result, "rowcount", 0) or 0)


async def known_clip_ids(*, session: AsyncSession, public_ids: Sequence[str]) -> set[str]:
    """Which of ``public_ids`` have a row (the sweeper removes clip folders that have none)."""
    if not public_ids:
        return set()
    stmt = select(Clip.public_id).where(Clip.public_id.in_(list(public_ids)))
    return set((await session.execute(stmt)).scalars())


async def owner_clip_ids(*, session: AsyncSession, owner: str) -> list[str]:
    return list((await session.execute(select(Clip.public_id).where(Clip.owner == owner))).scalars())
