"""Outages waited out, not failed (issue 14): with the in-process stage runner standing in for Triton, switched "down"
(every call raises :class:`TritonUnavailableError`, ``serving()`` is False) and "up" again. Workers claim nothing
while down, a running stage waits and resumes, ``/ready`` answers 503, a graceful shutdown gives the attempt back, and
``/metrics`` has the series. The same against a real tritonserver: ``test_triton_outage.py``."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncGenerator, Mapping
from typing import Any

import httpx
import numpy as np
from prometheus_client import generate_latest

from orchestrator import store
from orchestrator.db import make_engine, make_sessionmaker
from orchestrator.services import metrics
from orchestrator.services.triton import ModelEvent, ServerHealth, TritonUnavailableError
from tests.orchestrator.doubles import StageRunnerDouble
from tests.orchestrator.support import login, make_settings, running_app, song_status, wait_for, wait_song

SONG = {"duration": 10, "inference_steps": 6, "generate_cover": False, "audio_format": "wav"}


class SwitchableRunner(StageRunnerDouble):
    """The double with an on/off switch: while down it behaves as a gateway with no healthy server."""

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.up = True
        self._up_event: asyncio.Event | None = None
        self.refused = 0

    def set_up(self, up: bool) -> None:
        self.up = up
        if self._up_event is None:
            self._up_event = asyncio.Event()
        if up:
            self._up_event.set()
        else:
            self._up_event.clear()

    def serving(self) -> bool:
        return self.up

    async def wait_serving(self, timeout: float) -> bool:
        if self.up or self._up_event is None:
            return self.up
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(timeout):
                await self._up_event.wait()
        return self.up

    async def health(self) -> list[ServerHealth]:
        return [ServerHealth(self.name, self.up, 0, None if self.up else "down", None)]

    async def stream(
        self, model: str, request: Mapping[str, Any], *, tensors: Mapping[str, np.ndarray] | None = None
    ) -> AsyncGenerator[ModelEvent, None]:
        if not self.up:
            self.refused += 1
            raise TritonUnavailableError(f"{model}: no Triton server could run the request after 1 attempt(s)")
        async for event in super().stream(model, request, tensors=tensors):
            if not self.up:  # "killed" mid-stream
                self.refused += 1
                raise TritonUnavailableError(f"{model}: the server went away mid-stream")
            yield event


async def _create(client: httpx.AsyncClient, headers: dict[str, str], theme: str, **extra: Any) -> str:
    r = await client.post("/v1/song/create", json={"theme": theme, **SONG, **extra}, headers=headers)
    assert r.status_code == 200, r.text
    return str(r.json()["data"]["intent_id"])


async def test_triton_outage_is_waited_out_and_no_job_is_claimed_meanwhile(tmp_path) -> None:
    runner = SwitchableRunner(step_delay=0.02)
    settings = make_settings(tmp_path, triton_concurrency=2, outage_backoff_max_s=0.3)
    async with running_app(settings, runner) as (_, client):
        headers = await login(client)
        assert (await client.get("/ready")).status_code == 200
        first = await _create(client, headers, "running")
        await wait_for(
            lambda: _in_audio(client, headers, first), timeout=20, what="the first job to reach the sampler"
        )
        runner.set_up(False)  # the only server dies mid-stage
        queued = [await _create(client, headers, f"queued-{i}") for i in range(3)]
        ready = await client.get("/ready")
        assert ready.status_code == 503 and "no Triton server is healthy" in ready.json()["reasons"]
        assert ready.headers["retry-after"]
        health = (await client.get("/health")).json()["data"]
        assert health["status"] == "degraded"
        await asyncio.sleep(1.5)  # an outage of a while: nothing fails, nothing new is claimed
        for intent in queued:
            assert (await song_status(client, headers, intent))["status"] in ("queued", "lyrics_pending"), intent
        assert (await song_status(client, headers, first))["status"] == "audio_pending"
        runner.set_up(True)
        for intent in [first, *queued]:
            done = await wait_song(client, headers, intent, ("succeeded", "failed"), timeout=30)
            assert done["status"] == "succeeded", done
        assert runner.refused >= 1
        assert (await client.get("/ready")).status_code == 200
    engine = make_engine(settings.resolved_database_url)
    async with make_sessionmaker(engine)() as session:
        for intent in queued:
            row = await store.get_job(session=session, public_id=intent)
            assert row is not None and row.attempts == 1, "a queued job was claimed during the outage"
    await engine.dispose()


async def _in_audio(client: httpx.AsyncClient, headers: dict[str, str], intent: str) -> bool:
    data = await song_status(client, headers, intent)
    return bool(data["progress"] and data["progress"].get("stage") == "diffusion")


async def test_an_outage_longer_than_the_stage_deadline_fails_naming_the_setting(tmp_path) -> None:
    runner = SwitchableRunner()
    settings = make_settings(tmp_path, triton_concurrency=1, lyrics_timeout_s=1.0, outage_backoff_max_s=0.2)
    async with running_app(settings, runner) as (_, client):
        headers = await login(client)
        runner.set_up(True)
        runner.up = False  # down, but workers are told "serving" so the job is claimed and its stage waits
        runner.serving = lambda: True  # type: ignore[method-assign]
        intent = await _create(client, headers, "doomed")
        done = await wait_song(client, headers, intent, ("succeeded", "failed"), timeout=20)
    assert done["status"] == "failed"
    error = done["error"]["message"] if isinstance(done.get("error"), dict) else str(done.get("error"))
    assert "TRITONE_LYRICS_TIMEOUT_S" in error and "1 s deadline" in error, error


async def test_graceful_shutdown_gives_back_the_attempt(tmp_path) -> None:
    runner = StageRunnerDouble()
    settings = make_settings(tmp_path, triton_concurrency=1, shutdown_grace_s=5.0)
    async with running_app(settings, runner) as (_, client):
        headers = await login(client)
        runner.gate("sampler")
        intent = await _create(client, headers, "interrupted")
        await asyncio.wait_for(runner.entered["sampler"].wait(), 10)
    engine = make_engine(settings.resolved_database_url)
    async with make_sessionmaker(engine)() as session:
        row = await store.get_job(session=session, public_id=intent)
        assert row is not None and row.status == "queued" and row.attempts == 0
    await engine.dispose()


async def test_metrics_after_a_job_and_request_ids(tmp_path) -> None:
    settings = make_settings(tmp_path, triton_concurrency=1)
    async with running_app(settings, StageRunnerDouble()) as (_, client):
        headers = await login(client)
        intent = await _create(client, headers, "measured")
        assert (await wait_song(client, headers, intent, ("succeeded", "failed")))["status"] == "succeeded"
        await asyncio.sleep(0.8)  # the queue gauges refresh twice a second
        r = await client.get("/metrics")
        assert r.status_code == 200 and r.headers["content-type"].startswith("text/plain")
        text = r.text
        for series in (
            'http_requests_total{handler="/v1/song/create",method="POST",status="200"}',
            'tritone_jobs{state="succeeded"} 1.0',
            "tritone_queue_depth 0.0",
            'tritone_stage_duration_seconds_count{outcome="ok",stage="audio"}',
            'tritone_jobs_finished_total{kind="song",outcome="succeeded"}',
            "tritone_triton_calls_total",
            "tritone_triton_failovers_total",
            "tritone_webhook_deliveries_total",
        ):
            assert series in text, f"{series} not in /metrics"
        echoed = await client.get("/health", headers={"X-Request-ID": "abc-123"})
        assert echoed.headers["x-request-id"] == "abc-123"
        made = await client.get("/health", headers={"X-Request-ID": "bad id with spaces"})
        assert made.headers["x-request-id"] != "bad id with spaces" and len(made.headers["x-request-id"]) == 16


async def test_queue_depth_by_user_class(tmp_path) -> None:
    """Jobs waiting (no worker in this app) are counted by their owner's class."""
    settings = make_settings(tmp_path, triton_concurrency=0, user_classes={"alice": "pro"})
    async with running_app(settings, StageRunnerDouble()) as (_, client):
        headers = await login(client)
        for theme in ("one", "two"):
            await _create(client, headers, theme)
        await asyncio.sleep(0.8)  # the queue gauges refresh twice a second
        text = (await client.get("/metrics")).text
        assert 'tritone_queue_depth_by_class{user_class="pro"} 2.0' in text, text[-2000:]
    metrics.set_queue_by_class([], {}, [])  # the queue emptied: the class drops to zero, not its last value
    assert 'tritone_queue_depth_by_class{user_class="pro"} 0.0' in generate_latest().decode()


