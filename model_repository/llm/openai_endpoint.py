"""A lyricist backend that streams from an OpenAI-compatible ``/v1/chat/completions`` endpoint (vLLM, SGLang, a
hosted API ...).

Requests use ``stream: true`` and, for the song plan, ``response_format: {"type": "json_schema", ...}`` with the plan's
schema (servers that do structured output honour it; the result is validated and normalised either way). Each attempt
has a connect/read timeout; an attempt that fails before any text arrived (connection refused, timeout, HTTP 429 or
5xx) is retried with a growing pause, up to ``retries`` more times. A failure after text has been streamed is not
retried: the caller already showed that text.
"""

from __future__ import annotations

import json
import logging
import threading
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

import httpx

from model_repository.llm.requests import Sampling

logger = logging.getLogger(__name__)

_RETRY_STATUS = frozenset({408, 409, 429, 500, 502, 503, 504})


class EndpointError(RuntimeError):
    """The endpoint failed in a way retries did not fix; the message names the URL and what happened."""


@dataclass
class EndpointConfig:
    base_url: str  # e.g. http://127.0.0.1:8000/v1 (".../chat/completions" is appended)
    model: str = "default"
    api_key: str | None = None
    timeout_s: float = 60.0
    connect_timeout_s: float = 5.0
    retries: int = 2
    backoff_s: float = 0.5

    @property
    def url(self) -> str:
        base = self.base_url.rstrip("/")
        return base if base.endswith("/chat/completions") else f"{base}/chat/completions"


@dataclass
class EndpointStream:
    """Text deltas of one chat completion; ``usage`` and ``attempts`` are filled as it runs."""

    deltas: Iterator[str]
    usage: dict[str, int] = field(default_factory=dict)
    attempts: int = 0

    def __iter__(self) -> Iterator[str]:
        return self.deltas


class OpenAIEndpoint:
    def __init__(self, config: EndpointConfig) -> None:
        self.config = config
        headers = {"Accept": "text/event-stream"}
        if config.api_key:
            headers["Authorization"] = f"Bearer {config.api_key}"
        self._client = httpx.Client(
            headers=headers,
            timeout=httpx.Timeout(config.timeout_s, connect=config.connect_timeout_s),
        )

    def close(self) -> None:
        self._client.close()

    def stream_chat(
        self,
        messages: Sequence[dict[str, str]],
        *,
        sampling: Sampling,
        max_new_tokens: int,
        json_schema: dict[str, Any] | None = None,
        cancelled: threading.Event | None = None,
    ) -> EndpointStream:
        body: dict[str, Any] = {
            "model": self.config.model,
            "messages": list(messages),
            "stream": True,
            "stream_options": {"include_usage": True},
            "temperature": sampling.temperature,
            "top_p": sampling.top_p,
            "max_tokens": max_new_tokens,
        }
        if sampling.seed is not None:
            body["seed"] = sampling.seed
        if json_schema is not None:
            body["response_format"] = {
                "type": "json_schema",
                "json_schema": {"name": "song_plan", "schema": json_schema, "strict": True},
            }
        stream = EndpointStream(deltas=iter(()))
        stream.deltas = self._deltas(body, stream, cancelled)
        return stream

    def _deltas(self, body: dict[str, Any], stream: EndpointStream, cancelled: threading.Event | None) -> Iterator[str]:
        cfg = self.config
        last_error = ""
        for attempt in range(cfg.retries + 1):
            stream.attempts = attempt + 1
            if attempt:
                time.sleep(cfg.backoff_s * attempt)
            produced = False
            try:
                with self._client.stream("POST", cfg.url, json=body) as response:
                    if response.status_code != 200:
                        detail = response.read().decode("utf-8", "replace")[:300]
                        last_error = f"HTTP {response.status_code}: {detail}"
                        if response.status_code in _RETRY_STATUS:
                            logger.warning("lyricist endpoint %s attempt %d: %s", cfg.url, attempt + 1, last_error)
                            continue
                        raise EndpointError(f"lyricist endpoint {cfg.url} answered {last_error}")
                    for line in response.iter_lines():
                        if cancelled is not None and cancelled.is_set():
                            return
                        if not line.startswith("data:"):
                            continue
                        data = line[5:].strip()
                        if data == "[DONE]":
                            return
                        try:
                            chunk = json.loads(data)
                        except json.JSONDecodeError:
                            raise EndpointError(
                                f"lyricist endpoint {cfg.url} sent a malformed event: {data[:200]!r}"
                            ) from None
                        if chunk.get("usage"):
                            stream.usage = {
                                "prompt_tokens": int(chunk["usage"].get("prompt_tokens", 0)),
                                "completion_tokens": int(chunk["usage"].get("completion_tokens", 0)),
                            }
                        for choice in chunk.get("choices") or []:
                            text = (choice.get("delta") or {}).get("content")
                            if text:
                                produced = True
                                yield text
                    return
            except httpx.TimeoutException as exc:
                last_error = f"timed out after {cfg.timeout_s:g} s ({type(exc).__name__})"
            except httpx.TransportError as exc:
                last_error = f"connection failed ({type(exc).__name__}: {exc})"
            if produced:
                raise EndpointError(f"lyricist endpoint {cfg.url} failed mid-stream: {last_error}")
            logger.warning("lyricist endpoint %s attempt %d: %s", cfg.url, attempt + 1, last_error)
        raise EndpointError(
            f"lyricist endpoint {cfg.url} failed after {cfg.retries + 1} attempts: {last_error}. "
            "Check that the server is up, or raise endpoint_timeout_s / endpoint_retries"
        )
