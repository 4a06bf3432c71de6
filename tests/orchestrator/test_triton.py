"""The orchestrator against a real tritonserver serving the tiny repository (``tritone export --preset tiny``):
the gateway per model, a song and an ACE-Step job end to end, and failover when a server dies mid-stage."""

from __future__ import annotations

import asyncio
import io
import os
import signal
import time
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from orchestrator import store
from orchestrator.db import make_engine, make_sessionmaker
from orchestrator.services.triton import ModelError, TritonGateway
from orchestrator.settings import Settings
from tests.orchestrator.support import login, make_settings, running_app, wait_for, wait_job, wait_song

pytestmark = pytest.mark.triton

# Small but real: the tiny models are random, so only shapes, ranges and the protocol are checked.
SONG = {"duration": 10, "inference_steps": 2, "audio_format": "flac", "batch_size": 1}
ACESTEP15_MODELS = (
    "sampler",
    "text_encoder",
    "condition_encoder",
    "dit",
    "vae_decoder",
    "vae_encoder",
    "audio_tokenizer",
    "audio_detokenizer",
)


def _needs(request: pytest.FixtureRequest, name: str):  # type: ignore[no-untyped-def]
    """The session fixture ``name`` (tests/conftest.py), or a skip naming why the tiny stack is not available."""
    try:
        return request.getfixturevalue(name)
    except RuntimeError as exc:  # `tritone export --preset tiny` or the server start failed
        pytest.skip(f"the tiny Triton stack is not available: {str(exc).strip().splitlines()[0][:300]}")


@pytest.fixture
def triton_server(request: pytest.FixtureRequest):  # type: ignore[no-untyped-def]
    return _needs(request, "triton")


@pytest.fixture
def tiny_repo(request: pytest.FixtureRequest) -> Path:
    return _needs(request, "tiny_repository")


async def _collect(gateway: TritonGateway, model: str, request: dict, **kwargs) -> list:
    return [event async for event in gateway.stream(model, request, **kwargs)]


async def test_gateway_streams_every_model(triton_server) -> None:
    triton = triton_server
    gateway = TritonGateway(Settings(triton_urls=[triton.grpc_url]))
    await gateway.start()
    try:
        health = await gateway.health()
        assert health[0].healthy
        names = {m["name"] for m in await gateway.models()}
        assert {"lyricist", "lm", "sampler"} <= names

        events = await _collect(gateway, "lyricist", {"theme": "周末骑单车去看海", "duration_hint": 20, "seed": 1})
        assert events[-1].type == "plan" and any(e.type == "delta" for e in events)
        plan = events[-1].data["plan"]
        assert plan["lyrics"] and 30 <= plan["bpm"] <= 300 and 10 <= plan["duration"] <= 600

        events = await _collect(
            gateway, "lm", {"mode": "metadata", "caption": plan["caption"], "lyrics": plan["lyrics"], "bpm": 77}
        )
        assert events[-1].type == "result" and events[-1].data["metadata"]["bpm"] == 77  # the given value wins

        request = {
            "caption": "pop",
            "lyrics": "[Verse]\nla la",
            "duration": 10,
            "inference_steps": 3,
            "seeds": [5],
            "batch_size": 1,
        }
        events = await _collect(gateway, "sampler", request)
        steps = [e.data["step"] for e in events if e.type == "progress" and e.data.get("stage") == "diffusion"]
        assert steps == [1, 2, 3]
        done = events[-1]
        assert done.type == "done" and done.data["seeds"] == [5]
        audio = done.tensors["audio"]
        assert audio.shape == (1, 2, 480_000) and audio.dtype == np.float32
        assert np.abs(audio).max() <= 1.0 and np.isfinite(audio).all()

        with pytest.raises(ModelError, match="inference_steps"):
            await _collect(gateway, "sampler", {**request, "inference_steps": 500})
    finally:
        await gateway.close()