async def test_metrics_token(tmp_path) -> None:
    settings = make_settings(tmp_path, triton_concurrency=0, metrics_token="scrape-me")
    async with running_app(settings, StageRunnerDouble()) as (_, client):
        assert (await client.get("/metrics")).status_code == 401
        assert (await client.get("/metrics", headers={"Authorization": "Bearer scrape-me"})).status_code == 200


def test_database_outage_is_told_from_other_errors() -> None:
    import errno

    import sqlalchemy.exc

    from orchestrator.services.availability import Backoff, is_database_outage

    assert is_database_outage(ConnectionRefusedError(111, "Connect call failed"))
    wrapped = sqlalchemy.exc.OperationalError("SELECT 1", {}, Exception("terminating connection"))
    assert is_database_outage(wrapped)

    class AdminShutdown(Exception):
        sqlstate = "57P01"

    assert is_database_outage(sqlalchemy.exc.DBAPIError("x", {}, AdminShutdown()))
    assert not is_database_outage(OSError(errno.ENOSPC, "No space left on device"))  # a job's failure, not an outage
    assert not is_database_outage(sqlalchemy.exc.IntegrityError("INSERT", {}, Exception("duplicate key")))
    assert not is_database_outage(ValueError("bad value"))
    backoff = Backoff(0.5, 2.0)
    delays = [backoff.next_delay() for _ in range(5)]
    assert 0.4 <= delays[0] <= 0.6 and all(d <= 2.4 for d in delays) and delays[-1] >= 1.6
