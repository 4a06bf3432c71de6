"""Helpers for the orchestrator tests: settings, an app with its lifespan running, polling."""

from __future__ import annotations

import asyncio
import json
import secrets
import time
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import asynccontextmanager, contextmanager
from pathlib import Path
from typing import Any

import httpx
from fastapi import FastAPI

from orchestrator.app import create_app
from orchestrator.services.auth import hash_password
from orchestrator.services.triton import StageGateway
from orchestrator.settings import Settings

# Cheap hashes: the tests log in often; production hashes use 200k iterations.
USERS = {"alice": hash_password("alice-pw", iterations=1000), "bob": hash_password("bob-pw", iterations=1000)}
API_KEYS = {"key-carol-123": "carol"}


def make_settings(data_dir: Path, database_url: str | None = None, **overrides: Any) -> Settings:
    values: dict[str, Any] = {
        "data_dir": data_dir,
        "database_url": database_url,
        "users": USERS,
        "api_keys": API_KEYS,
        "jwt_secret": "test-secret-" + "x" * 32,
        "triton_concurrency": 2,
        "claim_poll_s": 0.05,
        "default_job_seconds": 30.0,
    }
    values.update(overrides)
    return Settings(**values)


@asynccontextmanager
async def running_app(
    settings: Settings, gateway: StageGateway | None = None
) -> AsyncIterator[tuple[FastAPI, httpx.AsyncClient]]:
    app = create_app(settings, gateway=gateway)
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://tritone.test", timeout=30) as client:
            yield app, client


async def login(client: httpx.AsyncClient, user: str = "alice", password: str | None = None) -> dict[str, str]:
    response = await client.post("/auth/login", json={"username": user, "password": password or f"{user}-pw"})
    assert response.status_code == 200, response.text
    return {"Authorization": f"Bearer {response.json()['access_token']}"}


async def wait_for(
    probe: Callable[[], Any], *, timeout: float = 20.0, interval: float = 0.05, what: str = "condition"
) -> Any:
    deadline = time.monotonic() + timeout
    last: Any = None
    while time.monotonic() < deadline:
        last = await probe()
        if last:
            return last
        await asyncio.sleep(interval)
    raise AssertionError(f"timed out after {timeout} s waiting for {what}; last value: {last!r}")


async def song_status(client: httpx.AsyncClient, headers: dict[str, str], intent_id: str) -> dict[str, Any]:
    response = await client.get("/v1/song/status", params={"intent_id": intent_id}, headers=headers)
    assert response.status_code == 200, response.text
    return response.json()["data"]


async def wait_song(
    client: httpx.AsyncClient, headers: dict[str, str], intent_id: str, statuses: tuple[str, ...], timeout: float = 30
) -> dict[str, Any]:
    async def probe() -> dict[str, Any] | None:
        data = await song_status(client, headers, intent_id)
        return data if data["status"] in statuses else None

    return await wait_for(probe, timeout=timeout, what=f"song {intent_id} in {statuses}")


async def create_song(client: httpx.AsyncClient, headers: dict[str, str], theme: str, **fields: Any) -> str:
    """``POST /v1/song/create``: a 10 s one-step song without a cover unless ``fields`` say otherwise; its intent id."""
    body = {"theme": theme, "duration": 10, "inference_steps": 1, "generate_cover": False} | fields
    r = await client.post("/v1/song/create", json=body, headers=headers)
    assert r.status_code == 200, r.text
    intent: str = r.json()["data"]["intent_id"]
    return intent


async def wait_job(
    client: httpx.AsyncClient, headers: dict[str, str], job_id: str, *, timeout: float = 240.0, what: str = "the job"
) -> dict[str, Any]:
    """``GET /v1/jobs/{job_id}`` (the ACE-Step API) until the job succeeded or failed; its body."""

    async def finished() -> dict[str, Any] | None:
        body: dict[str, Any] = (await client.get(f"/v1/jobs/{job_id}", headers=headers)).json()
        return body if body["status"] in ("succeeded", "failed") else None

    result: dict[str, Any] = await wait_for(finished, timeout=timeout, interval=0.3, what=what)
    return result


async def post_cover(
    client: httpx.AsyncClient, headers: dict[str, str], audio: bytes, filename: str = "a.wav"
) -> httpx.Response:
    """``POST /v1/music/generate``: a cover of ``audio`` uploaded as ``src_audio`` (the answer as it comes)."""
    form, files = {"prompt": "x", "task_type": "cover"}, {"src_audio": (filename, audio, "audio/wav")}
    return await client.post("/v1/music/generate", data=form, files=files, headers=headers)


async def hooked_song(client: httpx.AsyncClient, headers: dict[str, str], callback_url: str) -> str:
    """A one-step song with a webhook, followed until it succeeds; returns its intent id."""
    intent = await create_song(client, headers, "hooks", callback_url=callback_url)
    await wait_song(client, headers, intent, ("succeeded",))
    return intent


@contextmanager
def served_orchestrator(triton_url: str, folder: Path, user: str, password: str) -> Iterator[str]:
    """``tritone serve --triton-url`` in a child process on a free port with one password user; yields its URL."""
    from orchestrator.cli.serve import orchestrator_process

    env = {
        "TRITONE_USERS": json.dumps({user: hash_password(password, iterations=1000)}),
        "TRITONE_JWT_SECRET": secrets.token_urlsafe(32),
    }
    with orchestrator_process(
        triton_urls=[triton_url],
        data_dir=folder / "data",
        api_key=secrets.token_urlsafe(16),
        log_path=folder / "orchestrator.log",
        extra_env=env,
    ) as base:
        yield base
