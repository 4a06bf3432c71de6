"""The gateway to Triton: a list of servers, health checks, failover, and streaming calls to the decoupled models.

Every Tritone model (``lyricist``, ``lm``, ``sampler``, ``separator``) takes one ``request`` string tensor holding a
JSON object and streams ``event`` string tensors, one JSON object per response; the sampler's final response also
carries ``audio``, and so does each of the separator's ``stem`` responses (tensors come with any event).
:meth:`TritonGateway.stream` yields those events as :class:`ModelEvent`.

Failover: a stream that breaks at the transport level (server killed, connection refused, model unloaded) is retried
from the start on another healthy server, at most ``triton_max_attempts`` servers per call. Stages are idempotent, so
a restart is safe; a ``{"type": "retry"}`` event tells the caller it happened. A model's own error (a bad field) is
final and raised as :class:`ModelError`.

Health: every server is probed each ``triton_health_interval_s`` (every 0.5 s while none is healthy);
:meth:`TritonGateway.serving` says whether any is healthy and :meth:`TritonGateway.wait_serving` waits for one, so
the workers stop claiming and the running stages wait out an outage (``services/availability.py``). The gRPC channel
reconnects within ~2 s of a server coming back (its default backoff grows to two minutes).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time
from collections.abc import AsyncGenerator, AsyncIterator, Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol

import numpy as np

from orchestrator.services import metrics
from orchestrator.settings import Settings

logger = logging.getLogger(__name__)

# Final event types per model: once one arrives, the call is complete.
TERMINAL_EVENT_TYPES = frozenset({"plan", "result", "done"})
# Substrings of Triton error messages that mean "this server cannot serve the model now": try another one.
_RETRYABLE_MODEL_ERRORS = ("is not ready", "unknown model", "is not found", "not available", "unavailable")
# Health probes while no server is healthy: often, so that work resumes soon after a server returns.
_OUTAGE_PROBE_S = 0.5
# gRPC reconnect backoff (ms): the library default grows to 120 s, far longer than a typical Triton restart.
_RECONNECT_BACKOFF_MS = (250, 2000)
_GRPC_RESTRICTED_PREFIX = "triton-grpc-protocol-"


class ModelError(Exception):
    """The model rejected the request or failed on it (not a transport problem): retrying elsewhere will not help."""

    def __init__(self, model: str, message: str, server: str | None = None) -> None:
        super().__init__(message)
        self.model = model
        self.message = message
        self.server = server


class TritonUnavailableError(Exception):
    """No server could run the call (all unhealthy, or every attempt broke)."""


@dataclass
class ModelEvent:
    data: dict[str, Any]
    tensors: dict[str, np.ndarray] = field(default_factory=dict)
    server: str | None = None

    @property
    def type(self) -> str:
        return str(self.data.get("type", ""))


@dataclass
class ServerHealth:
    url: str
    healthy: bool
    in_flight: int
    last_error: str | None
    checked_at: float | None


class StageGateway(Protocol):
    """What the job service needs from Triton. :class:`TritonGateway` is the real one; tests may pass an in-process
    stage runner with the same methods."""

    async def start(self) -> None: ...

    async def close(self) -> None: ...

    def stream(
        self, model: str, request: Mapping[str, Any], *, tensors: Mapping[str, np.ndarray] | None = None
    ) -> AsyncGenerator[ModelEvent, None]: ...

    async def health(self) -> list[ServerHealth]: ...

    async def models(self) -> list[dict[str, Any]]: ...


@dataclass
class _Server:
    url: str
    client: Any = None  # tritonclient.grpc.aio.InferenceServerClient
    healthy: bool = True
    in_flight: int = 0
    last_error: str | None = None
    checked_at: float | None = None


class TritonGateway:
    def __init__(self, settings: Settings) -> None:
        if not settings.triton_urls:
            raise ValueError("triton_urls is empty: set TRITONE_TRITON_URLS to a JSON list of host:port gRPC URLs")
        self._settings = settings
        self._servers = [_Server(url=url) for url in settings.triton_urls]
        self._health_task: asyncio.Task[None] | None = None
        self._rr = 0
        self._serving_event: asyncio.Event | None = None
        self._repository_headers = restricted_headers(settings.triton_restricted_key)

    def serving(self) -> bool:
        """True while at least one server is healthy (what workers check before claiming a job)."""
        return any(s.healthy and s.client is not None for s in self._servers)

    async def wait_serving(self, timeout: float) -> bool:
        """Wait up to ``timeout`` seconds for a healthy server; True when there is one."""
        if self.serving() or self._serving_event is None:
            return self.serving()
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(max(0.0, timeout)):
                await self._serving_event.wait()
        return self.serving()

    def _note_health(self) -> None:
        serving = self.serving()
        metrics.TRITON_SERVING.set(1 if serving else 0)
        for server in self._servers:
            metrics.TRITON_HEALTHY.labels(server=server.url).set(1 if server.healthy else 0)
        if self._serving_event is not None:
            if serving:
                self._serving_event.set()
            else:
                self._serving_event.clear()

    async def start(self) -> None:
        import tritonclient.grpc.aio as grpcclient
        from tritonclient.grpc import KeepAliveOptions

        keepalive = KeepAliveOptions()
        channel_args = [
            ("grpc.max_send_message_length", grpcclient.MAX_GRPC_MESSAGE_SIZE),
            ("grpc.max_receive_message_length", grpcclient.MAX_GRPC_MESSAGE_SIZE),
            ("grpc.keepalive_time_ms", keepalive.keepalive_time_ms),
            ("grpc.keepalive_timeout_ms", keepalive.keepalive_timeout_ms),
            ("grpc.keepalive_permit_without_calls", keepalive.keepalive_permit_without_calls),
            ("grpc.http2.max_pings_without_data", keepalive.http2_max_pings_without_data),
            ("grpc.initial_reconnect_backoff_ms", _RECONNECT_BACKOFF_MS[0]),
            ("grpc.min_reconnect_backoff_ms", _RECONNECT_BACKOFF_MS[0]),
            ("grpc.max_reconnect_backoff_ms", _RECONNECT_BACKOFF_MS[1]),
        ]
        self._serving_event = asyncio.Event()
        for server in self._servers:
            server.client = grpcclient.InferenceServerClient(url=server.url, channel_args=channel_args)
        await self.check_health()
        self._health_task = asyncio.create_task(self._health_loop(), name="triton-health")

    async def close(self) -> None:
        if self._health_task is not None:
            self._health_task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._health_task
            self._health_task = None
        for server in self._servers:
            if server.client is not None:
                with contextlib.suppress(Exception):
                    await server.client.close()
                server.client = None

    # --- health ----------------------------------------------------------------------------------------------------
    async def _check_one(self, server: _Server) -> None:
        try:
            ready = bool(await server.client.is_server_ready(client_timeout=2.0))
            error = None if ready else "server is not ready"
        except Exception as exc:  # any transport failure means unhealthy
            ready, error = False, _short(exc)
        if ready != server.healthy:
            logger.warning(
                "triton %s is now %s%s", server.url, "healthy" if ready else "unhealthy", f" ({error})" if error else ""
            )
        server.healthy, server.last_error, server.checked_at = ready, error, time.time()

    async def check_health(self) -> None:
        await asyncio.gather(*(self._check_one(s) for s in self._servers if s.client is not None))
        self._note_health()

    async def _health_loop(self) -> None:
        while True:
            interval = self._settings.triton_health_interval_s
            await asyncio.sleep(interval if self.serving() else min(interval, _OUTAGE_PROBE_S))
            try:
                await self.check_health()
            except Exception:  # keep checking whatever happens
                logger.exception("triton health check failed")

    async def health(self) -> list[ServerHealth]:
        return [ServerHealth(s.url, s.healthy, s.in_flight, s.last_error, s.checked_at) for s in self._servers]

    async def models(self) -> list[dict[str, Any]]:
        """The repository index of the first healthy server: name, version, state per model."""
        for server in self._pick_order(set()):
            try:
                index = await server.client.get_model_repository_index(
                    headers=self._repository_headers, as_json=True, client_timeout=5.0
                )
            except Exception as exc:
                logger.warning("triton %s: repository index failed: %s", server.url, _short(exc))
                continue
            return [
                {
                    "name": m.get("name"),
                    "version": m.get("version", ""),
                    "state": m.get("state", ""),
                    "reason": m.get("reason", ""),
                    "server": server.url,
                }
                for m in index.get("models", [])
            ]
        return []

    # --- calls -----------------------------------------------------------------------------------------------------
    def _pick_order(self, tried: set[str]) -> list[_Server]:
        """Healthy untried servers by load (round-robin among equals), then unhealthy untried ones as a last resort."""
        self._rr += 1
        candidates = [s for s in self._servers if s.url not in tried and s.client is not None]
        n = len(self._servers)
        rotated = sorted(
            candidates, key=lambda s: (not s.healthy, s.in_flight, (self._servers.index(s) - self._rr) % n)
        )
        return rotated

    async def stream(
        self, model: str, request: Mapping[str, Any], *, tensors: Mapping[str, np.ndarray] | None = None
    ) -> AsyncGenerator[ModelEvent, None]:
        tried: set[str] = set()
        last_error = "no Triton server configured"
        for attempt in range(self._settings.triton_max_attempts):
            order = self._pick_order(tried)
            if not order:
                break
            server = order[0]
            tried.add(server.url)
            if attempt > 0:
                metrics.TRITON_FAILOVERS.labels(model=model).inc()
                yield ModelEvent({"type": "retry", "server": server.url, "attempt": attempt + 1, "reason": last_error})
            server.in_flight += 1
            completed = False
            outcome = "incomplete"
            try:
                async with contextlib.aclosing(self._stream_once(server, model, request, tensors)) as events:
                    async for event in events:
                        yield event
                        if event.type in TERMINAL_EVENT_TYPES:
                            completed = True
                            break
                if completed:
                    outcome = "ok"
                    return
                last_error = f"{server.url}: the stream ended without a final event"
                logger.warning("triton %s: %s stream ended early", server.url, model)
            except ModelError as exc:
                outcome = "model_error"
                if not any(s in exc.message.lower() for s in _RETRYABLE_MODEL_ERRORS):
                    raise
                outcome = "unavailable"
                last_error = f"{server.url}: {exc.message}"
                logger.warning("triton %s cannot serve %s: %s", server.url, model, exc.message)
            except _TransportError as exc:
                outcome = "transport_error"
                last_error = f"{server.url}: {exc}"
                server.healthy, server.last_error = False, str(exc)
                self._note_health()
                logger.warning("triton %s failed during %s (%s); trying another server", server.url, model, exc)
            finally:
                server.in_flight -= 1
                metrics.TRITON_CALLS.labels(model=model, server=server.url, outcome=outcome).inc()
        raise TritonUnavailableError(
            f"{model}: no Triton server could run the request after {len(tried)} attempt(s); last error: {last_error}"
        )

    async def _stream_once(
        self, server: _Server, model: str, request: Mapping[str, Any], tensors: Mapping[str, np.ndarray] | None
    ) -> AsyncGenerator[ModelEvent, None]:
        import grpc
        import tritonclient.grpc.aio as grpcclient
        from tritonclient.utils import InferenceServerException

        payload = np.array([json.dumps(dict(request), ensure_ascii=False).encode()], dtype=np.object_)
        inputs = [grpcclient.InferInput("request", [1], "BYTES")]
        inputs[0].set_data_from_numpy(payload)
        for name, array in (tensors or {}).items():
            array = np.ascontiguousarray(array, dtype=np.float32)
            tensor = grpcclient.InferInput(name, list(array.shape), "FP32")
            tensor.set_data_from_numpy(array)
            inputs.append(tensor)
        finished = asyncio.Event()

        async def requests() -> AsyncIterator[dict[str, Any]]:
            yield {"model_name": model, "inputs": inputs}
            # Keep our side of the stream open until the model's last response: a half-closed stream may be torn
            # down before a decoupled model has answered.
            await finished.wait()

        responses = server.client.stream_infer(requests())
        try:
            async for result, error in responses:
                if error is not None:
                    raise ModelError(model, _message(error), server.url)
                raw = result.as_numpy("event")
                if raw is None:
                    continue
                for item in np.asarray(raw).reshape(-1):
                    text = item.decode() if isinstance(item, bytes) else str(item)
                    data = json.loads(text)
                    out: dict[str, np.ndarray] = {}
                    for output in result.get_response().outputs:  # the final audio; the separator's stem by stem
                        if output.name != "event":
                            out[output.name] = result.as_numpy(output.name)
                    yield ModelEvent(data, out, server.url)
        except grpc.aio.AioRpcError as exc:
            raise _TransportError(f"{exc.code().name}: {exc.details()}") from None
        except InferenceServerException as exc:
            raise _TransportError(_message(exc)) from None
        except (ConnectionError, OSError) as exc:
            raise _TransportError(_short(exc)) from None
        finally:
            finished.set()
            with contextlib.suppress(Exception):
                responses.cancel()


class _TransportError(Exception):
    pass


def restricted_headers(key: str | None) -> dict[str, str] | None:
    """``name=value`` (Triton's ``--grpc-restricted-protocol=model-repository:<name>=<value>``) as gRPC call metadata:
    Triton expects it as ``triton-grpc-protocol-<name>`` (over HTTP, ``--http-restricted-api``, as ``<name>``)."""
    if not key:
        return None
    name, sep, value = key.partition("=")
    if not sep or not name.strip() or not value:
        raise ValueError(
            f"TRITONE_TRITON_RESTRICTED_KEY={key.split('=')[0]!r}=…: expected NAME=VALUE, the header Triton's "
            "--grpc-restricted-protocol option names (e.g. tritone-admin=<secret>)"
        )
    return {f"{_GRPC_RESTRICTED_PREFIX}{name.strip().lower()}": value}


def _message(exc: BaseException) -> str:
    msg = getattr(exc, "message", None)
    text = msg() if callable(msg) else str(exc)
    return str(text or exc).strip()


def _short(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {text[0] if text else ''}"[:300]
