"""Jobs: submission, and the pipelines that run them stage by stage on Triton.

Stages (``jobs.stage``), each checkpointed in ``jobs.state`` so a re-run after a restart skips what is done:
``lyrics`` → ``metadata`` → ``audio`` → ``post``, then the job succeeds. The modules:

- ``submit.py``   — a request becomes a queued job (seeds, model, uploads, the queue's bound); cancellation;
- ``engine.py``   — the stage engine: lease-conditional writes, checkpoints, timeouts, throttled progress, Triton
  calls, fail/succeed;
- ``song.py``     — the song API's pipeline (lyricist → lm → sampler → post);
- ``music.py``    — the ACE-Step API's pipeline (optional inspire → lm metadata/thinking → sampler → post);
- ``stems.py``    — the stems job (separator → zip) and its submission (an upload or a finished item);
- ``stages.py``   — the stages both share (the lm's metadata, the sampler's audio);
- ``post.py``     — encoding, cover art, the result;
- ``requests.py`` — per family: what it can serve, its defaults, its typed sampler request.

A new API's pipeline (the Producer API) is one more module with a class like :class:`SongPipeline` (``kind``, and
``run(run)`` calling ``engine.stage``) and one more entry in :data:`PIPELINES`.
"""

from __future__ import annotations

from collections.abc import Sequence

from sqlalchemy.ext.asyncio import async_sessionmaker

from orchestrator.db import Job
from orchestrator.services.events import EventBus
from orchestrator.services.jobs.engine import JobDeps, JobLostError, StageEngine, StageFailedError, job_dir
from orchestrator.services.jobs.music import MusicPipeline
from orchestrator.services.jobs.post import Post
from orchestrator.services.jobs.song import SongPipeline, caption_with_tracks, structure_only
from orchestrator.services.jobs.stages import SharedStages
from orchestrator.services.jobs.stems import StemsPipeline, StemsSource, submit_stems
from orchestrator.services.jobs.submit import Submitter, pick_seeds
from orchestrator.services.queue import QueueInfo
from orchestrator.services.triton import StageGateway
from orchestrator.services.webhooks import WebhookSender
from orchestrator.settings import Settings

__all__ = [
    "PIPELINES",
    "JobLostError",
    "JobService",
    "StageFailedError",
    "caption_with_tracks",
    "job_dir",
    "pick_seeds",
    "structure_only",
]

# One pipeline per job kind (``jobs.kind``).
PIPELINES = (SongPipeline, MusicPipeline, StemsPipeline)


class JobService(Submitter):
    """What the routers and the worker pool use: ``submit_song``, ``submit_music``, ``submit_stems``, ``cancel`` and
    ``run``."""

    def __init__(
        self,
        *,
        settings: Settings,
        sessions: async_sessionmaker,
        gateway: StageGateway,
        bus: EventBus,
        webhooks: WebhookSender,
        queue_info: QueueInfo,
    ) -> None:
        deps = JobDeps(
            settings=settings, sessions=sessions, gateway=gateway, bus=bus, webhooks=webhooks, queue_info=queue_info
        )
        super().__init__(deps)
        self._engine = StageEngine(deps)
        stages, post = SharedStages(self._engine), Post(self._engine)
        self._pipelines = {kind.kind: kind(self._engine, stages, post) for kind in PIPELINES}

    async def submit_stems(
        self, *, owner: str, source: StemsSource, stems: int, method: str = "demucs", callback_url: str | None = None,
        tracks: Sequence[str] | None = None, steps: int | None = None,
    ) -> Job:
        """A stems job (``stems.py``): ``source`` an upload or a finished item of ``owner``'s."""
        return await submit_stems(
            self, owner=owner, source=source, stems=stems, method=method, callback_url=callback_url, tracks=tracks,
            steps=steps,
        )

    async def run(self, job: Job, worker_id: str) -> None:
        """Run (or resume) ``job`` to a terminal state. Cancellation propagates (the pool decides what it means)."""
        await self._engine.run(job, worker_id, self._pipelines.get(job.kind))
