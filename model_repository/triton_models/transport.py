"""What the Python entry points share on the Triton side: BLS calls, the ``event`` output tensor, string parameters,
the error that ends a stream.

Imports ``triton_python_backend_utils``, so it only loads inside tritonserver; library code never imports it (the
entry points hand it callables such as :func:`bls` instead).
"""

from __future__ import annotations

import json
import logging
from collections.abc import Mapping
from typing import Any

import numpy as np
import triton_python_backend_utils as pb_utils

logger = logging.getLogger(__name__)


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


def stream_error(model: str, exc: BaseException, expected: tuple[type[BaseException], ...]) -> Any:
    """The error response that ends a song's stream: an ``expected`` error says its own message (it names the field
    or the cause); anything else is a bug, logged and named by its type."""
    if isinstance(exc, expected):
        message = str(exc)
    else:
        logger.error("%s: song failed", model, exc_info=exc)
        message = f"{model}: internal error: {type(exc).__name__}: {exc}"
    return pb_utils.InferenceResponse(error=pb_utils.TritonError(message))
