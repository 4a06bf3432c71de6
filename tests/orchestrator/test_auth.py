"""Auth: bearer tokens that expire, API keys, per-user isolation, signed file links that expire."""

from __future__ import annotations

import time

import jwt

from orchestrator.services.auth import hash_password, verify_password
from tests.orchestrator.doubles import StageRunnerDouble
from tests.orchestrator.support import create_song, login, make_settings, running_app, wait_song


def test_password_hashes() -> None:
    hashed = hash_password("s3cret", iterations=1000)
    assert hashed.startswith("pbkdf2_sha256$1000$") and verify_password("s3cret", hashed)
    assert not verify_password("S3cret", hashed) and not verify_password("s3cret", "garbage")
    assert hash_password("s3cret", iterations=1000) != hashed  # salted


async def test_auth_required_and_login(tmp_path) -> None:
    async with running_app(make_settings(tmp_path), StageRunnerDouble()) as (_, client):
        for method, url in (
            ("POST", "/v1/song/create"),
            ("GET", "/v1/song/status?intent_id=x"),
            ("POST", "/v1/music/generate"),
            ("GET", "/v1/stats"),
            ("GET", "/v1/models"),
            ("GET", "/v1/jobs/x"),
            ("POST", "/query_result"),
            ("GET", "/v1/song/events?intent_id=x"),
        ):
            r = await client.request(method, url, json={"theme": "x"})
            assert r.status_code == 401, (url, r.text)
            assert r.json()["code"] == 401 and "POST /auth/login" in r.json()["error"]["message"]
        assert (await client.get("/health")).status_code == 200
        assert (await client.get("/openapi.json")).status_code == 200
        assert (await client.get("/docs")).status_code == 200
        r = await client.post("/auth/login", json={"username": "alice", "password": "wrong"})
        assert r.status_code == 401
        r = await client.post("/auth/login", json={"username": "nobody", "password": "x"})
        assert r.status_code == 401
        r = await client.post("/auth/login", json={"username": "alice", "password": "alice-pw"})
        token = r.json()
        assert token["token_type"] == "bearer" and token["expires_in"] == 3600
        ok = await client.get("/v1/stats", headers={"Authorization": f"Bearer {token['access_token']}"})
        assert ok.status_code == 200
        # API key as the alternative
        assert (await client.get("/v1/stats", headers={"X-API-Key": "key-carol-123"})).status_code == 200
        assert (await client.get("/v1/stats", headers={"X-API-Key": "key-wrong"})).status_code == 401
        # tampered and expired tokens
        bad = token["access_token"][:-2] + ("AA" if not token["access_token"].endswith("AA") else "BB")
        assert (await client.get("/v1/stats", headers={"Authorization": f"Bearer {bad}"})).status_code == 401
        secret = "test-secret-" + "x" * 32
        expired = jwt.encode({"sub": "alice", "iat": int(time.time()) - 10, "exp": int(time.time()) - 1}, secret)
        r = await client.get("/v1/stats", headers={"Authorization": f"Bearer {expired}"})
        assert r.status_code == 401 and "expired" in r.json()["error"]["message"]


async def test_tokens_expire_after_ttl(tmp_path) -> None:
    # Token expiry has whole-second resolution: a 3 s TTL is valid for at least 2 s after login, expired after 3.2 s.
    async with running_app(make_settings(tmp_path, token_ttl_s=3), StageRunnerDouble()) as (_, client):
        headers = await login(client)
        assert (await client.get("/v1/stats", headers=headers)).status_code == 200
        time.sleep(3.2)
        assert (await client.get("/v1/stats", headers=headers)).status_code == 401


async def test_users_see_only_their_jobs_and_files(tmp_path) -> None:
    settings = make_settings(tmp_path, signed_url_ttl_s=2)
    async with running_app(settings, StageRunnerDouble()) as (_, client):
        alice, bob = await login(client, "alice"), await login(client, "bob")
        intent = await create_song(client, alice, "mine")
        done = await wait_song(client, alice, intent, ("succeeded",))
        # bob cannot see alice's song, its events, or cancel it
        for r in (
            await client.get("/v1/song/status", params={"intent_id": intent}, headers=bob),
            await client.get(f"/v1/jobs/{intent}", headers=bob),
            await client.get("/v1/song/events", params={"intent_id": intent}, headers=bob),
            await client.post("/v1/song/cancel", json={"intent_id": intent}, headers=bob),
        ):
            assert r.status_code == 404, r.text
        listing = await client.post("/query_result", json={"task_id_list": [intent]}, headers=bob)
        # someone else's id reads like an unknown one (upstream's answer: status 0, no files)
        assert listing.json()["data"] == [
            {"task_id": intent, "status": 0, "result": "[]", "progress_text": "", "error": None}
        ]
        # files: by signed link, or by the owner's credentials; never by someone else's
        url = done["items"][0]["audio_url"]
        assert (await client.get(url)).status_code == 200
        bare = url.split("?")[0]
        assert (await client.get(bare)).status_code == 401
        assert (await client.get(bare, headers=bob)).status_code == 404
        assert (await client.get(bare, headers=alice)).status_code == 200
        # the bearer token never works in a URL; a short-lived files token for this job does
        token = alice["Authorization"].split()[1]
        assert (await client.get(bare, params={"access_token": token})).status_code == 401
        minted = await client.post("/auth/url-token", json={"job_id": intent, "purpose": "files"}, headers=alice)
        assert minted.status_code == 200, minted.text
        files_token = minted.json()["access_token"]
        assert (await client.get(bare, params={"access_token": files_token})).status_code == 200
        events_token = (
            await client.post("/auth/url-token", json={"job_id": intent, "purpose": "events"}, headers=alice)
        ).json()["access_token"]
        wrong = await client.get(bare, params={"access_token": events_token})  # another purpose
        assert wrong.status_code == 403 and wrong.json()["error"]["field"] == "access_token"
        stolen = await client.post("/auth/url-token", json={"job_id": intent, "purpose": "files"}, headers=bob)
        assert stolen.status_code == 404  # bob cannot mint a token for alice's job
        tampered = url.replace("item_0", "item_1")
        assert (await client.get(tampered)).status_code in (403, 404)
        traversal = await client.get(f"/v1/audio?path={intent}/../../tritone.db", headers=alice)
        assert traversal.status_code == 404
        time.sleep(3.1)  # the signed link's ttl is 2 s
        expired = await client.get(url)
        assert expired.status_code == 403 and "expired" in expired.json()["error"]["message"]
