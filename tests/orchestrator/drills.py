"""Fault drills (issue 14), shared by the tests (a few jobs, short outages) and ``bench/fault_drills.py`` (more of
both): real processes on free ports, everything started here stopped here.

- :func:`triton_outage_drill` — the only tritonserver (a toy sampler, ``toy_sampler.py``) is SIGKILLed mid-load and
  started again on the same ports after ``outage_s``; every job must succeed.
- :func:`database_outage_drill` — a private PostgreSQL (:class:`PostgresInstance`: ``initdb`` + ``pg_ctl`` in a temp
  folder, never the machine's own server) is stopped mid-load and started again; requests meanwhile get a fast 503,
  and every job must succeed.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
import signal
import subprocess
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

from model_repository.launcher.process import free_port, free_ports
from model_repository.launcher.server import TritonServer
from tests.orchestrator.doubles import StageRunnerDouble
from tests.orchestrator.support import login, make_settings, running_app
from tests.orchestrator.toy_sampler import MUSIC_JOB, write_toy_sampler

TERMINAL = ("succeeded", "failed", "cancelled")


@dataclass
class DrillResult:
    name: str
    submitted: int = 0
    succeeded: int = 0
    failed: int = 0
    lost: int = 0  # not finished by the deadline, or gone
    errors: list[str] = field(default_factory=list)
    ready_503: bool = False  # /ready answered 503 during the outage
    outage_statuses: dict[int, int] = field(default_factory=dict)  # API answers during the outage, by status
    seconds: float = 0.0

    def line(self) -> str:
        return (
            f"{self.name}: submitted {self.submitted}, succeeded {self.succeeded}, failed {self.failed}, "
            f"lost {self.lost} ({self.seconds:.0f} s; /ready 503 during the outage: {self.ready_503})"
        )


async def _job_status(client: httpx.AsyncClient, headers: dict[str, str], job_id: str) -> dict[str, Any]:
    r = await client.get(f"/v1/jobs/{job_id}", headers=headers)
    return r.json() if r.status_code == 200 else {"status": f"http {r.status_code}"}


async def _submit(client: httpx.AsyncClient, headers: dict[str, str], count: int, body: dict[str, Any]) -> list[str]:
    ids = []
    for i in range(count):
        r = await client.post("/v1/music/generate", json={**body, "caption": f"drill {i}"}, headers=headers)
        assert r.status_code == 200, r.text
        ids.append(str(r.json()["job_id"]))
    return ids


async def _finish(
    result: DrillResult, client: httpx.AsyncClient, headers: dict[str, str], ids: list[str], timeout: float
) -> None:
    deadline = time.monotonic() + timeout
    states: dict[str, dict[str, Any]] = {}
    while time.monotonic() < deadline:
        states = {i: await _job_status(client, headers, i) for i in ids}
        if all(s.get("status") in TERMINAL for s in states.values()):
            break
        await asyncio.sleep(0.5)
    for state in states.values():
        status = state.get("status")
        if status == "succeeded":
            result.succeeded += 1
        elif status in ("failed", "cancelled"):
            result.failed += 1
            result.errors.append(str(state.get("error")))
        else:
            result.lost += 1


async def _wait_running(client: httpx.AsyncClient, headers: dict[str, str], ids: list[str], timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for job_id in ids:
            progress = (await _job_status(client, headers, job_id)).get("progress") or {}
            if progress.get("stage") == "diffusion" and progress.get("step", 0) >= 1:
                return
        await asyncio.sleep(0.1)
    raise AssertionError(f"no job reached the sampler within {timeout:g} s")


async def _probe_ready(client: httpx.AsyncClient, result: DrillResult, seconds: float) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if (await client.get("/ready")).status_code == 503:
            result.ready_503 = True
            return
        await asyncio.sleep(0.1)


async def triton_outage_drill(
    folder: Path, *, jobs: int = 4, outage_s: float = 4.0, step_s: float = 0.2, steps: int = 10
) -> DrillResult:
    result = DrillResult(f"triton outage ({jobs} jobs, {outage_s:g} s down)")
    started = time.monotonic()
    repo = write_toy_sampler(folder / "repository", step_s=step_s)
    http, grpc, metrics = free_ports(3)

    def server(n: int) -> TritonServer:
        return TritonServer(
            repo,
            http_port=http,
            grpc_port=grpc,
            metrics_port=metrics,
            log_path=folder / f"triton-{n}.log",
            load_models=["sampler"],
        )

    servers = [server(1)]
    await asyncio.to_thread(servers[0].start)
    try:
        settings = make_settings(
            folder / "data",
            triton_urls=[servers[0].grpc_url],
            triton_concurrency=2,
            triton_health_interval_s=0.5,
            outage_backoff_max_s=1.0,
        )
        async with running_app(settings) as (_, client):
            headers = await login(client)
            ids = await _submit(client, headers, jobs, {**MUSIC_JOB, "inference_steps": steps})
            result.submitted = len(ids)
            await _wait_running(client, headers, ids, timeout=60)
            pgid = servers[0].pgid
            assert pgid is not None
            os.killpg(pgid, signal.SIGKILL)  # the only server dies mid-load, no goodbye
            down_at = time.monotonic()
            await asyncio.to_thread(servers[0].stop)
            await _probe_ready(client, result, seconds=min(outage_s, 5.0))
            await asyncio.sleep(max(0.0, outage_s - (time.monotonic() - down_at)))
            servers.append(server(2))
            await asyncio.to_thread(servers[-1].start)
            await _finish(result, client, headers, ids, timeout=60 + jobs * steps * step_s * 2)
    finally:
        for each in servers:
            await asyncio.to_thread(each.stop)
    result.seconds = time.monotonic() - started
    return result


# --------------------------------------------------------------------------------------------------------------------
# A private PostgreSQL
# --------------------------------------------------------------------------------------------------------------------


def _pg_bin() -> Path | None:
    for candidate in sorted(Path("/usr/lib/postgresql").glob("*/bin"), reverse=True):
        if (candidate / "initdb").exists() and (candidate / "pg_ctl").exists():
            return candidate
    found = shutil.which("pg_ctl")
    return Path(found).parent if found else None


def postgres_missing() -> str | None:
    if _pg_bin() is None:
        return "no initdb/pg_ctl (Debian: apt-get install postgresql)"
    if os.geteuid() == 0 and shutil.which("runuser") is None:
        return "running as root without runuser: initdb refuses root"
    return None


class PostgresInstance:
    """A throw-away PostgreSQL server on a free port in a temp folder (trust auth, user ``postgres``)."""

    def __init__(self) -> None:
        bin_dir = _pg_bin()
        if bin_dir is None:
            raise RuntimeError(postgres_missing() or "no PostgreSQL binaries")
        self.bin = bin_dir
        self.folder = Path(tempfile.mkdtemp(prefix="tritone-pg-"))
        self.data = self.folder / "data"
        self.port = free_port()
        self.url = f"postgresql+asyncpg://postgres@127.0.0.1:{self.port}/postgres"
        if os.geteuid() == 0:
            shutil.chown(self.folder, user="postgres")
        self._run("initdb", "-D", str(self.data), "-U", "postgres", "-A", "trust", "--no-sync")

    def _run(self, tool: str, *args: str) -> None:
        cmd = [str(self.bin / tool), *args]
        if os.geteuid() == 0:
            cmd = ["runuser", "-u", "postgres", "--", *cmd]
        done = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
        if done.returncode != 0:
            raise RuntimeError(f"{tool} failed ({done.returncode}): {done.stdout[-2000:]}\n{done.stderr[-2000:]}")

    def start(self) -> None:
        options = f"-p {self.port} -k {self.folder} -c listen_addresses=127.0.0.1 -c fsync=off"
        self._run("pg_ctl", "-D", str(self.data), "-l", str(self.folder / "server.log"), "-o", options, "-w", "start")

    def stop(self) -> None:
        with contextlib.suppress(RuntimeError):
            self._run("pg_ctl", "-D", str(self.data), "-m", "fast", "-w", "stop")

    def remove(self) -> None:
        self.stop()
        shutil.rmtree(self.folder, ignore_errors=True)


@contextlib.contextmanager
def postgres_instance() -> Iterator[PostgresInstance]:
    instance = PostgresInstance()
    try:
        instance.start()
        yield instance
    finally:
        instance.remove()


async def database_outage_drill(
    folder: Path, postgres: PostgresInstance, *, jobs: int = 6, outage_s: float = 3.0, step_delay: float = 0.05
) -> DrillResult:
    """Jobs on the in-process stage runner (so that only the database fails) while PostgreSQL restarts."""
    result = DrillResult(f"database outage ({jobs} jobs, {outage_s:g} s down)")
    started = time.monotonic()
    settings = make_settings(
        folder / "data", postgres.url, triton_concurrency=2, outage_backoff_max_s=0.5, job_lease_s=10.0
    )
    transport_kwargs = {"raise_app_exceptions": False}
    async with running_app(settings, StageRunnerDouble(step_delay=step_delay)) as (app, _):
        transport = httpx.ASGITransport(app=app, **transport_kwargs)  # type: ignore[arg-type]
        async with httpx.AsyncClient(transport=transport, base_url="http://tritone.test", timeout=30) as client:
            headers = await login(client)
            body = {**MUSIC_JOB, "inference_steps": 20}
            ids = await _submit(client, headers, jobs, body)
            result.submitted = len(ids)
            await _wait_running(client, headers, ids, timeout=30)
            await asyncio.to_thread(postgres.stop)
            down_at = time.monotonic()
            while time.monotonic() - down_at < outage_s:
                t0 = time.monotonic()
                r = await client.get(f"/v1/jobs/{ids[0]}", headers=headers)
                result.outage_statuses[r.status_code] = result.outage_statuses.get(r.status_code, 0) + 1
                if r.status_code != 503 or time.monotonic() - t0 > 2.0:
                    took = time.monotonic() - t0
                    result.errors.append(f"during the outage GET /v1/jobs answered {r.status_code} in {took:.1f} s")
                if not result.ready_503:
                    result.ready_503 = (await client.get("/ready")).status_code == 503
                await asyncio.sleep(0.3)
            await asyncio.to_thread(postgres.start)
            await _finish(result, client, headers, ids, timeout=90)
    result.seconds = time.monotonic() - started
    return result
