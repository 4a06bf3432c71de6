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


@pytest.mark.slow
def test_openapi_schema_fuzz_has_no_server_errors(tmp_path) -> None:
    from hypothesis import HealthCheck, given
    from hypothesis import settings as hsettings

    settings = make_settings(tmp_path, triton_concurrency=0, queue_max=1_000_000)
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
