"""A small gRPC streaming client for the decoupled models in tests: send one request, collect its events."""

from __future__ import annotations

import json
import queue
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import tritonclient.grpc as grpcclient
from tritonclient.utils import InferenceServerException


@dataclass
class StreamResult:
    events: list[dict[str, Any]] = field(default_factory=list)
    outputs: dict[str, np.ndarray] = field(default_factory=dict)  # the last value of each output
    event_outputs: list[dict[str, np.ndarray]] = field(default_factory=list)  # the outputs that came with each event
    error: str | None = None

    @property
    def final(self) -> dict[str, Any]:
        return self.events[-1]


def stream(
    url: str,
    model: str,
    request: dict[str, Any],
    *,
    tensors: dict[str, np.ndarray] | None = None,
    outputs: tuple[str, ...] = ("audio",),
    timeout: float = 300.0,
) -> StreamResult:
    client = grpcclient.InferenceServerClient(url)
    responses: queue.Queue = queue.Queue()
    client.start_stream(callback=lambda result, error: responses.put((result, error)))
    try:
        req = grpcclient.InferInput("request", [1], "BYTES")
        req.set_data_from_numpy(np.array([json.dumps(request).encode()], dtype=np.object_))
        inputs = [req]
        for name, value in (tensors or {}).items():
            t = grpcclient.InferInput(name, list(value.shape), "FP32")
            t.set_data_from_numpy(value.astype(np.float32))
            inputs.append(t)
        client.async_stream_infer(model, inputs, enable_empty_final_response=True)
        out = StreamResult()
        while True:
            result, error = responses.get(timeout=timeout)
            if error is not None:
                out.error = error.message() if isinstance(error, InferenceServerException) else str(error)
                return out
            response = result.get_response()
            if (
                response.parameters.get("triton_final_response")
                and response.parameters["triton_final_response"].bool_param
                and not response.outputs
            ):
                return out
            came = {name: value for name in outputs if (value := result.as_numpy(name)) is not None}
            out.outputs.update(came)
            event_arr = result.as_numpy("event")
            if event_arr is not None:
                out.events.append(json.loads(event_arr.reshape(-1)[0]))
                out.event_outputs.append(came)
            if (
                response.parameters.get("triton_final_response")
                and response.parameters["triton_final_response"].bool_param
            ):
                return out
    finally:
        client.stop_stream()
        client.close()


def staggered_streams(url: str, requests: list[dict[str, Any]], *, stagger_s: float = 0.01) -> list[str | None]:
    """Each request streamed from ``sampler`` on its own thread, the i-th started ``i * stagger_s`` later (so the
    songs are at different steps when they meet); their errors, None for a song that succeeded."""

    def run(i: int) -> str | None:
        time.sleep(stagger_s * i)
        return stream(url, "sampler", requests[i]).error

    with ThreadPoolExecutor(len(requests)) as pool:
        return list(pool.map(run, range(len(requests))))


def batch_counts(triton: Any, model: str) -> tuple[int, int]:
    """(inferences, executions) Triton has counted for version 1 of ``model``: rows served and batched runs."""
    stats = triton.model_statistics(model, "1")["model_stats"][0]
    return int(stats["inference_count"]), int(stats["execution_count"])
