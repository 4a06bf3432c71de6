"""Audio fetched from a client's URL (``POST /producer/upload``'s ``audio_url``) under the callbacks' address guard:
the host must resolve to public addresses only (``services/netguard.py``; ``TRITONE_ALLOW_PRIVATE_CALLBACKS`` lifts
it, as for callbacks), the connection goes to the address just validated (no second DNS answer), redirects are not
followed, and the body is read only up to a bound — declared or streamed past it is a 413. What comes back is bytes
for the upload path, which probes the header (``media/probe.py``) before any decode."""

from __future__ import annotations

import logging
from urllib.parse import urlsplit

import httpx

from orchestrator.errors import ApiError
from orchestrator.services.netguard import PINNED, pinned_client
from orchestrator.services.webhooks import CallbackRefusedError, WebhookSender

logger = logging.getLogger(__name__)


async def fetch_audio(
    webhooks: WebhookSender, url: str, *, max_bytes: int, timeout_s: float, field: str = "audio_url"
) -> bytes:
    """The body of ``GET url``; a 4xx naming ``field`` when the host is refused, the fetch fails or the body is too
    large."""
    try:
        addresses = await webhooks.check_url(url)
    except CallbackRefusedError as exc:
        raise ApiError(422, f"{field}: {exc}".replace("callbacks go", "fetches go"), field=field) from None
    host = (urlsplit(url).hostname or "").strip("[]")
    client, _ = pinned_client(timeout_s=timeout_s)
    token = PINNED.set({host: addresses[0]})
    try:
        async with client, client.stream("GET", url, headers={"User-Agent": "tritone-fetch/1"}) as response:
            if response.status_code != 200:
                raise ApiError(422, f"{field}: {url} answered HTTP {response.status_code}", field=field)
            declared = response.headers.get("content-length")
            if declared and declared.isdigit() and int(declared) > max_bytes:
                raise ApiError(
                    413, f"{field}: the file is {declared} bytes; at most {max_bytes} are fetched", field=field
                )
            data = bytearray()
            async for chunk in response.aiter_bytes():
                data.extend(chunk)
                if len(data) > max_bytes:
                    raise ApiError(413, f"{field}: the file is larger than {max_bytes} bytes", field=field)
    except httpx.HTTPError as exc:
        logger.info("fetch of %s failed: %s", url, exc)
        raise ApiError(422, f"{field}: could not fetch {url}: {type(exc).__name__}: {exc}", field=field) from None
    finally:
        PINNED.reset(token)
    return bytes(data)
