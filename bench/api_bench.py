"""API latency bench: POST /v1/song/create and GET /v1/song/status with 100 and 500 concurrent clients while 200
jobs are queued.

The orchestrator runs as it does in production — ``uvicorn --factory orchestrator.app:create_app`` in its own
process, settings from ``TRITONE_*`` — with ``triton_concurrency=0`` (an API-only node), so the 200 queued jobs stay
queued and every status answer computes a real queue position and eta. The load generator is this process (aiohttp),
on the same machine.

Every POST in the bench is followed (untimed) by a cancel of the job it made, so the queue stays at its 200 jobs.

Two load shapes per client count:
- ``paced``: every client polls at the page's advertised interval (``poll_interval_sec``, 5 s) with a random phase,
  as the web page and the documented clients do;
- ``closed``: every client sends its next request as soon as the previous one returns (saturation: latency is then
  mostly queueing, ``clients / throughput``).

Usage: python bench/api_bench.py [--clients 100 500] [--queued 200] [--seconds 15] [--database-url URL]
           [--json out/api-bench.json]
The page's promises: POST answers in < 1 s, GET status in < 100 ms; the project's target is status p99 < 10 ms.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import random
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import aiohttp

REPO_ROOT = Path(__file__).resolve().parents[1]
PAGE_POST_S = 1.0  # seed 000: "POST 返回 < 1 s"
PAGE_STATUS_S = 0.100  # seed 000: "GET status < 100 ms"
TARGET_STATUS_P99_S = 0.010


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _percentile(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    index = min(len(ordered) - 1, max(0, round(q / 100 * (len(ordered) - 1))))
    return ordered[index]


def start_server(data_dir: Path, database_url: str | None, workers: int) -> tuple[subprocess.Popen[bytes], str]:
    sys.path.insert(0, str(REPO_ROOT))
    from orchestrator.services.auth import hash_password

    port = _free_port()
    env = {
        **os.environ,
        "TRITONE_DATA_DIR": str(data_dir),
        "TRITONE_TRITON_CONCURRENCY": "0",
        "TRITONE_QUEUE_MAX": "100000",  # room for the POSTs in flight above the 200 queued
        "TRITONE_JWT_SECRET": "bench-secret-" + "x" * 32,
        "TRITONE_USERS": json.dumps({f"user{i}": hash_password("pw", iterations=1000) for i in range(8)}),
    }
    if database_url:
        env["TRITONE_DATABASE_URL"] = database_url
    cmd = [sys.executable, "-m", "uvicorn", "--factory", "orchestrator.app:create_app", "--host", "127.0.0.1",
           "--port", str(port), "--log-level", "warning", "--workers", str(workers)]
    proc = subprocess.Popen(cmd, cwd=REPO_ROOT, env=env, start_new_session=True)
    return proc, f"http://127.0.0.1:{port}"


async def wait_ready(base: str, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    async with aiohttp.ClientSession() as session:
        while time.monotonic() < deadline:
            try:
                async with session.get(f"{base}/health") as r:
                    if r.status == 200:
                        return
            except aiohttp.ClientError:
                pass
            await asyncio.sleep(0.2)
    raise RuntimeError(f"the orchestrator at {base} did not become ready in {timeout} s")


async def login(session: aiohttp.ClientSession, base: str, user: str) -> dict[str, str]:
    async with session.post(f"{base}/auth/login", json={"username": user, "password": "pw"}) as r:
        token = (await r.json())["access_token"]
    return {"Authorization": f"Bearer {token}"}


SONG = {"theme": "周末骑单车去看海 风把白衬衫吹起来", "duration": 30, "inference_steps": 8}


async def fill_queue(base: str, users: list[dict[str, str]], count: int) -> list[tuple[dict[str, str], str]]:
    jobs: list[tuple[dict[str, str], str]] = []
    async with aiohttp.ClientSession() as session:
        for i in range(count):
            headers = users[i % len(users)]
            async with session.post(f"{base}/v1/song/create", json=SONG, headers=headers) as r:
                body = await r.json()
                if r.status != 200:
                    raise RuntimeError(f"filling the queue failed: {r.status} {body}")
                jobs.append((headers, body["data"]["intent_id"]))
    return jobs


async def run_load(
    base: str,
    *,
    kind: str,
    clients: int,
    seconds: float,
    paced_interval: float | None,
    jobs: list[tuple[dict[str, str], str]],
    users: list[dict[str, str]],
) -> dict[str, Any]:
    latencies: list[float] = []
    errors: dict[str, int] = {}
    stop_at = time.monotonic() + seconds
    connector = aiohttp.TCPConnector(limit=clients, limit_per_host=clients)
    timeout = aiohttp.ClientTimeout(total=60)
    rng = random.Random(1234)

    async with aiohttp.ClientSession(connector=connector, timeout=timeout) as session:

        async def one(client: int) -> None:
            local = random.Random(client)
            if paced_interval:
                await asyncio.sleep(rng.uniform(0, paced_interval))
            while time.monotonic() < stop_at:
                started = time.perf_counter()
                try:
                    if kind == "status":
                        headers, intent = jobs[local.randrange(len(jobs))]
                        async with session.get(f"{base}/v1/song/status", params={"intent_id": intent},
                                               headers=headers) as r:
                            await r.read()
                            status = r.status
                    else:
                        headers = users[client % len(users)]
                        async with session.post(f"{base}/v1/song/create", json=SONG, headers=headers) as r:
                            body = await r.json()
                            status = r.status
                    elapsed = time.perf_counter() - started
                    if kind == "post" and status == 200:
                        # Keep the queue at its 200 jobs: take the new one back out (not timed).
                        cancel = {"intent_id": body["data"]["intent_id"]}
                        async with session.post(f"{base}/v1/song/cancel", json=cancel, headers=headers) as r:
                            await r.read()
                    if status == 200:
                        latencies.append(elapsed)
                    else:
                        errors[str(status)] = errors.get(str(status), 0) + 1
                except (TimeoutError, aiohttp.ClientError) as exc:
                    errors[type(exc).__name__] = errors.get(type(exc).__name__, 0) + 1
                if paced_interval:
                    await asyncio.sleep(max(0.0, paced_interval - (time.perf_counter() - started)))

        wall = time.perf_counter()
        await asyncio.gather(*(one(i) for i in range(clients)))
        wall = time.perf_counter() - wall
    return {
        "kind": kind,
        "clients": clients,
        "shape": "paced" if paced_interval else "closed",
        "interval_s": paced_interval,
        "requests": len(latencies),
        "errors": errors,
        "throughput_rps": round(len(latencies) / wall, 1),
        "p50_ms": round(_percentile(latencies, 50) * 1000, 2),
        "p99_ms": round(_percentile(latencies, 99) * 1000, 2),
        "mean_ms": round(statistics.fmean(latencies) * 1000, 2) if latencies else None,
        "max_ms": round(max(latencies) * 1000, 2) if latencies else None,
    }


async def main_async(args: argparse.Namespace) -> list[dict[str, Any]]:
    data_dir = Path(tempfile.mkdtemp(prefix="tritone-bench-"))
    proc, base = start_server(data_dir, args.database_url, args.server_workers)
    results: list[dict[str, Any]] = []
    try:
        await wait_ready(base)
        async with aiohttp.ClientSession() as session:
            users = [await login(session, base, f"user{i}") for i in range(8)]
        jobs = await fill_queue(base, users, args.queued)
        print(f"{args.queued} jobs queued at {base} (database: {args.database_url or 'SQLite in ' + str(data_dir)})")
        for clients in args.clients:
            for kind in ("status", "post"):
                for interval in (args.poll_interval, None):
                    seconds = args.paced_seconds if interval else args.seconds
                    result = await run_load(base, kind=kind, clients=clients, seconds=seconds,
                                            paced_interval=interval, jobs=jobs[: args.queued], users=users)
                    results.append(result)
                    print(json.dumps(result), flush=True)
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
    return results


def report(results: list[dict[str, Any]]) -> str:
    lines = [
        "| request | clients | load | requests | req/s | p50 ms | p99 ms | p99 / page promise | errors |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for r in results:
        promise = PAGE_STATUS_S if r["kind"] == "status" else PAGE_POST_S
        ratio = r["p99_ms"] / 1000 / promise
        load = f"paced {r['interval_s']:g} s" if r["shape"] == "paced" else "closed loop"
        name = "GET /v1/song/status" if r["kind"] == "status" else "POST /v1/song/create"
        lines.append(
            f"| {name} | {r['clients']} | {load} | {r['requests']} | {r['throughput_rps']} | {r['p50_ms']} | "
            f"{r['p99_ms']} | {ratio:.3f} (< {promise * 1000:g} ms) | {r['errors'] or '-'} |"
        )
    return "\n".join(lines)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--clients", type=int, nargs="+", default=[100, 500])
    parser.add_argument("--queued", type=int, default=200)
    parser.add_argument("--seconds", type=float, default=10.0, help="length of each closed-loop run")
    parser.add_argument("--paced-seconds", type=float, default=20.0, help="length of each paced run")
    parser.add_argument("--poll-interval", type=float, default=5.0, help="paced clients' interval (the page's 5 s)")
    parser.add_argument("--database-url", default=None, help="default: an SQLite file in a temporary folder")
    parser.add_argument("--server-workers", type=int, default=1, help="uvicorn worker processes")
    parser.add_argument("--json", type=Path, default=None, help="also write the results here")
    args = parser.parse_args()
    try:
        import uvloop  # the load generator shares the cores with the server: keep its own overhead low

        results = uvloop.run(main_async(args))
    except ImportError:
        results = asyncio.run(main_async(args))
    print()
    print(f"machine: {platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}")
    print(report(results))
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps({"results": results, "cpus": os.cpu_count()}, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
