"""Bounded everything (issue 14): streamed/chunked bodies counted as they arrive and refused with 413 before they are
buffered, audio headers checked before any decode, JSON depth bounded, a client's mistake always a 4xx naming the
field, security headers on the page, an anonymous /health that names no internal address."""

from __future__ import annotations

import io
import json
import struct
from typing import Any

import numpy as np
import pytest
import soundfile as sf

from orchestrator.app import create_app
from orchestrator.bodylimit import json_depth
from orchestrator.services import clips as clips_module  # where uploads are decoded
from tests.orchestrator.doubles import StageRunnerDouble
from tests.orchestrator.support import login, make_settings, post_cover, running_app

CHUNK = 64 * 1024


def _wav_header(rate: int, channels: int, data: bytes) -> bytes:
    block = channels * 2
    fmt = struct.pack("<IHHIIHH", 16, 1, channels, rate, rate * block, block, 16)
    return (
        b"RIFF" + struct.pack("<I", 36 + len(data)) + b"WAVEfmt " + fmt + b"data" + struct.pack("<I", len(data)) + data
    )


def _flac_declaring(frames: int) -> bytes:
    """A 0.1 s FLAC whose STREAMINFO claims ``frames`` samples (libsndfile believes the header)."""
    buffer = io.BytesIO()
    sf.write(buffer, np.zeros((4800, 2), dtype=np.float32), 48000, format="FLAC", subtype="PCM_16")
    data = bytearray(buffer.getvalue())
    start = 8 + 10  # "fLaC", the block header, then 10 bytes of block/frame sizes
    packed = int.from_bytes(data[start : start + 8], "big")  # 20 bits rate, 3 channels, 5 bps, 36 total samples
    packed = (packed & ~((1 << 36) - 1)) | frames
    data[start : start + 8] = packed.to_bytes(8, "big")
    return bytes(data)


async def _asgi_post(app: Any, path: str, *, content_type: str, chunks: int) -> tuple[int, int, dict[str, str]]:
    """POST an endless chunked body straight through ASGI; returns (status, chunks the app pulled, headers)."""
    pulled = 0
    sent: list[dict[str, Any]] = []

    preamble = (
        b'--x\r\nContent-Disposition: form-data; name="src_audio"; filename="a.wav"\r\nContent-Type: audio/wav\r\n\r\n'
        if content_type.startswith("multipart/")
        else b""
    )

    async def receive() -> dict[str, Any]:
        nonlocal pulled
        pulled += 1
        body = preamble + b"x" * (CHUNK - len(preamble)) if pulled == 1 else b"x" * CHUNK
        return {"type": "http.request", "body": body, "more_body": pulled < chunks}

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    scope = {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": "POST",
        "scheme": "http",
        "path": path,
        "raw_path": path.encode(),
        "query_string": b"",
        "root_path": "",
        "headers": [(b"content-type", content_type.encode()), (b"transfer-encoding", b"chunked")],
        "client": ("127.0.0.1", 1234),
        "server": ("tritone.test", 80),
        "state": {},
    }
    await app(scope, receive, send)
    start = next(m for m in sent if m["type"] == "http.response.start")
    headers = {k.decode(): v.decode() for k, v in start["headers"]}
    return start["status"], pulled, headers


async def test_chunked_bodies_are_counted_and_refused_before_buffering(tmp_path) -> None:
    settings = make_settings(tmp_path, json_body_max_bytes=256 * 1024, upload_max_bytes=1024 * 1024)
    app = create_app(settings, gateway=StageRunnerDouble())
    async with app.router.lifespan_context(app):
        # 1 GiB offered to /auth/login without a Content-Length: refused after ~256 KiB, the rest never read
        status, pulled, _ = await _asgi_post(app, "/auth/login", content_type="application/json", chunks=16384)
        assert status == 413
        assert pulled * CHUNK <= settings.json_body_max_bytes + CHUNK, f"{pulled} chunks were read"
        # multipart on an upload route gets the upload limit (two files + fields) — counted the same way
        status, pulled, _ = await _asgi_post(
            app, "/v1/music/generate", content_type="multipart/form-data; boundary=x", chunks=16384
        )
        assert status == 413 and pulled * CHUNK <= 2 * settings.upload_max_bytes + (1 << 20) + CHUNK
        # multipart elsewhere gets the small limit
        status, pulled, _ = await _asgi_post(
            app, "/v1/song/create", content_type="multipart/form-data; boundary=x", chunks=64
        )
        assert status == 413 and pulled * CHUNK <= settings.json_body_max_bytes + CHUNK


async def test_chunked_body_over_http_then_good_requests(tmp_path) -> None:
    """Through httpx (a generator body is sent chunked): 413 naming the body, then the server keeps serving."""
    settings = make_settings(tmp_path, json_body_max_bytes=64 * 1024)
    async with running_app(settings, StageRunnerDouble()) as (_, client):

        async def endless() -> Any:
            for _ in range(64):
                yield b"{" * 4096

        r = await client.post("/auth/login", content=endless(), headers={"Content-Type": "application/json"})
        assert r.status_code == 413 and r.json()["error"]["field"] == "body"
        assert "TRITONE_JSON_BODY_MAX_BYTES" in r.json()["error"]["message"]
        headers = await login(client)  # still serving
        assert (await client.get("/v1/stats", headers=headers)).status_code == 200


