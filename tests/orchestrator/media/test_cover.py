"""render_cover: sizes per aspect, determinism per seed, audio visibly shapes the picture; fetch_cover against a
real local HTTP server (image bytes, b64 JSON, URL JSON, errors, timeouts)."""

from __future__ import annotations

import base64
import io
import json
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from orchestrator.media import COVER_ASPECTS, CoverFetchError, cover_size, fetch_cover, render_cover

SR = 48_000


def _audio(seed: int, seconds: float = 4.0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    t = np.arange(int(seconds * SR)) / SR
    swell = np.abs(np.sin(2 * np.pi * rng.uniform(0.1, 0.6) * t))
    tone = np.sin(2 * np.pi * rng.uniform(100, 2000) * t)
    return np.stack([tone * swell, tone * swell * 0.8]).astype(np.float32)


def _render(tmp: Path, name: str, **kw) -> bytes:
    args = {
        "title": "周末骑单车去看海",
        "caption": "sunny pop, sea breeze",
        "audio": None,
        "sample_rate": SR,
        "aspect": "1:1",
        "seed": 0,
    }
    args.update(kw)
    return render_cover(path=tmp / name, **args).read_bytes()


@pytest.mark.parametrize("aspect", COVER_ASPECTS)
def test_size_per_aspect(tmp_path: Path, aspect: str) -> None:
    out = render_cover(
        title="Song", caption="calm", audio=_audio(1), sample_rate=SR, aspect=aspect, path=tmp_path / "cover.jpg"
    )
    assert out.suffix == ".png"
    with Image.open(out) as img:
        assert img.format == "PNG"
        assert img.size == cover_size(aspect)
        w, h = img.size
        assert max(w, h) == 1024 and abs(w / h - eval(aspect.replace(":", "/"))) < 0.01
        # Not a flat fill: a cover has structure.
        assert np.asarray(img.convert("L")).std() > 20


def test_unknown_aspect_names_allowed_values(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match=r"cover_size must be one of 1:1, 3:4, 4:3, 9:16, 16:9; got '2:1'"):
        render_cover(title="x", caption="", audio=None, sample_rate=SR, aspect="2:1", path=tmp_path / "c")


def test_deterministic_per_seed_and_inputs(tmp_path: Path) -> None:
    audio = _audio(3)
    a = _render(tmp_path, "a", audio=audio, seed=7)
    b = _render(tmp_path, "b", audio=audio, seed=7)
    c = _render(tmp_path, "c", audio=audio, seed=8)
    assert a == b
    assert a != c


def test_audio_and_caption_change_the_image(tmp_path: Path) -> None:
    def pixels(data: bytes) -> np.ndarray:
        return np.asarray(Image.open(io.BytesIO(data)).convert("RGB"), dtype=np.int16)

    one = pixels(_render(tmp_path, "1", audio=_audio(1)))
    two = pixels(_render(tmp_path, "2", audio=_audio(2)))
    # Same seed/title/caption → same background; the differences are the audio-drawn ring and grooves.
    changed = np.abs(one - two).max(axis=2) > 30
    assert changed.mean() > 0.01
    warm = pixels(_render(tmp_path, "w", caption="sunny summer pop"))
    cold = pixels(_render(tmp_path, "c", caption="sad rainy night"))
    # The palette follows mood words: the sunny cover's corners are redder than the sad one's.
    assert warm[:64, :64, 0].mean() - warm[:64, :64, 2].mean() > cold[:64, :64, 0].mean() - cold[:64, :64, 2].mean()


def _png(colour: tuple[int, int, int] = (200, 30, 60)) -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", (64, 48), colour).save(buffer, format="PNG")
    return buffer.getvalue()


def _jpeg() -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", (40, 40), (10, 120, 240)).save(buffer, format="JPEG")
    return buffer.getvalue()


class _ImageApi(BaseHTTPRequestHandler):
    seen: list[dict] = []

    def log_message(self, *args: object) -> None:  # keep pytest output clean
        pass

    def _send(self, status: int, body: bytes, kind: str) -> None:
        self.send_response(status)
        self.send_header("Content-Type", kind)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def do_POST(self) -> None:
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        body["auth"] = self.headers.get("Authorization")
        _ImageApi.seen.append(body)
        if self.path == "/png":
            self._send(200, _png(), "image/png")
        elif self.path == "/b64":
            self._send(
                200,
                json.dumps({"data": [{"b64_json": base64.b64encode(_jpeg()).decode()}]}).encode(),
                "application/json",
            )
        elif self.path == "/url":
            self._send(200, json.dumps({"url": "/files/cover.jpg"}).encode(), "application/json")
        elif self.path == "/slow":
            time.sleep(1.5)
            self._send(200, _png(), "image/png")
        elif self.path == "/text":
            self._send(200, b"<html>hello</html>", "text/html")
        else:
            self._send(500, b"model overloaded", "text/plain")

    def do_GET(self) -> None:
        if self.path == "/files/cover.jpg":
            self._send(200, _jpeg(), "image/jpeg")
        else:
            self._send(404, b"", "text/plain")


@pytest.fixture
def image_api() -> Iterator[str]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), _ImageApi)  # port 0: the OS picks a free port
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    _ImageApi.seen.clear()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()
        thread.join(5)


