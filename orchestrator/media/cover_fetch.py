"""Covers from an external image API (``TRITONE_COVER_API_URL``): ``POST {prompt, aspect_ratio}``, answered with a
PNG/JPEG body or JSON naming one (URL or base64); stored as a PNG."""

from __future__ import annotations

import base64
import binascii
import io
import json
import logging
from pathlib import Path
from urllib.parse import urljoin

from PIL import Image

from orchestrator.media.audio import write_atomically
from orchestrator.media.cover_layout import COVER_ASPECTS

logger = logging.getLogger(__name__)

# Largest image accepted from an external API (a 2048² PNG is ~6-12 MB).
MAX_REMOTE_IMAGE_BYTES = 32 * 1024 * 1024
_PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
_JPEG_MAGIC = b"\xff\xd8\xff"


class CoverFetchError(RuntimeError):
    """The external cover API failed, timed out or returned something that is not a PNG/JPEG image."""


# -------------------------------------------------------------------------------------------- external image API
async def fetch_cover(
    *,
    url: str,
    prompt: str,
    aspect: str,
    path: Path,
    timeout_s: float,
    api_key: str | None = None,
) -> Path:
    """Ask an image API for a cover and store it as PNG at ``path`` (suffix forced to ``.png``).

    Sends ``POST url`` with JSON ``{"prompt", "aspect_ratio"}`` (and ``Authorization: Bearer`` when ``api_key`` is
    set). Accepts image bytes (PNG/JPEG), or JSON with ``b64_json`` or ``url`` — at the top level or in
    ``data[0]`` (OpenAI-style). The whole exchange, including a follow-up download, must finish within
    ``timeout_s``. Raises :class:`CoverFetchError` naming the problem, ValueError for a bad aspect.
    """
    import asyncio

    import httpx

    if aspect not in COVER_ASPECTS:
        raise ValueError(f"cover_size must be one of {', '.join(COVER_ASPECTS)}; got {aspect!r}")
    if timeout_s <= 0:
        raise ValueError(f"timeout_s must be > 0, got {timeout_s}")
    headers = {"Accept": "image/png, image/jpeg, application/json"}
    if api_key:
        headers["Authorization"] = f"Bearer {api_key}"

    async def exchange() -> bytes:
        async with httpx.AsyncClient(timeout=timeout_s, follow_redirects=True) as client:
            response = await client.post(url, json={"prompt": prompt, "aspect_ratio": aspect}, headers=headers)
            body = _checked_body(url, response)
            if body.startswith((_PNG_MAGIC, _JPEG_MAGIC)):
                return body
            image_url, b64 = _parse_image_json(url, response, body)
            if b64 is not None:
                return b64
            assert image_url is not None
            target = urljoin(url, image_url)
            download = await client.get(target, headers={"Accept": "image/png, image/jpeg"})
            return _checked_body(target, download)

    try:
        data = await asyncio.wait_for(exchange(), timeout=timeout_s)
    except (TimeoutError, httpx.TimeoutException) as exc:
        raise CoverFetchError(f"cover API {url} did not answer within {timeout_s:g} s") from exc
    except httpx.HTTPError as exc:
        raise CoverFetchError(f"cover API {url} could not be reached: {exc}") from exc

    if not data.startswith((_PNG_MAGIC, _JPEG_MAGIC)):
        raise CoverFetchError(f"cover API {url} returned {len(data)} bytes that are not a PNG or JPEG image")
    try:
        with Image.open(io.BytesIO(data)) as img:
            img.load()
            converted = img.convert("RGBA" if img.mode in ("RGBA", "LA", "P") else "RGB")
    except (OSError, ValueError, Image.DecompressionBombError) as exc:
        raise CoverFetchError(f"cover API {url} returned a broken image: {exc}") from exc
    buffer = io.BytesIO()
    converted.save(buffer, format="PNG")
    out = write_atomically(Path(path).with_suffix(".png"), buffer.getvalue())
    logger.info("cover from %s: %dx%d → %s", url, converted.width, converted.height, out)
    return out


def _checked_body(url: str, response) -> bytes:  # response: httpx.Response (imported lazily)
    if response.status_code >= 400:
        snippet = response.text[:200].strip() if response.content else ""
        raise CoverFetchError(f"cover API {url} answered HTTP {response.status_code}: {snippet or 'no body'}")
    body = bytes(response.content)
    if len(body) > MAX_REMOTE_IMAGE_BYTES:
        raise CoverFetchError(f"cover API {url} returned {len(body)} bytes; the limit is {MAX_REMOTE_IMAGE_BYTES}")
    if not body:
        raise CoverFetchError(f"cover API {url} returned an empty body")
    return body


def _parse_image_json(url: str, response, body: bytes) -> tuple[str | None, bytes | None]:
    try:
        payload = json.loads(body)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        kind = response.headers.get("content-type", "unknown content type")
        raise CoverFetchError(
            f"cover API {url} returned {kind} that is neither a PNG/JPEG image nor JSON with 'b64_json' or 'url'"
        ) from exc
    entry = payload
    if isinstance(payload, dict) and isinstance(payload.get("data"), list) and payload["data"]:
        entry = payload["data"][0]
    if not isinstance(entry, dict):
        raise CoverFetchError(f"cover API {url} returned JSON without 'b64_json' or 'url'")
    if isinstance(entry.get("b64_json"), str):
        try:
            return None, base64.b64decode(entry["b64_json"], validate=True)
        except (binascii.Error, ValueError) as exc:
            raise CoverFetchError(f"cover API {url} returned 'b64_json' that is not valid base64") from exc
    if isinstance(entry.get("url"), str) and entry["url"]:
        return entry["url"], None
    raise CoverFetchError(f"cover API {url} returned JSON without 'b64_json' or 'url' (keys: {sorted(entry)})")
