"""Test helpers for the step scheduler through a real tritonserver: a song streaming in the background, and a
network's (inference, execution) counts from Triton's model statistics."""

from __future__ import annotations

import json
import queue
import time
from typing import Any

import numpy as np
import tritonclient.grpc as grpcclient

from tests.model_repository.streaming import StreamResult


class Live:
    """A song streaming in the background (gRPC stream): progress events as they arrive, ``cancel()``, ``join()``."""

    def __init__(self, url: str, request: dict[str, Any]) -> None:
        self.client = grpcclient.InferenceServerClient(url)
        self.responses: queue.Queue = queue.Queue()
        self.result = StreamResult()
        self.final = False
        self.client.start_stream(callback=lambda result, error: self.responses.put((result, error)))
        inp = grpcclient.InferInput("request", [1], "BYTES")
        inp.set_data_from_numpy(np.array([json.dumps(request).encode()], dtype=np.object_))
        self.client.async_stream_infer("sampler", [inp])

    def _next(self, timeout: float) -> None:
        result, error = self.responses.get(timeout=timeout)
        if error is not None:
            self.result.error, self.final = str(error), True
            return
        event = result.as_numpy("event")
        if event is not None:
            self.result.events.append(json.loads(event.reshape(-1)[0]))
        audio = result.as_numpy("audio")
        if audio is not None:
            self.result.outputs["audio"] = audio
            self.final = True

    def wait_step(self, step: int, timeout: float = 120.0) -> None:
        deadline = time.monotonic() + timeout
        while not any(e.get("stage") == "diffusion" and e["step"] >= step for e in self.result.events):
            assert not self.final, f"song ended before step {step}: {self.result.error}"
            self._next(max(deadline - time.monotonic(), 0.1))

    def join(self, timeout: float = 300.0) -> StreamResult:
        deadline = time.monotonic() + timeout
        while not self.final:
            self._next(max(deadline - time.monotonic(), 0.1))
        self.close()
        return self.result

    def cancel(self) -> None:
        self.client.stop_stream(cancel_requests=True)
        self.client.close()

    def close(self) -> None:
        self.client.stop_stream()
        self.client.close()


def dit_counts(triton, model: str = "dit", version: str = "1") -> tuple[int, int]:
    stats = triton.model_statistics(model, version)["model_stats"][0]
    return int(stats["inference_count"]), int(stats["execution_count"])


def delta(triton, before: tuple[int, int], model: str = "dit", version: str = "1") -> tuple[int, int]:
    after = dit_counts(triton, model, version)
    return after[0] - before[0], after[1] - before[1]
