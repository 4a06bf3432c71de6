"""Fuzz every operation of the OpenAPI schema with schemathesis against the real app under uvicorn: a client's
mistake must never produce a 5xx. Bounded: a fixed example budget per operation and ~60 s overall."""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager

import httpx
import pytest
import uvicorn
from fastapi import FastAPI

from orchestrator.app import create_app
from tests.orchestrator.doubles import StageRunnerDouble
from tests.orchestrator.support import make_settings

schemathesis = pytest.importorskip("schemathesis", reason="schemathesis is in the dev extras: pip install -e '.[dev]'")
hypothesis = pytest.importorskip("hypothesis")

BUDGET_S = 40.0
EXAMPLES_PER_OPERATION = 60
STATUS: list[tuple[str, str, str, int]] = []  # (method, path, mode, status) of every call, for debugging


@contextmanager
def serve(app: FastAPI) -> Iterator[str]:
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    server = uvicorn.Server(uvicorn.Config(app, log_level="warning", lifespan="on"))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not server.started:
        if time.monotonic() > deadline or not thread.is_alive():
            raise RuntimeError("uvicorn did not start")
        time.sleep(0.05)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(timeout=30)
        sock.close()


def test_openapi_schema_fuzz_has_no_server_errors(tmp_path) -> None:
    from hypothesis import HealthCheck, given
    from hypothesis import settings as hsettings

    settings = make_settings(
        tmp_path,
        triton_concurrency=0,
        queue_max=1_000_000,
        # per-user caps and rates would turn most later cases into 429s; they have their own tests (test_limits.py)
        user_queue_max=1_000_000,
        submit_rate="1000000/minute",
        request_rate="1000000/minute",
        user_storage_max_bytes=0,
    )
    app = create_app(settings, gateway=StageRunnerDouble())
    failures: list[str] = []
    calls = 0
    with serve(app) as base_url:
        token = httpx.post(f"{base_url}/auth/login", json={"username": "alice", "password": "alice-pw"}).json()
        auth = {"Authorization": f"Bearer {token['access_token']}"}
        schema = schemathesis.openapi.from_url(f"{base_url}/openapi.json")
        operations = [result.ok() for result in schema.get_all_operations()]
        assert len(operations) >= 15, [op.label for op in operations]
        deadline = time.monotonic() + BUDGET_S
        modes = (schemathesis.GenerationMode.POSITIVE, schemathesis.GenerationMode.NEGATIVE)
        jobs = [(op, mode) for op in operations for mode in modes]
        per_op = max(5, min(EXAMPLES_PER_OPERATION, int(BUDGET_S * 30 / len(jobs))))
        for operation, mode in jobs:
            if time.monotonic() > deadline:
                break

            @given(case=operation.as_strategy(generation_mode=mode))
            @hsettings(
                max_examples=per_op,
                deadline=None,
                derandomize=True,
                database=None,
                suppress_health_check=list(HealthCheck),
            )
            def exercise(case) -> None:  # type: ignore[no-untyped-def]
                nonlocal calls
                if time.monotonic() > deadline:
                    return
                # Always a valid identity: the point is the rest of the request (auth has its own tests).
                headers = {
                    k: v for k, v in (case.headers or {}).items() if k.lower() not in ("authorization", "x-api-key")
                }
                headers["Authorization"] = auth["Authorization"]
                case.headers = headers
                response = case.call(base_url=base_url, timeout=10)
                calls += 1
                STATUS.append(
                    (case.method, case.path, str(case.meta.generation.mode) if case.meta else "", response.status_code)
                )
                if response.status_code >= 500:
                    failures.append(
                        f"{case.method} {case.formatted_path} -> {response.status_code}: {response.text[:300]}\n"
                        f"  body={case.body!r:.300} query={case.query!r:.200}"
                    )

            try:
                exercise()
            except hypothesis.errors.Unsatisfiable:
                pass  # no invalid input exists for this operation (e.g. GET /health takes no parameters)
    assert calls > 200, f"only {calls} requests were made"
    assert not failures, "\n".join(failures[:10])


