"""A two-version toy model for tests of version roll-outs (``tritone models``, ``bench/model_swap.py``).

``echo`` adds its version number to its input, so every answer says which version served it. It is a real
Python-backend model served by the real tritonserver; only its arithmetic is a toy.
"""

from __future__ import annotations

from pathlib import Path

ECHO = "echo"
ECHO_CONFIG = """
name: "echo"
backend: "python"
max_batch_size: 0
version_policy: { specific: { versions: [ 1 ] } }
input [ { name: "x" data_type: TYPE_FP32 dims: [ 1 ] } ]
output [ { name: "y" data_type: TYPE_FP32 dims: [ 1 ] } ]
instance_group [ { count: 1 kind: KIND_CPU } ]
"""
ECHO_MODEL_PY = """
import numpy as np
import triton_python_backend_utils as pb_utils


class TritonPythonModel:
    def initialize(self, args):
        self.version = float(args["model_version"])

    def execute(self, requests):
        responses = []
        for request in requests:
            x = pb_utils.get_input_tensor_by_name(request, "x").as_numpy()
            responses.append(pb_utils.InferenceResponse([pb_utils.Tensor("y", (x + self.version).astype(np.float32))]))
        return responses
"""


def write_echo_repository(root: Path, versions: tuple[int, ...] = (1, 2)) -> Path:
    """``root/echo/{config.pbtxt, <v>/model.py}``; the config serves only version 1 at start."""
    model = root / ECHO
    model.mkdir(parents=True, exist_ok=True)
    (model / "config.pbtxt").write_text(ECHO_CONFIG)
    for version in versions:
        (model / str(version)).mkdir(exist_ok=True)
        (model / str(version) / "model.py").write_text(ECHO_MODEL_PY)
    return root
