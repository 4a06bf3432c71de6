"""The stage engine: runs one job's stages in order, each checkpointed, on this worker's lease.

A pipeline (``song.py``, ``music.py``; one module per API) is a list of ``await engine.stage(run, name, body)``
calls ending in ``engine.succeed(run)``. The engine owns what every stage shares: the conditional writes that lose
the job when the lease lapsed (:class:`JobLostError`), the checkpoint after each stage (a resumed job skips what is
done), stage timings and timeouts, throttled progress writes, the Triton calls (with the event log noting a failover)
and the terminal writes (fail/succeed, with their webhooks).

Outages are waited out: a stage whose Triton call finds no server (:class:`TritonUnavailableError`) waits for one
with backoff and runs again from its start, until the stage's deadline (``TRITONE_<STAGE>_TIMEOUT_S``); the job's
database writes retry through a short database outage (up to the lease time) before giving the job back.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import re
import time
from collections.abc import AsyncGenerator, Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol, TypeVar

import numpy as np
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from orchestrator import clip_store, store
from orchestrator.db import Clip, Job
from orchestrator.media.audio import SAMPLE_RATE
from orchestrator.services import clips, logcontext, metrics
from orchestrator.services.availability import Backoff, brief, is_database_outage, wait_gateway
from orchestrator.services.events import EventBus
from orchestrator.services.queue import QueueInfo
from orchestrator.services.triton import ModelError, ModelEvent, StageGateway, TritonUnavailableError
from orchestrator.services.webhooks import WebhookSender
from orchestrator.settings import Settings

logger = logging.getLogger(__name__)

T = TypeVar("T")
PROGRESS_FLUSH_S = 0.2  # a stage's progress reaches the database (and the SSE stream) at most this often

# Uploaded source/reference audio, decoded at submission, beside the job's other files.
UPLOAD_NAMES = {"src_audio": "src_audio.npy", "reference_audio": "reference_audio.npy"}


class JobLostError(Exception):
    """The job stopped being this worker's (cancelled, or re-claimed after a lapsed lease)."""


class StageFailedError(Exception):
    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class Throttle:
    """Coalesces a stream of values into at most one write per ``interval``, trailing edge included: the newest value
    always gets written, at the latest ``interval`` seconds after it arrived (a model that pauses mid-stream still
    shows its latest text)."""

    def __init__(self, interval: float, write: Callable[[Any], Awaitable[None]]) -> None:
        self._interval = interval
        self._write = write
        self._pending: Any = None
        self._has_pending = False
        self._written_at = 0.0
        self._timer: asyncio.Task[None] | None = None

    async def push(self, value: Any) -> None:
        self._pending, self._has_pending = value, True
        if time.monotonic() - self._written_at >= self._interval:
            await self.flush()
        elif self._timer is None or self._timer.done():
            self._timer = asyncio.create_task(self._later())

    async def _later(self) -> None:
        await asyncio.sleep(max(0.0, self._interval - (time.monotonic() - self._written_at)))
        await self.flush()

    async def flush(self) -> None:
        if not self._has_pending:
            return
        value, self._has_pending = self._pending, False
        self._written_at = time.monotonic()
        await self._write(value)

    async def close(self) -> None:
        """Stop the timer without writing (the caller writes the final value itself)."""
        if self._timer is not None and not self._timer.done():
            self._timer.cancel()
            with contextlib.suppress(asyncio.CancelledError, JobLostError):
                await self._timer


@dataclass
class Run:
    """One worker's view of a running job."""

    job: Job
    worker_id: str
    params: dict[str, Any]
    state: dict[str, Any]
    stage: str | None = None
    server: str | None = None
    cover_task: asyncio.Task[Path | None] | None = None
    flushed_at: dict[str, float] = field(default_factory=dict)

    @property
    def done(self) -> list[str]:
        return self.state.setdefault("done", [])


class Pipeline(Protocol):
    """One API's sequence of stages for its job kind (``jobs.kind``)."""

    kind: str

    async def run(self, run: Run) -> None: ...


