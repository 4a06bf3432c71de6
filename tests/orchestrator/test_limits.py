"""Auth and isolation (issue 14): constant-cost login, login throttling, per-user submission rate and queue cap
(429 + Retry-After while another user still gets in, before any upload is decoded), per-caller /v1/stats."""

from __future__ import annotations

import io
import statistics
import time
from typing import Any

import numpy as np
import pytest
import soundfile as sf

from orchestrator.services import clips as clips_module  # where uploads are decoded
from orchestrator.services import storage as storage_module
from orchestrator.services.auth import AuthService, hash_password
from tests.orchestrator.doubles import StageRunnerDouble
from tests.orchestrator.support import login, make_settings, post_cover, running_app

SONG = {"theme": "x", "duration": 10, "inference_steps": 1, "generate_cover": False}


def test_login_costs_the_same_for_unknown_users(tmp_path) -> None:
    """The dummy hash is as dear as the real ones: unknown/known within a generous 3x either way (measured ~1x)."""
    users = {"alice": hash_password("alice-pw", iterations=60_000)}
    auth = AuthService(make_settings(tmp_path, users=users))

    def timed(username: str) -> float:
        start = time.perf_counter()
        assert not auth.authenticate(username, "wrong-password")
        return time.perf_counter() - start

    known = statistics.median(timed("alice") for _ in range(5))
    unknown = statistics.median(timed("nobody-by-this-name") for _ in range(5))
    ratio = unknown / known
    assert 1 / 3 < ratio < 3, f"unknown user {unknown * 1e3:.1f} ms vs known {known * 1e3:.1f} ms (ratio {ratio:.2f})"


async def test_failed_logins_are_throttled(tmp_path) -> None:
    async with running_app(make_settings(tmp_path, login_rate="3/minute"), StageRunnerDouble()) as (_, client):
        for _ in range(3):
            r = await client.post("/auth/login", json={"username": "alice", "password": "nope"})
            assert r.status_code == 401
        r = await client.post("/auth/login", json={"username": "alice", "password": "alice-pw"})
        assert r.status_code == 429 and int(r.headers["Retry-After"]) >= 1  # even the right password now waits
        assert "TRITONE_LOGIN_RATE" in r.json()["error"]["message"] and r.json()["error"]["field"] == "username"
        # the address is throttled as well: another username from the same client is refused
        r = await client.post("/auth/login", json={"username": "bob", "password": "bob-pw"})
        assert r.status_code == 429


async def test_successful_logins_are_not_counted(tmp_path) -> None:
    async with running_app(make_settings(tmp_path, login_rate="2/minute"), StageRunnerDouble()) as (_, client):
        for _ in range(5):
            await login(client)


async def test_per_user_queue_cap_leaves_room_for_others(tmp_path) -> None:
    settings = make_settings(tmp_path, triton_concurrency=0, user_queue_max=2, queue_max=100)
    async with running_app(settings, StageRunnerDouble()) as (_, client):
        alice, bob = await login(client, "alice"), await login(client, "bob")
        for _ in range(2):
            assert (await client.post("/v1/song/create", json=SONG, headers=alice)).status_code == 200
        r = await client.post("/v1/song/create", json=SONG, headers=alice)
        assert r.status_code == 429 and int(r.headers["Retry-After"]) >= 1
        assert "TRITONE_USER_QUEUE_MAX" in r.json()["error"]["message"]
        r = await client.post("/v1/music/generate", json={"prompt": "x"}, headers=alice)  # the other API too
        assert r.status_code == 429
        assert (await client.post("/v1/song/create", json=SONG, headers=bob)).status_code == 200
        # stats per caller: alice sees her 2 jobs, bob his 1; an admin sees all 3
        alice_stats = (await client.get("/v1/stats", headers=alice)).json()["data"]
        bob_stats = (await client.get("/v1/stats", headers=bob)).json()["data"]
        assert alice_stats["scope"] == "user" and alice_stats["jobs"]["total"] == 2
        assert bob_stats["jobs"]["total"] == 1 and bob_stats["queue_size"] == 1


async def test_admin_sees_global_stats(tmp_path) -> None:
    settings = make_settings(tmp_path, triton_concurrency=0, admin_users=["carol"])
    async with running_app(settings, StageRunnerDouble()) as (_, client):
        alice = await login(client, "alice")
        await client.post("/v1/song/create", json=SONG, headers=alice)
        stats = (await client.get("/v1/stats", headers={"X-API-Key": "key-carol-123"})).json()["data"]
        assert stats["scope"] == "global" and stats["jobs"]["total"] == 1


async def test_submission_rate_per_user(tmp_path) -> None:
    settings = make_settings(tmp_path, triton_concurrency=0, submit_rate="2/minute")
    async with running_app(settings, StageRunnerDouble()) as (_, client):
        alice, bob = await login(client, "alice"), await login(client, "bob")
        for _ in range(2):
            assert (await client.post("/v1/song/create", json=SONG, headers=alice)).status_code == 200
        r = await client.post("/v1/song/create", json=SONG, headers=alice)
        assert r.status_code == 429 and "TRITONE_SUBMIT_RATE" in r.json()["error"]["message"]
        assert 1 <= int(r.headers["Retry-After"]) <= 60
        assert (await client.post("/v1/song/create", json=SONG, headers=bob)).status_code == 200