def test_json_depth_scanner_ignores_strings() -> None:
    assert json_depth(b'{"a": [1, {"b": "[[[[[["}]}') == 3
    assert json_depth(b"[" * 10_000 + b"]" * 10_000) == 10_000
    assert json_depth(b'"\\"[[["') == 0


async def test_deep_json_is_a_422_naming_the_body(tmp_path) -> None:
    async with running_app(make_settings(tmp_path), StageRunnerDouble()) as (_, client):
        headers = await login(client)
        deep = "[" * 50_000 + "]" * 50_000
        for path in ("/v1/song/create", "/auth/login", "/v1/music/generate", "/query_result"):
            r = await client.post(path, content=deep, headers={**headers, "Content-Type": "application/json"})
            assert r.status_code == 422, (path, r.status_code, r.text[:200])
            assert r.json()["error"]["field"] == "body" and "levels" in r.json()["error"]["message"]
        nested = json.dumps({"prompt": "x", "lyrics": "[" * 40})  # brackets inside a string are fine
        r = await client.post(
            "/v1/music/generate", content=nested, headers={**headers, "Content-Type": "application/json"}
        )
        assert r.status_code == 200, r.text
        # a form value that json-decodes deeply is refused too
        r = await client.post("/v1/music/generate", data={"prompt": "x", "audio_codes": "[" * 5000}, headers=headers)
        assert r.status_code == 422 and r.json()["error"]["field"] == "body"


@pytest.fixture
def no_decode(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """Fails the test if an upload reaches the decoder."""
    calls: list[int] = []

    def refuse(data: bytes, **_: Any) -> np.ndarray:
        calls.append(len(data))
        raise AssertionError("decode_audio ran on an upload that its header should have refused")

    monkeypatch.setattr(clips_module, "decode_audio", refuse)
    return calls


async def test_hostile_audio_headers_refused_before_decoding(tmp_path, no_decode) -> None:
    settings = make_settings(tmp_path, triton_concurrency=0, upload_max_bytes=20 * 1024 * 1024)
    long_rate = 8000
    cases = [
        (_wav_header(1, 2, b"\0" * 700), "sample_rate"),  # 744 bytes asking for a 48000x resample
        (_wav_header(400_000, 2, b"\0" * 700), "sample_rate"),
        (_wav_header(48_000, 12, b"\0" * 720), "channels"),
        (_wav_header(long_rate, 1, b"\0" * (long_rate * 2 * 601)), "duration"),  # 601 s
        (_flac_declaring(1 << 35), "frames"),  # ~120 bytes declaring 34 billion frames
        (_flac_declaring(48_000 * 601), "duration"),
    ]
    async with running_app(settings, StageRunnerDouble()) as (_, client):
        headers = await login(client)
        for data, field in cases:
            r = await post_cover(client, headers, data, "bomb.wav")
            assert 400 <= r.status_code < 500, (field, r.status_code, r.text)
            error = r.json()["error"]
            assert error["field"] == "src_audio" and field in error["message"], error
    assert no_decode == []


async def test_a_normal_upload_still_decodes(tmp_path) -> None:
    buffer = io.BytesIO()
    sf.write(buffer, np.zeros((44100, 1), dtype=np.float32), 44100, format="WAV", subtype="PCM_16")
    async with running_app(make_settings(tmp_path, triton_concurrency=0), StageRunnerDouble()) as (_, client):
        headers = await login(client)
        r = await post_cover(client, headers, buffer.getvalue(), "ok.wav")
        assert r.status_code == 200, r.text


async def test_non_ascii_signature_is_a_403(tmp_path) -> None:
    async with running_app(make_settings(tmp_path), StageRunnerDouble()) as (_, client):
        job = "0" * 8 + "-0000-0000-0000-" + "0" * 12
        for sig in ("é" * 10, "\u2603", "abc\udcff"[:3] + "ü"):
            r = await client.get(f"/v1/files/{job}/item_0.flac", params={"expires": 2**33, "sig": sig})
            assert r.status_code == 403, (sig, r.status_code, r.text)
            assert r.json()["error"]["field"] == "sig"


async def test_security_headers_and_minimal_anonymous_health(tmp_path) -> None:
    async with running_app(make_settings(tmp_path), StageRunnerDouble()) as (_, client):
        page = await client.get("/")
        assert page.status_code == 200
        csp = page.headers["content-security-policy"]
        assert "frame-ancestors 'none'" in csp and "script-src 'self'" in csp
        assert page.headers["x-content-type-options"] == "nosniff" and page.headers["x-frame-options"] == "DENY"
        api = await client.get("/health")
        assert api.headers["x-content-type-options"] == "nosniff"
        anonymous = api.json()["data"]
        assert set(anonymous) == {"status", "service", "version", "database", "triton"}
        assert all(set(s) == {"healthy"} for s in anonymous["triton"])
        headers = await login(client)
        full = (await client.get("/health", headers=headers)).json()["data"]
        assert "workers" in full and all("url" in s for s in full["triton"])
        bad = await client.get("/health", headers={"Authorization": "Bearer nonsense"})
        assert bad.status_code == 200 and "workers" not in bad.json()["data"]
