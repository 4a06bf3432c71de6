"""Durability: restarts lose nothing, interrupted jobs resume (finished stages are not re-run), a crashed worker's
job is picked up after its lease lapses, and two orchestrator processes on one PostgreSQL never run a job twice."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from orchestrator import store
from orchestrator.db import make_engine, make_sessionmaker
from tests.orchestrator.doubles import StageRunnerDouble
from tests.orchestrator.support import (
    USERS,
    create_song,
    login,
    make_settings,
    running_app,
    song_status,
    wait_for,
    wait_song,
)

REPO_ROOT = Path(__file__).resolve().parents[2]


async def _job_and_stage_runs(db_url: str, intent: str) -> tuple[Any, list[Any]]:
    """The job's row and its stage runs, read straight from the database."""
    engine = make_engine(db_url)
    async with make_sessionmaker(engine)() as session:
        row = await store.get_job(session=session, public_id=intent)
        runs = await store.stage_runs(session=session, job_id=row.id)
    await engine.dispose()
    return row, list(runs)


async def test_graceful_restart_resumes_and_keeps_finished_jobs(tmp_path, db_url) -> None:
    settings = make_settings(tmp_path, db_url, triton_concurrency=1)
    first = StageRunnerDouble()
    async with running_app(settings, first) as (_, client):
        headers = await login(client)
        finished = await create_song(client, headers, "kept")
        done_before = await wait_song(client, headers, finished, ("succeeded",))
        first.gate("sampler")
        interrupted = await create_song(client, headers, "resumed", inference_steps=4)
        await asyncio.wait_for(first.entered["sampler"].wait(), 10)
        mid = await song_status(client, headers, interrupted)
        assert mid["status"] == "audio_pending" and mid["lyrics"]
    # the app stopped mid-stage: the job went back to the queue, not left "running"
    engine = make_engine(settings.resolved_database_url)
    async with make_sessionmaker(engine)() as session:
        row = await store.get_job(session=session, public_id=interrupted)
        assert row.status == "queued" and row.worker_id is None and "lyrics" in row.state["done"]
    await engine.dispose()

    second = StageRunnerDouble()
    async with running_app(settings, second) as (_, client):
        headers = await login(client)
        again = await song_status(client, headers, finished)
        assert again["status"] == "succeeded" and again["items"][0]["seed"] == done_before["items"][0]["seed"]
        assert (await client.get(again["items"][0]["audio_url"])).status_code == 200
        resumed = await wait_song(client, headers, interrupted, ("succeeded", "failed"))
        assert resumed["status"] == "succeeded", resumed
        assert resumed["lyrics"] == mid["lyrics"]
    # the second process did not write the lyrics again, it ran the sampler with the same seeds
    assert [m for m, _ in second.calls] == ["sampler"]
    first_sampler = [r for m, r in first.calls if m == "sampler"][-1]
    assert second.calls[0][1]["seeds"] == first_sampler["seeds"]


def _start_worker(settings: dict, options: dict, log: Path) -> subprocess.Popen:
    env = {**os.environ, "PYTHONPATH": str(REPO_ROOT)}
    proc = subprocess.Popen(
        [sys.executable, "-m", "tests.orchestrator.worker_process", json.dumps(settings), json.dumps(options)],
        cwd=REPO_ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=open(log, "w"),
        text=True,
        start_new_session=True,
    )
    line = proc.stdout.readline() if proc.stdout else ""
    if not line.startswith("READY"):
        proc.kill()
        raise AssertionError(f"worker did not start: {line!r}\n{log.read_text()[-3000:]}")
    return proc


def _stop(proc: subprocess.Popen, sig: int = signal.SIGTERM) -> None:
    if proc.poll() is None:
        os.killpg(proc.pid, sig)
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(timeout=10)


def _worker_settings(tmp_path: Path, db_url: str, **extra) -> dict:
    return {
        "data_dir": str(tmp_path / "data"),
        "database_url": db_url,
        "users": USERS,
        "jwt_secret": "test-secret-" + "x" * 32,
        "claim_poll_s": 0.05,
        **extra,
    }


async def test_crashed_worker_job_is_taken_over_after_lease(tmp_path, db_url) -> None:
    worker = _start_worker(
        _worker_settings(tmp_path, db_url, triton_concurrency=1, job_lease_s=2.0),
        {"step_delay": 0.5, "name": "doomed"},
        tmp_path / "worker.log",
    )
    try:
        settings = make_settings(tmp_path / "data", db_url, triton_concurrency=0)  # API only, for now
        async with running_app(settings, StageRunnerDouble()) as (_, client):
            headers = await login(client)
            intent = await create_song(client, headers, "crash", inference_steps=40)

            async def in_audio():
                data = await song_status(client, headers, intent)
                return data["progress"]["stage"] == "diffusion" and data["progress"]["step"] >= 1

            await wait_for(in_audio, timeout=30, what="the worker to reach the sampler")
            _stop(worker, signal.SIGKILL)  # a crash: no graceful hand-back
            assert (await song_status(client, headers, intent))["status"] == "audio_pending"
        taker = StageRunnerDouble()
        async with running_app(make_settings(tmp_path / "data", db_url, job_lease_s=2.0), taker) as (_, client):
            headers = await login(client)
            done = await wait_song(client, headers, intent, ("succeeded", "failed"), timeout=30)
            assert done["status"] == "succeeded", done
        assert [m for m, _ in taker.calls] == ["sampler"]  # lyrics and metadata were checkpointed
        row, runs = await _job_and_stage_runs(db_url, intent)
        assert row.attempts == 2
        audio_runs = [r for r in runs if r.stage == "audio"]
        assert [r.ok for r in audio_runs] == [None, True]  # the crashed attempt never finished
        assert audio_runs[0].worker_id != audio_runs[1].worker_id
    finally:
        _stop(worker, signal.SIGKILL)