async def test_uploads_are_not_decoded_when_the_answer_is_429(tmp_path, monkeypatch: pytest.MonkeyPatch) -> None:
    decoded: list[int] = []
    real = clips_module.decode_audio

    def counting(data: bytes, **kwargs: Any) -> np.ndarray:
        decoded.append(len(data))
        return real(data, **kwargs)

    monkeypatch.setattr(clips_module, "decode_audio", counting)
    buffer = io.BytesIO()
    sf.write(buffer, np.zeros((48000, 2), dtype=np.float32), 48000, format="WAV", subtype="PCM_16")
    settings = make_settings(tmp_path, triton_concurrency=0, user_queue_max=1)
    async with running_app(settings, StageRunnerDouble()) as (_, client):
        alice = await login(client)

        async def upload() -> Any:
            return await post_cover(client, alice, buffer.getvalue())

        assert (await upload()).status_code == 200 and len(decoded) == 1
        r = await upload()
        assert r.status_code == 429 and len(decoded) == 1, "the refused upload was decoded"


async def test_storage_quota(tmp_path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(storage_module, "_QUOTA_CACHE_S", 0.0)  # usage is cached 30 s in production
    settings = make_settings(tmp_path, triton_concurrency=0, user_storage_max_bytes=1000)
    async with running_app(settings, StageRunnerDouble()) as (_, client):
        alice, bob = await login(client, "alice"), await login(client, "bob")
        r = await client.post("/v1/song/create", json=SONG, headers=alice)
        job_dir = settings.data_dir / "jobs" / r.json()["data"]["intent_id"]
        job_dir.mkdir(parents=True, exist_ok=True)
        (job_dir / "item_0.flac").write_bytes(b"\0" * 2000)
        r = await client.post("/v1/song/create", json=SONG, headers=alice)
        assert r.status_code == 429 and "TRITONE_USER_STORAGE_MAX_BYTES" in r.json()["error"]["message"]
        assert (await client.post("/v1/song/create", json=SONG, headers=bob)).status_code == 200


async def test_request_rate_per_user(tmp_path) -> None:
    settings = make_settings(tmp_path, triton_concurrency=0, request_rate="5/minute")
    async with running_app(settings, StageRunnerDouble()) as (_, client):
        alice, bob = await login(client, "alice"), await login(client, "bob")
        statuses = [(await client.get("/v1/stats", headers=alice)).status_code for _ in range(6)]
        assert statuses == [200] * 5 + [429]
        r = await client.get("/v1/stats", headers=alice)
        assert "TRITONE_REQUEST_RATE" in r.json()["error"]["message"] and int(r.headers["Retry-After"]) >= 1
        assert (await client.get("/v1/stats", headers=bob)).status_code == 200
        assert (await client.get("/v1/stats", headers={"X-API-Key": "key-carol-123"})).status_code == 200


def _redis_missing() -> str | None:
    try:
        import redis

        redis.Redis(host="127.0.0.1", port=6379, socket_connect_timeout=1).ping()
    except Exception as exc:  # no client library or no server
        return f"no Redis on 127.0.0.1:6379 ({type(exc).__name__}: {exc})"
    return None


@pytest.mark.skipif(_redis_missing() is not None, reason=str(_redis_missing()))
async def test_two_orchestrators_share_one_login_window_in_redis(tmp_path) -> None:
    """With rate_limit_storage on Redis, failed logins at one process count at the other too."""
    import redis

    user = f"carol-{time.time_ns()}"  # a fresh window: the server keeps keys across runs
    server = redis.Redis(host="127.0.0.1", port=6379)
    for key in server.scan_iter("tritone-limits*login*"):  # the client-address window of earlier runs, too
        server.delete(key)
    shared = {"login_rate": "2/minute", "rate_limit_storage": "redis://127.0.0.1:6379"}
    async with running_app(make_settings(tmp_path / "a", **shared), StageRunnerDouble()) as (_, first):
        async with running_app(make_settings(tmp_path / "b", **shared), StageRunnerDouble()) as (_, second):
            for client in (first, second):
                r = await client.post("/auth/login", json={"username": user, "password": "nope"})
                assert r.status_code == 401
            r = await first.post("/auth/login", json={"username": user, "password": "nope"})
            assert r.status_code == 429 and int(r.headers["Retry-After"]) >= 1


def test_rate_limit_storage_errors_name_the_setting(tmp_path) -> None:
    from orchestrator.services.limits import RateLimits

    with pytest.raises(ValueError, match="TRITONE_RATE_LIMIT_STORAGE='nosuch://x' cannot be used"):
        RateLimits(make_settings(tmp_path, rate_limit_storage="nosuch://x"))
