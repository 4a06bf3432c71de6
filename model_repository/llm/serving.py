"""What the two Triton ``model.py`` files share: reading their config, building the service, and serving decoupled
requests (one worker thread per request; the generation engine batches their forward passes).

``pb_utils`` (Triton's ``triton_python_backend_utils``) exists only inside the backend stub, so it is passed in.
"""

from __future__ import annotations

import json
import logging
import os
import threading
import time
from collections.abc import Callable, Mapping
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np

from model_repository.llm.lm import LMService, LMSettings
from model_repository.llm.local import LocalModel
from model_repository.llm.lyricist import (
    EndpointChatBackend,
    LocalChatBackend,
    LyricistService,
    LyricistSettings,
    NotConfiguredError,
)
from model_repository.llm.openai_endpoint import EndpointConfig, OpenAIEndpoint

logger = logging.getLogger(__name__)

ENV_ENDPOINT = "TRITONE_LYRICIST_ENDPOINT"
ENV_MODEL = "TRITONE_LYRICIST_MODEL"
ENV_API_KEY = "TRITONE_LYRICIST_API_KEY"
ENV_TIMEOUT = "TRITONE_LYRICIST_TIMEOUT_S"
ENV_RETRIES = "TRITONE_LYRICIST_RETRIES"
_WORKERS = 64
CANCEL_CHECK_S = 0.25

Run = Callable[[bytes, Callable[[dict[str, Any]], None], threading.Event], None]


def model_parameters(model_config: Mapping[str, Any]) -> dict[str, str]:
    """``parameters`` of a parsed ``config.pbtxt`` as plain strings."""
    return {k: str(v.get("string_value", "")) for k, v in (model_config.get("parameters") or {}).items()}


def _has_weights(version_dir: Path) -> bool:
    return (version_dir / "config.json").is_file()


def batch_prefill(params: Mapping[str, str]) -> bool:
    """The config parameter ``prefill``: ``batched`` (default: prompts waiting to join share one forward pass) or
    ``serial`` (one pass per prompt, the engine before batched prefill; kept for measurement)."""
    value = (params.get("prefill") or "batched").strip().lower()
    if value not in ("batched", "serial"):
        raise ValueError(f"config parameter prefill={value!r}; allowed: 'batched' (default) or 'serial'")
    return value == "batched"


def _local_model(version_dir: Path, params: Mapping[str, str], name: str) -> LocalModel:
    """The Hugging Face model in ``version_dir``, placed and batched as the model's config parameters say."""
    return LocalModel(
        version_dir,
        device=params.get("device") or "cpu",
        dtype=params.get("dtype") or "float32",
        max_rows=int(params.get("max_batch_rows") or 16),
        torch_threads=int(params.get("torch_threads") or 0) or None,
        batch_prefill=batch_prefill(params),
        name=name,
    )


def build_lyricist(
    version_dir: Path, params: Mapping[str, str], env: Mapping[str, str] = os.environ
) -> LyricistService:
    """The lyricist for one model version folder. Backend, in order: the endpoint named by
    ``$TRITONE_LYRICIST_ENDPOINT`` or the config's ``endpoint`` parameter, then weights in the version folder; with
    neither it is unconfigured."""
    settings = LyricistSettings(
        max_new_tokens=int(params.get("max_new_tokens") or 4096),
        expand_max_new_tokens=int(params.get("expand_max_new_tokens") or 320),
    )
    endpoint = env.get(ENV_ENDPOINT) or params.get("endpoint") or ""
    if endpoint:
        config = EndpointConfig(
            base_url=endpoint,
            model=env.get(ENV_MODEL) or params.get("endpoint_model") or "default",
            api_key=env.get(ENV_API_KEY) or None,
            timeout_s=float(env.get(ENV_TIMEOUT) or params.get("endpoint_timeout_s") or 60),
            retries=int(env.get(ENV_RETRIES) or params.get("endpoint_retries") or 2),
        )
        logger.info("lyricist: OpenAI-compatible endpoint %s (model %s)", config.url, config.model)
        return LyricistService(EndpointChatBackend(OpenAIEndpoint(config)), settings)
    if _has_weights(version_dir):
        model = _local_model(version_dir, params, "lyricist")
        return LyricistService(LocalChatBackend(model), settings)
    settings.not_configured = (
        f"no weights in {version_dir} and no endpoint. Set lyricist_dir (tritone export --lyricist-dir <Hugging Face "
        f"chat model folder>) or lyricist_endpoint (tritone export --lyricist-endpoint <url>, config parameter "
        f"'endpoint'), or the environment variable {ENV_ENDPOINT}=<OpenAI-compatible base URL>"
    )
    logger.warning("lyricist: %s", settings.not_configured)
    return LyricistService(None, settings)


