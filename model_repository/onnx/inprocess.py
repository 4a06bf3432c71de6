"""Run a written model repository's ONNX networks in this process (benchmarks and the sampler's unit tests): the same
``NetworkCaller`` interface the served sampler gets through BLS, minus Triton."""

from __future__ import annotations

import threading
from pathlib import Path

import numpy as np

from model_repository.onnx.session import open_session


class OrtNetworkCaller:
    def __init__(self, repository: Path, threads: int = 1) -> None:
        self.repository = Path(repository)
        self.threads = threads
        self._sessions: dict[tuple[str, str], object] = {}
        self._lock = threading.Lock()

    def _session(self, model: str, version: str):
        key = (model, version)
        with self._lock:
            if key not in self._sessions:
                path = self.repository / model / version / "model.onnx"
                if not path.exists():
                    raise FileNotFoundError(f"no ONNX file for {model} version {version} at {path}")
                self._sessions[key] = open_session(path, self.threads)
            return self._sessions[key]

    def __call__(
        self, model: str, version: str, inputs: dict[str, np.ndarray], outputs: list[str]
    ) -> dict[str, np.ndarray]:
        values = self._session(model, version).run(outputs, {k: np.ascontiguousarray(v) for k, v in inputs.items()})
        return dict(zip(outputs, values, strict=True))