async def test_song_and_acestep_jobs_on_real_triton(triton_server, tmp_path) -> None:
    triton = triton_server
    settings = make_settings(tmp_path, triton_urls=[triton.grpc_url])
    async with running_app(settings) as (_, client):
        headers = await login(client)
        r = await client.post("/v1/song/create", json={"theme": "风把白衬衫吹起来", **SONG}, headers=headers)
        intent = r.json()["data"]["intent_id"]
        done = await wait_song(client, headers, intent, ("succeeded", "failed"), timeout=240)
        assert done["status"] == "succeeded", done
        assert done["lyrics"] and done["metadata"]["bpm"] and done["metadata"]["duration"] == 10
        audio = await client.get(done["items"][0]["audio_url"])
        wave, rate = sf.read(io.BytesIO(audio.content))
        assert rate == 48000 and wave.shape == (480_000, 2) and np.abs(wave).max() <= 1.0
        assert (await client.get(done["cover_url"])).status_code == 200

        r = await client.post(
            "/v1/music/generate",
            headers=headers,
            json={
                "caption": "lofi beat",
                "lyrics": "[Verse]\nhello",
                "thinking": True,
                "audio_duration": 10,
                "inference_steps": 2,
                "audio_format": "wav",
            },
        )
        job_id = r.json()["job_id"]

        job = await wait_job(client, headers, job_id, timeout=240, what="the ACE-Step job")
        assert job["status"] == "succeeded", job
        assert job["result"]["bpm"] and job["result"]["keyscale"] and len(job["result"]["audio_paths"]) == 1


@pytest.mark.slow
async def test_failover_to_second_server_when_one_dies_mid_stage(tiny_repo: Path, tmp_path) -> None:
    from model_repository.launcher.server import TritonServer

    # Only what the ACE-Step 1.5 sampler needs (no LLMs, no v1 family): the two servers start faster.
    needed = [m for m in ACESTEP15_MODELS if (tiny_repo / m).is_dir()]
    servers = [TritonServer(tiny_repo, log_path=tmp_path / f"triton-{i}.log", load_models=needed) for i in range(2)]
    await asyncio.gather(*(asyncio.to_thread(s.start) for s in servers))
    try:
        settings = make_settings(
            tmp_path, triton_urls=[s.grpc_url for s in servers], triton_concurrency=1, triton_health_interval_s=0.5
        )
        gateway = TritonGateway(settings)
        async with running_app(settings, gateway) as (_, client):
            headers = await login(client)
            r = await client.post(
                "/v1/music/generate",
                headers=headers,
                json={
                    "caption": "drone",
                    "bpm": 90,
                    "key_scale": "D minor",
                    "time_signature": "4",
                    "audio_duration": 30,
                    "inference_steps": 200,
                    "audio_format": "wav",
                },
            )
            job_id = r.json()["job_id"]

            async def diffusing():
                body = (await client.get(f"/v1/jobs/{job_id}", headers=headers)).json()
                progress = body.get("progress") or {}
                return progress.get("stage") == "diffusion" and progress.get("step", 0) >= 1

            await wait_for(diffusing, timeout=120, interval=0.1, what="the sampler to start")
            busy = [s for s, h in zip(servers, await gateway.health(), strict=True) if h.in_flight > 0]
            assert len(busy) == 1
            victim = busy[0]
            survivor = servers[1 - servers.index(victim)]
            killed_at = time.monotonic()
            os.killpg(victim.pgid, signal.SIGKILL)  # the server dies mid-stage, no goodbye

            job = await wait_job(client, headers, job_id, timeout=300, what="the job after failover")
            assert job["status"] == "succeeded", job
            assert time.monotonic() - killed_at < 300
            health = {h.url: h.healthy for h in await gateway.health()}
            assert health[victim.grpc_url] is False and health[survivor.grpc_url] is True
        engine = make_engine(settings.resolved_database_url)
        async with make_sessionmaker(engine)() as session:
            row = await store.get_job(session=session, public_id=job_id)
            runs = await store.stage_runs(session=session, job_id=row.id)
            events = await store.list_events(session=session, job_id=row.id)
        await engine.dispose()
        audio_run = next(r for r in runs if r.stage == "audio")
        assert audio_run.ok and audio_run.server == survivor.grpc_url
        retries = [e.data["retry"] for e in events if e.kind == "status" and "retry" in e.data]
        assert retries and retries[0]["server"] == survivor.grpc_url and victim.grpc_url in retries[0]["reason"]
    finally:
        for server in servers:
            server.stop()