async def test_two_processes_never_run_the_same_job(tmp_path, pg_url) -> None:
    """Two real orchestrator processes on one PostgreSQL, two job slots each, racing for 16 jobs."""
    logs = [tmp_path / "calls-a.jsonl", tmp_path / "calls-b.jsonl"]
    workers = [
        _start_worker(
            _worker_settings(tmp_path, pg_url, triton_concurrency=2),
            {"step_delay": 0.002, "log_path": str(log), "name": n},
            tmp_path / f"worker-{n}.log",
        )
        for n, log in zip("ab", logs, strict=True)
    ]
    try:
        settings = make_settings(tmp_path / "data", pg_url, triton_concurrency=0)
        async with running_app(settings, StageRunnerDouble()) as (_, client):
            headers = await login(client)
            intents = []
            for i in range(16):
                intent = await create_song(client, headers, f"job-{i:02d}", inference_steps=3, audio_format="wav")
                intents.append(intent)

            async def all_done():
                states = [(await song_status(client, headers, i))["status"] for i in intents]
                return states if all(s in ("succeeded", "failed") for s in states) else None

            states = await wait_for(all_done, timeout=90, interval=0.2, what="all 16 jobs")
            assert set(states) == {"succeeded"}
    finally:
        for worker in workers:
            _stop(worker)
    calls = [json.loads(line) for log in logs if log.exists() for line in log.read_text().splitlines()]
    sampler_runs = [c for c in calls if c["model"] == "sampler"]
    themes = sorted(c["request"]["caption"].split("about ")[1].split(",")[0] for c in sampler_runs)
    assert themes == sorted(f"job-{i:02d}" for i in range(16)), "a job's sampler ran twice or not at all"
    lyricist_themes = [c["request"]["theme"] for c in calls if c["model"] == "lyricist"]
    assert len(lyricist_themes) == len(set(lyricist_themes)) == 16
    assert len({c["pid"] for c in sampler_runs}) == 2, "both processes should have taken jobs"
    engine = make_engine(pg_url)
    async with make_sessionmaker(engine)() as session:
        for intent in intents:
            row = await store.get_job(session=session, public_id=intent)
            runs = await store.stage_runs(session=session, job_id=row.id)
            assert [r.stage for r in runs] == ["lyrics", "metadata", "audio", "post"] and row.attempts == 1
    await engine.dispose()


# (the model or step the worker is stuck in, the job's stage then, the models the taker must call again). The song
# pipeline's metadata stage calls the LM only when the plan lacks fields, which the double's plan never does; it runs
# through the same stage engine as these three.
CRASH_POINTS = [
    ("lyricist", "lyrics", ["lyricist", "sampler"]),
    ("sampler", "audio", ["sampler"]),
    ("post", "post", []),
]


@pytest.mark.parametrize(("hold", "stage", "rerun"), CRASH_POINTS, ids=[c[1] for c in CRASH_POINTS])
async def test_kill_9_during_each_stage_loses_nothing(tmp_path, hold, stage, rerun) -> None:
    """The orchestrator SIGKILLed while a job is in each stage: another process takes the job over after the lease
    and finishes it; stages that had finished are not run again."""
    db_url = f"sqlite+aiosqlite:///{tmp_path / 'jobs.db'}"
    worker = _start_worker(
        _worker_settings(tmp_path, db_url, triton_concurrency=1, job_lease_s=2.0),
        {"step_delay": 0.05, "hold": hold, "name": "doomed"},
        tmp_path / "worker.log",
    )
    try:
        async with running_app(make_settings(tmp_path / "data", db_url, triton_concurrency=0), StageRunnerDouble()) as (
            _,
            client,
        ):
            headers = await login(client)
            body = {"theme": "crash", "duration": 10, "inference_steps": 4, "generate_cover": False}
            intent = (await client.post("/v1/song/create", json=body, headers=headers)).json()["data"]["intent_id"]
            engine = make_engine(db_url)
            sessions = make_sessionmaker(engine)

            async def in_stage() -> bool:
                async with sessions() as session:
                    row = await store.get_job(session=session, public_id=intent)
                    runs = await store.stage_runs(session=session, job_id=row.id)
                return any(r.stage == stage and r.ok is None for r in runs)

            await wait_for(in_stage, timeout=30, what=f"the worker to enter stage {stage}")
            await engine.dispose()
            _stop(worker, signal.SIGKILL)
        taker = StageRunnerDouble()
        async with running_app(make_settings(tmp_path / "data", db_url, job_lease_s=2.0), taker) as (_, client):
            headers = await login(client)
            done = await wait_song(client, headers, intent, ("succeeded", "failed"), timeout=40)
            assert done["status"] == "succeeded", done
            assert done["items"] and all(item["audio_url"] for item in done["items"]), done
        assert [m for m, _ in taker.calls if m != "lm"] == rerun
        row, runs = await _job_and_stage_runs(db_url, intent)
        assert row.attempts == 2
        assert [r.ok for r in runs if r.stage == stage] == [None, True]  # the crashed attempt never finished
    finally:
        _stop(worker, signal.SIGKILL)