def _wav(rate: int, channels: int, bits: int, declared: int, payload: bytes) -> bytes:
    import struct

    block = max(1, channels * bits // 8) & 0xFFFF
    fmt = struct.pack("<IHHIIHH", 16, 1, channels, rate, (rate * block) & 0xFFFFFFFF, block, bits)
    return (
        b"RIFF"
        + struct.pack("<I", (36 + declared) & 0xFFFFFFFF)
        + b"WAVEfmt "
        + fmt
        + b"data"
        + struct.pack("<I", declared)
        + payload
    )


@pytest.mark.slow
def test_streamed_bodies_and_hostile_audio_have_no_server_errors(tmp_path) -> None:
    """Beyond the schema: chunked bodies of any size and type to every POST route, and WAV headers with any rate,
    channel count, sample width and declared length as uploads — always a 4xx/2xx, never a 5xx, and the server keeps
    answering (the body limit is small here so oversized bodies are common)."""
    from hypothesis import HealthCheck, given
    from hypothesis import settings as hsettings
    from hypothesis import strategies as st

    settings = make_settings(
        tmp_path,
        triton_concurrency=0,
        queue_max=1_000_000,
        user_queue_max=1_000_000,
        submit_rate="100000/minute",
        request_rate="1000000/minute",
        json_body_max_bytes=16 * 1024,
        upload_max_bytes=256 * 1024,
    )
    app = create_app(settings, gateway=StageRunnerDouble())
    failures: list[str] = []
    posts = [
        "/auth/login",
        "/v1/song/create",
        "/v1/song/cancel",
        "/v1/music/generate",
        "/release_task",
        "/query_result",
    ]
    types = [
        "application/json",
        "application/x-www-form-urlencoded",
        "multipart/form-data; boundary=b",
        "text/plain",
        "",
    ]
    deadline = time.monotonic() + BUDGET_S / 2
    with serve(app) as base_url, httpx.Client(base_url=base_url, timeout=10) as http:
        token = http.post("/auth/login", json={"username": "alice", "password": "alice-pw"}).json()["access_token"]
        auth = {"Authorization": f"Bearer {token}"}

        @given(
            path=st.sampled_from(posts),
            content_type=st.sampled_from(types),
            chunks=st.lists(st.binary(max_size=8192) | st.just(b"[" * 8192), max_size=6),
            repeat=st.integers(1, 8),
        )
        @hsettings(
            max_examples=80, deadline=None, derandomize=True, database=None, suppress_health_check=list(HealthCheck)
        )
        def streamed(path: str, content_type: str, chunks: list[bytes], repeat: int) -> None:
            if time.monotonic() > deadline:
                return

            def body() -> Iterator[bytes]:
                for _ in range(repeat):
                    yield from chunks

            headers = {**auth, **({"Content-Type": content_type} if content_type else {})}
            try:
                r = http.post(path, content=body(), headers=headers)
            except httpx.TransportError:
                return  # the server may close a refused upload's connection before all of it was sent
            if r.status_code >= 500:
                failures.append(f"POST {path} ({content_type}, {sum(map(len, chunks)) * repeat} B) -> {r.status_code}")

        @given(
            rate=st.integers(0, 2**32 - 1),
            channels=st.integers(0, 2**16 - 1),
            bits=st.sampled_from([0, 8, 16, 24, 32, 64]),
            declared=st.integers(0, 2**32 - 1),
            payload=st.binary(max_size=4096),
        )
        @hsettings(
            max_examples=80, deadline=None, derandomize=True, database=None, suppress_health_check=list(HealthCheck)
        )
        def hostile_audio(rate: int, channels: int, bits: int, declared: int, payload: bytes) -> None:
            if time.monotonic() > deadline:
                return
            data = _wav(rate, channels, bits, declared, payload)
            started = time.monotonic()
            r = http.post(
                "/v1/music/generate",
                data={"prompt": "x", "task_type": "cover"},
                files={"src_audio": ("x.wav", data, "audio/wav")},
                headers=auth,
            )
            took = time.monotonic() - started
            if r.status_code >= 500 or took > 5:
                failures.append(
                    f"WAV rate={rate} ch={channels} bits={bits} declared={declared} -> {r.status_code} in {took:.1f} s"
                )
            elif r.status_code >= 400:
                assert r.json()["error"].get("field") == "src_audio", r.text

        streamed()
        hostile_audio()
        assert http.get("/health").status_code == 200
    assert not failures, "\n".join(failures[:10])