def build_lm(version_dir: Path, params: Mapping[str, str]) -> LMService:
    settings = LMSettings(max_new_tokens=int(params.get("max_new_tokens") or 2048))
    if not _has_weights(version_dir):
        settings.not_configured = (
            f"no weights in {version_dir}. Set lm_dir (tritone export --lm-dir <acestep-5Hz-lm-* folder>) or export "
            "the tiny preset"
        )
        logger.warning("lm: %s", settings.not_configured)
        return LMService(None, settings)
    model = _local_model(version_dir, params, "lm")
    return LMService(model, settings)


class DecoupledServer:
    """Serves a decoupled Triton model: each request runs ``run(payload, emit, cancelled)`` on a worker thread;
    every emitted event becomes one response, the last one (``type`` in ``final_types``) carries the FINAL flag;
    an exception becomes an error response (its message is the error text)."""

    def __init__(self, pb_utils: Any, name: str, run: Run, final_types: frozenset[str]) -> None:
        self.pb = pb_utils
        self.name = name
        self.run = run
        self.final_types = final_types
        self.pool = ThreadPoolExecutor(max_workers=_WORKERS, thread_name_prefix=f"{name}-request")

    def submit(self, requests: list[Any]) -> None:
        for request in requests:
            tensor = self.pb.get_input_tensor_by_name(request, "request")
            payload = b"" if tensor is None else tensor.as_numpy().reshape(-1)[0]
            sender = request.get_response_sender()
            self.pool.submit(self._serve, payload, sender)

    def _serve(self, payload: Any, sender: Any) -> None:
        pb = self.pb
        cancelled = threading.Event()
        final_sent = False
        next_check = 0.0

        def emit(event: dict[str, Any]) -> None:
            nonlocal final_sent, next_check
            if final_sent or cancelled.is_set():
                return
            # Asking the server whether the client went away is a round trip: at most every CANCEL_CHECK_S.
            now = time.monotonic()
            if now >= next_check:
                next_check = now + CANCEL_CHECK_S
                if sender.is_cancelled():
                    cancelled.set()
                    return
            data = np.array([json.dumps(event, ensure_ascii=False).encode("utf-8")], dtype=np.object_)
            final = event.get("type") in self.final_types
            response = pb.InferenceResponse(output_tensors=[pb.Tensor("event", data)])
            sender.send(response, flags=pb.TRITONSERVER_RESPONSE_COMPLETE_FINAL if final else 0)
            final_sent = final

        try:
            if isinstance(payload, str):
                payload = payload.encode("utf-8")
            self.run(bytes(payload), emit, cancelled)
            if not final_sent:
                sender.send(flags=pb.TRITONSERVER_RESPONSE_COMPLETE_FINAL)
        except Exception as exc:  # every failure answers its own request; the model keeps serving
            if not isinstance(exc, ValueError | NotConfiguredError):
                logger.exception("%s: request failed", self.name)
            message = str(exc) if str(exc).startswith(f"{self.name}:") else f"{self.name}: {exc}"
            if not final_sent:
                sender.send(
                    pb.InferenceResponse(error=pb.TritonError(message)), flags=pb.TRITONSERVER_RESPONSE_COMPLETE_FINAL
                )

    def close(self) -> None:
        self.pool.shutdown(wait=False, cancel_futures=True)
