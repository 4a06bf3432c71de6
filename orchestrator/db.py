"""Database models (SQLAlchemy 2) and the async engine factory.

Tables:
- ``jobs``: one row per request (a song or an ACE-Step generation). ``status`` is the queue state
  (queued/running/succeeded/failed/cancelled), ``stage`` the pipeline stage (lyrics/metadata/audio/post).
  ``state`` holds the checkpointed output of every finished stage, so a re-run skips what is done.
  ``worker_id`` + ``lease_expires_at`` say who runs a job until when: a lapsed lease makes it claimable again.
- ``job_events``: the append-only event log behind the SSE stream (lyrics text, step progress, stage changes).
- ``stage_runs``: one row per stage attempt, with timings: the measured stage times behind ``eta_seconds``.
- ``clips``: one row per audio item the service made or received (migration 0003; ``services/clips.py``).

Times are float seconds since the epoch: identical on SQLite and PostgreSQL, no time-zone ambiguity.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import JSON, BigInteger, Boolean, Double, ForeignKey, Index, Integer, String, Text, event
from sqlalchemy.ext.asyncio import AsyncEngine, async_sessionmaker, create_async_engine
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

JOB_STATUSES = ("queued", "running", "succeeded", "failed", "cancelled")
TERMINAL_STATUSES = ("succeeded", "failed", "cancelled")
STAGES = ("lyrics", "metadata", "audio", "post")


class Base(DeclarativeBase):
    pass


class Job(Base):
    __tablename__ = "jobs"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    public_id: Mapped[str] = mapped_column(String(36), unique=True, nullable=False)
    kind: Mapped[str] = mapped_column(String(16), nullable=False)  # "song" | "music"
    owner: Mapped[str] = mapped_column(String(128), nullable=False)
    status: Mapped[str] = mapped_column(String(16), nullable=False, default="queued")
    stage: Mapped[str | None] = mapped_column(String(16), nullable=True)
    params: Mapped[dict[str, Any]] = mapped_column(JSON, nullable=False)
    state: Mapped[dict[str, Any]] = mapped_column(JSON, nullable=False, default=dict)
    result: Mapped[dict[str, Any] | None] = mapped_column(JSON, nullable=True)
    progress: Mapped[dict[str, Any] | None] = mapped_column(JSON, nullable=True)
    lyrics: Mapped[str | None] = mapped_column(Text, nullable=True)
    title: Mapped[str | None] = mapped_column(Text, nullable=True)
    error: Mapped[str | None] = mapped_column(Text, nullable=True)
    callback_url: Mapped[str | None] = mapped_column(Text, nullable=True)
    worker_id: Mapped[str | None] = mapped_column(String(64), nullable=True)
    lease_expires_at: Mapped[float | None] = mapped_column(Double, nullable=True)
    attempts: Mapped[int] = mapped_column(Integer, nullable=False, default=0)
    created_at: Mapped[float] = mapped_column(Double, nullable=False)
    started_at: Mapped[float | None] = mapped_column(Double, nullable=True)
    finished_at: Mapped[float | None] = mapped_column(Double, nullable=True)
    updated_at: Mapped[float] = mapped_column(Double, nullable=False)

    __table_args__ = (
        Index("ix_jobs_status_id", "status", "id"),
        Index("ix_jobs_owner_status", "owner", "status"),
    )


class JobEvent(Base):
    __tablename__ = "job_events"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    job_id: Mapped[int] = mapped_column(ForeignKey("jobs.id", ondelete="CASCADE"), nullable=False)
    kind: Mapped[str] = mapped_column(String(16), nullable=False)  # lyrics | progress | status | done | failed
    data: Mapped[dict[str, Any]] = mapped_column(JSON, nullable=False)
    created_at: Mapped[float] = mapped_column(Double, nullable=False)

    __table_args__ = (Index("ix_job_events_job_id_id", "job_id", "id"),)


class StageRun(Base):
    __tablename__ = "stage_runs"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    job_id: Mapped[int] = mapped_column(ForeignKey("jobs.id", ondelete="CASCADE"), nullable=False)
    stage: Mapped[str] = mapped_column(String(16), nullable=False)
    worker_id: Mapped[str] = mapped_column(String(64), nullable=False)
    server: Mapped[str | None] = mapped_column(String(128), nullable=True)
    ok: Mapped[bool | None] = mapped_column(Boolean, nullable=True)
    started_at: Mapped[float] = mapped_column(Double, nullable=False)
    finished_at: Mapped[float | None] = mapped_column(Double, nullable=True)

    __table_args__ = (
        Index("ix_stage_runs_job_id", "job_id"),
        Index("ix_stage_runs_stage_id", "stage", "id"),
    )


class WebhookOutbox(Base):
    """One callback event to deliver (migration 0002): written when the event happens, delivered at least once by
    ``services/outbox.py`` (in order per job; ``event_id`` is the receiver's idempotency key), kept as a record."""

    __tablename__ = "webhook_outbox"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    event_id: Mapped[str] = mapped_column(String(36), unique=True, nullable=False)
    job_public_id: Mapped[str] = mapped_column(String(36), nullable=False)
    owner: Mapped[str] = mapped_column(String(128), nullable=False)
    url: Mapped[str] = mapped_column(Text, nullable=False)
    event: Mapped[str] = mapped_column(String(16), nullable=False)
    body: Mapped[str] = mapped_column(Text, nullable=False)  # the exact JSON that is signed and sent
    status: Mapped[str] = mapped_column(String(16), nullable=False, default="pending")  # pending|delivered|dead
    attempts: Mapped[int] = mapped_column(Integer, nullable=False, default=0)
    next_attempt_at: Mapped[float] = mapped_column(Double, nullable=False)
    lease_until: Mapped[float | None] = mapped_column(Double, nullable=True)
    last_error: Mapped[str | None] = mapped_column(Text, nullable=True)
    created_at: Mapped[float] = mapped_column(Double, nullable=False)
    finished_at: Mapped[float | None] = mapped_column(Double, nullable=True)

    __table_args__ = (Index("ix_webhook_outbox_status_id", "status", "id"),)


class Clip(Base):
    """One audio item (migration 0003): a finished job's item, an upload, a stem, an edit. Its files live in
    ``<data_dir>/clips/<public_id>/`` (``audio_file`` as served, ``source_file`` the lossless 48 kHz audio,
    ``latents_file`` the latents it was decoded from). ``parent_id`` + ``action`` are its lineage; the parent may be
    deleted (the id stays, dangling), so it is no foreign key."""

    __tablename__ = "clips"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    public_id: Mapped[str] = mapped_column(String(36), unique=True, nullable=False)
    owner: Mapped[str] = mapped_column(String(128), nullable=False)
    origin: Mapped[str] = mapped_column(String(16), nullable=False)  # "job" | "upload"
    action: Mapped[str] = mapped_column(String(32), nullable=False)  # generate, cover, repaint, stems, upload, …
    parent_id: Mapped[str | None] = mapped_column(String(36), nullable=True)
    job_id: Mapped[str | None] = mapped_column(String(36), nullable=True)  # the job that made it
    item_index: Mapped[int | None] = mapped_column(Integer, nullable=True)
    title: Mapped[str | None] = mapped_column(Text, nullable=True)
    lyrics: Mapped[str | None] = mapped_column(Text, nullable=True)
    caption: Mapped[str | None] = mapped_column(Text, nullable=True)
    model: Mapped[str | None] = mapped_column(String(128), nullable=True)
    seed: Mapped[int | None] = mapped_column(BigInteger, nullable=True)
    duration: Mapped[float | None] = mapped_column(Double, nullable=True)
    bpm: Mapped[int | None] = mapped_column(Integer, nullable=True)
    key_scale: Mapped[str | None] = mapped_column(String(64), nullable=True)
    audio_file: Mapped[str] = mapped_column(String(128), nullable=False)
    audio_format: Mapped[str] = mapped_column(String(16), nullable=False)
    source_file: Mapped[str] = mapped_column(String(128), nullable=False)
    latents_file: Mapped[str | None] = mapped_column(String(128), nullable=True)
    cover_file: Mapped[str | None] = mapped_column(String(128), nullable=True)
    lrc_file: Mapped[str | None] = mapped_column(String(128), nullable=True)
    extra: Mapped[dict[str, Any]] = mapped_column(JSON, nullable=False, default=dict)
    size_bytes: Mapped[int] = mapped_column(BigInteger, nullable=False, default=0)
    created_at: Mapped[float] = mapped_column(Double, nullable=False)

    __table_args__ = (
        Index("ix_clips_owner_id", "owner", "id"),
        Index("ix_clips_job_id", "job_id"),
        Index("ix_clips_created_at", "created_at"),
    )


def make_engine(url: str, *, pool_size: int = 10) -> AsyncEngine:
    """An async engine. SQLite gets WAL + a busy timeout so several connections (and processes) share one file."""
    if url.startswith("sqlite"):
        engine = create_async_engine(url, connect_args={"timeout": 30})

        @event.listens_for(engine.sync_engine, "connect")
        def _sqlite_pragmas(dbapi_conn: Any, _record: Any) -> None:
            cursor = dbapi_conn.cursor()
            cursor.execute("PRAGMA journal_mode=WAL")
            cursor.execute("PRAGMA synchronous=NORMAL")
            cursor.execute("PRAGMA busy_timeout=30000")
            cursor.execute("PRAGMA foreign_keys=ON")
            cursor.close()

        return engine
    # A connect timeout: a database that hangs (rather than refuses) fails requests fast too (503, not a stuck worker).
    connect_args = {"timeout": 10} if url.startswith("postgresql+asyncpg") else {}
    return create_async_engine(
        url, pool_size=pool_size, max_overflow=pool_size, pool_pre_ping=True, connect_args=connect_args
    )


def make_sessionmaker(engine: AsyncEngine) -> async_sessionmaker:
    return async_sessionmaker(engine, expire_on_commit=False)
