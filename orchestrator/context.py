"""Everything a request handler needs, built once by the app's lifespan and kept on ``app.state.ctx``."""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy.ext.asyncio import AsyncEngine, async_sessionmaker

from orchestrator.services.auth import AuthService
from orchestrator.services.events import EventBus
from orchestrator.services.jobs import JobService
from orchestrator.services.queue import QueueInfo, WorkerPool
from orchestrator.services.triton import StageGateway
from orchestrator.services.webhooks import WebhookSender
from orchestrator.settings import Settings


@dataclass
class AppContext:
    settings: Settings
    engine: AsyncEngine
    sessions: async_sessionmaker
    auth: AuthService
    gateway: StageGateway
    bus: EventBus
    webhooks: WebhookSender
    queue_info: QueueInfo
    jobs: JobService
    pool: WorkerPool | None
    worker_id: str
