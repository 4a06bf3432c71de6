"""What the Python entry points share on the Triton side: BLS calls, the ``event`` output tensor, string parameters.

Imports ``triton_python_backend_utils``, so it only loads inside tritonserver; library code never imports it (the
entry points hand it callables such as :func:`bls` instead).
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

import numpy as np
import triton_python_backend_utils as pb_utils


def bls(caller: str, model: str, version: str | int, inputs: Mapping[str, np.ndarray],
        outputs: list[str]) -> dict[str, np.ndarray]:
    """One synchronous BLS request to ``model`` (a version number, or -1/"" for the newest); a ``RuntimeError``
    naming ``caller``, the model and its error otherwise."""
    request = pb_utils.InferenceRequest(
        model_name=model,
        model_version=int(version) if str(version) not in ("", "-1") else -1,
        requested_output_names=outputs,
        inputs=[pb_utils.Tensor(name, np.ascontiguousarray(value)) for name, value in inputs.items()],
    )
    response = request.exec()
    if response.has_error():
        raise RuntimeError(f"{caller}: {model} version {version} failed: {response.error().message()}")
    return {name: pb_utils.get_output_tensor_by_name(response, name).as_numpy() for name in outputs}


def event_tensor(payload: Mapping[str, Any]) -> Any:
    """The ``event`` output: one JSON object as a one-element string tensor."""
    return pb_utils.Tensor("event", np.array([json.dumps(payload).encode()], dtype=np.object_))


def string_parameters(config: Mapping[str, Any]) -> dict[str, str]:
    """``parameters`` of a parsed ``config.pbtxt`` as plain strings."""
    return {k: v["string_value"] for k, v in config.get("parameters", {}).items()}
