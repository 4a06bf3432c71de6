"""Triton Python-backend model that runs an ONNX graph with ONNX Runtime: the CPU stand-in for ``tensorrt_plan``.

``tritone export --target cpu`` copies this file to ``<repo>/<model>/<version>/model.py`` next to the graph, so it
imports its library code from the installed package. The config names the graph and the thread count::

    parameters: { key: "onnx_file" value: { string_value: "model.onnx" } }
    parameters: { key: "intra_op_num_threads" value: { string_value: "1" } }

All batching, validation and splitting lives in :mod:`model_repository.onnx.session`; this file only translates
between Triton's request/response objects and numpy.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

import triton_python_backend_utils as pb_utils

from model_repository.onnx.session import OnnxBatchRunner

logger = logging.getLogger(__name__)


class TritonPythonModel:
    def initialize(self, args: dict[str, str]) -> None:
        config = json.loads(args["model_config"])
        # args["model_repository"] is this model's folder; the graph sits in its version folder.
        version_dir = Path(args["model_repository"]) / args["model_version"]
        self.runner = OnnxBatchRunner.from_triton(config, version_dir)
        logger.debug("%s: loaded %s", self.runner.config.name, version_dir / self.runner.config.onnx_file)

    def execute(self, requests: list[Any]) -> list[Any]:
        batch = []
        for request in requests:
            tensors = {}
            for name in self.runner.input_names:
                tensor = pb_utils.get_input_tensor_by_name(request, name)
                tensors[name] = tensor.as_numpy() if tensor is not None else None
            batch.append(tensors)
        responses = []
        for result in self.runner.run(batch):
            if isinstance(result, Exception):
                responses.append(pb_utils.InferenceResponse(error=pb_utils.TritonError(str(result))))
            else:
                outputs = [pb_utils.Tensor(name, value) for name, value in result.items()]
                responses.append(pb_utils.InferenceResponse(output_tensors=outputs))
        return responses

    def finalize(self) -> None:
        self.runner = None  # type: ignore[assignment]