async def test_fetch_png_bytes(image_api: str, tmp_path: Path) -> None:
    out = await fetch_cover(
        url=f"{image_api}/png",
        prompt="a bike by the sea",
        aspect="16:9",
        path=tmp_path / "c",
        timeout_s=5,
        api_key="k123",
    )
    assert out == tmp_path / "c.png"
    with Image.open(out) as img:
        assert img.format == "PNG" and img.size == (64, 48) and img.getpixel((0, 0)) == (200, 30, 60)
    assert _ImageApi.seen == [{"prompt": "a bike by the sea", "aspect_ratio": "16:9", "auth": "Bearer k123"}]


@pytest.mark.parametrize("route", ["/b64", "/url"])
async def test_fetch_json_answers_convert_jpeg_to_png(image_api: str, tmp_path: Path, route: str) -> None:
    out = await fetch_cover(url=image_api + route, prompt="p", aspect="1:1", path=tmp_path / "c.png", timeout_s=5)
    assert out.read_bytes().startswith(b"\x89PNG")
    with Image.open(out) as img:
        assert img.size == (40, 40)
        r, g, b = img.getpixel((20, 20))
        assert b > 200 and r < 40  # the JPEG's blue survived the conversion


@pytest.mark.parametrize(
    ("route", "timeout", "message"),
    [
        ("/slow", 0.5, "did not answer within 0.5 s"),
        ("/text", 5, "neither a PNG/JPEG image nor JSON"),
        ("/boom", 5, "HTTP 500: model overloaded"),
    ],
)
async def test_fetch_errors_are_clear(image_api: str, tmp_path: Path, route: str, timeout: float, message: str) -> None:
    with pytest.raises(CoverFetchError, match=message):
        await fetch_cover(url=image_api + route, prompt="p", aspect="1:1", path=tmp_path / "c", timeout_s=timeout)
    assert not list(tmp_path.iterdir())


async def test_fetch_unreachable_and_bad_aspect(tmp_path: Path) -> None:
    import socket

    with socket.socket() as s:  # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    with pytest.raises(CoverFetchError, match="could not be reached"):
        await fetch_cover(url=f"http://127.0.0.1:{port}/x", prompt="p", aspect="1:1", path=tmp_path / "c", timeout_s=2)
    with pytest.raises(ValueError, match="cover_size must be one of"):
        await fetch_cover(url="http://127.0.0.1:1/x", prompt="p", aspect="square", path=tmp_path / "c", timeout_s=2)
