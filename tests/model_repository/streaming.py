"""A small gRPC streaming client for the decoupled models in tests: send one request, collect its events."""

from __future__ import annotations

import json
import queue
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import tritonclient.grpc as grpcclient
from tritonclient.utils import InferenceServerException


@dataclass
class StreamResult:
    events: list[dict[str, Any]] = field(default_factory=list)
    outputs: dict[str, np.ndarray] = field(default_factory=dict)
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
            event_arr = result.as_numpy("event")
            if event_arr is not None:
                out.events.append(json.loads(event_arr.reshape(-1)[0]))
            for name in outputs:
                value = result.as_numpy(name)
                if value is not None:
                    out.outputs[name] = value
            if (
                response.parameters.get("triton_final_response")
                and response.parameters["triton_final_response"].bool_param
            ):
                return out
    finally:
        client.stop_stream()
        client.close()