def job_dir(settings: Settings, public_id: str) -> Path:
    if not re.fullmatch(r"[0-9a-f-]{36}", public_id):
        raise ValueError(f"not a job id: {public_id!r}")
    return settings.data_dir / "jobs" / public_id


def save_npy(path: Path, array: np.ndarray) -> None:
    """Write atomically: a crash mid-write must not leave a truncated checkpoint behind."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    with open(tmp, "wb") as handle:
        np.save(handle, array)
    os.replace(tmp, path)


def _drop_none(values: Mapping[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in values.items() if v is not None}


def _text(exc: BaseException) -> str:
    return str(getattr(exc, "message", None) or exc)


@dataclass(frozen=True)
class JobDeps:
    """What submission and the stage engine work with."""

    settings: Settings
    sessions: async_sessionmaker
    gateway: StageGateway
    bus: EventBus
    webhooks: WebhookSender
    queue_info: QueueInfo


class StageEngine:
    def __init__(self, deps: JobDeps) -> None:
        self.settings = deps.settings
        self.sessions = deps.sessions
        self._gateway = deps.gateway
        self._bus = deps.bus
        self._webhooks = deps.webhooks
        self._queue_info = deps.queue_info

    def job_dir(self, run: Run) -> Path:
        return job_dir(self.settings, run.job.public_id)

    # --- a job, start to end ---------------------------------------------------------------------------------------
    async def run(self, job: Job, worker_id: str, pipeline: Pipeline | None) -> None:
        """Run (or resume) ``job`` to a terminal state with the ``pipeline`` of its kind. Cancellation propagates (the
        pool decides what it means)."""
        run = Run(job=job, worker_id=worker_id, params=dict(job.params), state=dict(job.state or {}))
        run.state.setdefault("done", [])
        try:
            if pipeline is None:
                raise StageFailedError(f"no pipeline runs jobs of kind {job.kind!r}")
            with logcontext.bound(f"job:{job.public_id[:8]}"):
                await pipeline.run(run)
        except JobLostError:
            logger.info("job %s: no longer ours; stopped", job.public_id)
        except (ModelError, TritonUnavailableError, StageFailedError) as exc:
            await self._fail(run, f"{run.stage or 'job'}: {_text(exc)}")
        except TimeoutError:
            limit = self._stage_timeout(run.stage)
            setting = f"TRITONE_{(run.stage or 'stage').upper()}_TIMEOUT_S"
            await self._fail(run, f"{run.stage}: timed out after {limit:g} s (raise {setting} if this is expected)")
        except Exception as exc:
            if is_database_outage(exc):
                raise  # not the job's fault: the worker pool hands it back once the database answers
            logger.exception("job %s: stage %s crashed", job.public_id, run.stage)
            await self._fail(run, f"{run.stage or 'job'}: internal error: {type(exc).__name__}: {exc}")
        finally:
            if run.cover_task is not None and not run.cover_task.done():
                run.cover_task.cancel()
                with contextlib.suppress(BaseException):
                    await run.cover_task

    def _stage_timeout(self, stage: str | None) -> float:
        return {
            "lyrics": self.settings.lyrics_timeout_s,
            "metadata": self.settings.metadata_timeout_s,
            "audio": self.settings.audio_timeout_s,
            "post": self.settings.post_timeout_s,
            "separate": self.settings.separate_timeout_s,
        }.get(stage or "", 600.0)

    async def _db(self, run: Run, op: Callable[[AsyncSession], Awaitable[T]]) -> T:
        """``op`` in a session, retried with backoff while the database is unreachable — for up to the lease time
        (past it the job may be someone else's: the error goes to the worker pool, which hands the job back)."""
        backoff = Backoff(0.25, self.settings.outage_backoff_max_s)
        deadline = time.monotonic() + self.settings.job_lease_s
        while True:
            try:
                async with self.sessions() as session:
                    return await op(session)
            except Exception as exc:
                if not is_database_outage(exc) or time.monotonic() >= deadline:
                    raise
                metrics.DATABASE_ERRORS.labels(where="job").inc()
                logger.warning("job %s: the database is unreachable (%s); retrying", run.job.public_id, brief(exc))
                await backoff.sleep()

    async def _fail(self, run: Run, message: str) -> None:
        logger.warning("job %s failed: %s", run.job.public_id, message)
        finished = await self._db(
            run,
            lambda session: store.finish_job(
                session=session, job_id=run.job.id, worker_id=run.worker_id, status="failed", error=message
            ),
        )
        if finished:
            metrics.JOBS_FINISHED.labels(kind=run.job.kind, outcome="failed").inc()
            self._after_terminal(run, "failed", {"status": "failed", "error": message})

    async def succeed(self, run: Run, result: dict[str, Any]) -> None:
        """The job succeeds with ``result``; every item with a ``file`` becomes a clip (``services/clips.py``; the
        item gets its ``clip_id``), committed in the same transaction as the success — for every job kind."""
        rows = await asyncio.to_thread(
            clips.job_clip_rows,
            self.settings,
            job_id=run.job.public_id,
            kind=run.job.kind,
            owner=run.job.owner,
            params=run.params,
            result=result,
            directory=self.job_dir(run),
            sample_rate=int((run.state.get("audio") or {}).get("sample_rate") or SAMPLE_RATE),
        )

        async def finish(session: AsyncSession) -> bool:
            clip_store.stage_clips(session=session, rows=[Clip(**row) for row in rows])
            return await store.finish_job(
                session=session, job_id=run.job.id, worker_id=run.worker_id, status="succeeded", result=result
            )

        finished = await self._db(run, finish)
        if not finished:
            raise JobLostError(run.job.public_id)
        metrics.JOBS_FINISHED.labels(kind=run.job.kind, outcome="succeeded").inc()
        logger.info("job %s succeeded (%d item(s))", run.job.public_id, len(result["items"]))
        self._after_terminal(run, "done", {"status": "succeeded", "result": _webhook_result(result)})

    def _after_terminal(self, run: Run, event: str, payload: dict[str, Any]) -> None:
        self._bus.notify(run.job.id)
        self._queue_info.invalidate()
        if run.job.callback_url:
            # the body is built from the finished row: the result with its links (services/callbacks.py)
            self._webhooks.send_final(job_id=run.job.public_id, url=run.job.callback_url, event=event, payload=payload)

    # --- what stages use -------------------------------------------------------------------------------------------
    async def update(self, run: Run, **values: Any) -> None:
        owned = await self._db(
            run, lambda session: store.update_job(session=session, job_id=run.job.id, worker_id=run.worker_id, **values)
        )
        if not owned:
            raise JobLostError(run.job.public_id)

    async def event(self, run: Run, kind: str, data: dict[str, Any]) -> None:
        await self._db(run, lambda session: store.add_event(session=session, job_id=run.job.id, kind=kind, data=data))
        self._bus.notify(run.job.id)

    def progress_writer(self, run: Run, interval: float = PROGRESS_FLUSH_S) -> Throttle:
        """A stage's ``{stage, step, total}`` progress, written to the job and its event stream at most every
        ``interval`` seconds (the newest value always lands; ``flush`` at the end, ``close`` in a ``finally``)."""

        async def write(progress: dict[str, Any]) -> None:
            await self.update(run, progress=progress)
            await self.event(run, "progress", progress)

        return Throttle(interval, write)

    async def checkpoint(self, run: Run, **values: Any) -> None:
        await self.update(run, state=dict(run.state), **values)

    async def stage(self, run: Run, name: str, body: Callable[[Run], Awaitable[None]]) -> None:
        if name in run.done:
            return
        run.stage = name
        run.state["stage_started_at"] = time.time()
        await self.update(run, stage=name, state=dict(run.state), progress={"stage": name, "step": 0, "total": 0})
        await self.event(run, "status", {"status": "running", "stage": name})
        if run.job.callback_url and not self._webhooks.quiet(run.params):
            self._webhooks.send(
                job_id=run.job.public_id,
                url=run.job.callback_url,
                event="stage",
                payload={"status": "running", "stage": name},
            )
        run_id = await self._db(
            run,
            lambda session: store.start_stage_run(
                session=session, job_id=run.job.id, stage=name, worker_id=run.worker_id
            ),
        )
        ok, outcome, started = False, "interrupted", time.monotonic()
        try:
            await self._run_waiting_out_outages(run, name, body)
            ok, outcome = True, "ok"
        except (JobLostError, asyncio.CancelledError):
            raise
        except Exception:
            outcome = "failed"
            raise
        finally:
            metrics.STAGE_SECONDS.labels(stage=name, outcome=outcome).observe(time.monotonic() - started)
            with contextlib.suppress(Exception):
                async with self.sessions() as session:
                    await store.finish_stage_run(session=session, run_id=run_id, ok=ok, server=run.server)
        run.done.append(name)
        await self.checkpoint(run)

    async def _run_waiting_out_outages(self, run: Run, name: str, body: Callable[[Run], Awaitable[None]]) -> None:
        """``body`` under the stage's deadline; when no Triton server can serve it, wait for one (with backoff) and
        run it again from the start — stages are idempotent — until it succeeds or the deadline passes."""
        limit = self._stage_timeout(name)
        deadline = time.monotonic() + limit
        backoff = Backoff(0.5, self.settings.outage_backoff_max_s)
        last: TritonUnavailableError | None = None
        waiting = False  # the deadline passing while waiting is an outage; while running, a plain timeout
        try:
            async with asyncio.timeout(limit):
                while True:
                    waiting = False
                    try:
                        await body(run)
                        return
                    except TritonUnavailableError as exc:
                        last, waiting = exc, True
                    metrics.STAGE_WAITS.labels(stage=name).inc()
                    left = deadline - time.monotonic()
                    logger.warning(
                        "job %s: %s waits for a Triton server (%.0f s of its %g s deadline left): %s",
                        run.job.public_id,
                        name,
                        left,
                        limit,
                        last,
                    )
                    await self.event(
                        run, "status", {"status": "running", "stage": name, "waiting": "no Triton server available"}
                    )
                    await backoff.sleep()
                    await wait_gateway(self._gateway, max(0.0, deadline - time.monotonic()))
        except TimeoutError:
            if last is None or not waiting:
                raise
            setting = f"TRITONE_{name.upper()}_TIMEOUT_S"
            raise TritonUnavailableError(
                f"no Triton server could serve it within the stage's {limit:g} s deadline (raise {setting} to wait "
                f"out longer outages); last error: {last}"
            ) from None

    async def call(
        self, run: Run, model: str, request: Mapping[str, Any], *, tensors: Mapping[str, np.ndarray] | None = None
    ) -> AsyncGenerator[ModelEvent, None]:
        """Stream ``model``'s events for ``request`` (``None`` fields left out); a move to another server is noted in
        the job's event log and not passed on."""
        async with contextlib.aclosing(self._gateway.stream(model, _drop_none(request), tensors=tensors)) as events:
            async for event in events:
                if event.server:
                    run.server = event.server
                if event.type == "retry":
                    logger.warning(
                        "job %s: %s moved to %s (%s)",
                        run.job.public_id,
                        model,
                        event.data.get("server"),
                        event.data.get("reason"),
                    )
                    await self.event(run, "status", {"status": "running", "stage": run.stage, "retry": event.data})
                    continue
                yield event


def _webhook_result(result: Mapping[str, Any]) -> dict[str, Any]:
    """The final event's summary where no outbox builds the full body (``WebhookSender.send_final``)."""
    return {"title": result.get("title"), "metadata": result.get("metadata"), "items": len(result.get("items", []))}
