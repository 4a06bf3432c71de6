"""Triton Python-backend model ``sampler``: one song request in, a stream of progress events and then the audio out.

Decoupled: ``execute`` validates each request, hands it to a worker thread and returns at once, so many songs run
concurrently. The request's ``family`` picks the runner: ACE-Step 1.5 (:mod:`model_repository.acestep15_runner`,
``text_encoder``/``condition_encoder``/``dit``/``vae_decoder`` …) or ACE-Step v1
(:mod:`model_repository.acestep_v1_runner`, the ``v1_*`` networks), both calling their networks through BLS; Triton's
dynamic batcher on those models is where songs share forward passes. ``{"describe": true}`` is answered with one
``done`` event listing the families and version sets (:mod:`model_repository.sampler_families`). This file only
translates tensors and responses.
"""

from __future__ import annotations

import json
import logging
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np
import triton_python_backend_utils as pb_utils

from model_repository.acestep15_runner import Cancelled
from model_repository.sampler_families import SamplerFamilies
from model_repository.sampler_request import RequestError

logger = logging.getLogger(__name__)
FINAL = pb_utils.TRITONSERVER_RESPONSE_COMPLETE_FINAL


def _bls(model: str, version: str, inputs: dict[str, np.ndarray], outputs: list[str]) -> dict[str, np.ndarray]:
    request = pb_utils.InferenceRequest(
        model_name=model,
        model_version=int(version),
        requested_output_names=outputs,
        inputs=[pb_utils.Tensor(name, np.ascontiguousarray(value)) for name, value in inputs.items()],
    )
    response = request.exec()
    if response.has_error():
        raise RuntimeError(f"sampler: {model} version {version} failed: {response.error().message()}")
    return {name: pb_utils.get_output_tensor_by_name(response, name).as_numpy() for name in outputs}


def _event(payload: dict[str, Any]) -> Any:
    return pb_utils.Tensor("event", np.array([json.dumps(payload).encode()], dtype=np.object_))


class TritonPythonModel:
    def initialize(self, args: dict[str, str]) -> None:
        config = json.loads(args["model_config"])
        params = {k: v["string_value"] for k, v in config.get("parameters", {}).items()}
        self.families = SamplerFamilies(Path(args["model_repository"]) / args["model_version"] / "assets", _bls)
        self.pool = ThreadPoolExecutor(max_workers=int(params.get("max_concurrent_songs", "64")))

    def execute(self, requests: list[Any]) -> None:
        for request in requests:
            sender = request.get_response_sender()
            try:
                src = pb_utils.get_input_tensor_by_name(request, "src_audio")
                ref = pb_utils.get_input_tensor_by_name(request, "reference_audio")
                src_audio = src.as_numpy().astype(np.float32) if src is not None else None
                ref_audio = ref.as_numpy().astype(np.float32) if ref is not None else None
                for name, audio in (("src_audio", src_audio), ("reference_audio", ref_audio)):
                    if audio is not None and (audio.ndim != 2 or audio.shape[0] != 2 or audio.shape[1] < 1920):
                        raise RequestError(
                            f"sampler: input '{name}' must be 48 kHz stereo [2, samples], got {audio.shape}"
                        )
                raw = pb_utils.get_input_tensor_by_name(request, "request").as_numpy().reshape(-1)[0]
                parsed = self.families.parse(
                    raw, has_src_audio=src_audio is not None, has_reference_audio=ref_audio is not None
                )
            except (RequestError, AttributeError) as exc:
                sender.send(pb_utils.InferenceResponse(error=pb_utils.TritonError(str(exc))), flags=FINAL)
                continue
            if parsed.describe:
                event = {"type": "done"} | self.families.describe()
                sender.send(pb_utils.InferenceResponse(output_tensors=[_event(event)]), flags=FINAL)
                continue
            self.pool.submit(self._song, request, sender, parsed, src_audio, ref_audio)
        return None

    def _song(self, request: Any, sender: Any, parsed: Any, src_audio: Any, ref_audio: Any) -> None:
        try:
            runner = self.families.runner(parsed)
            audio, seeds, info = runner.run(
                parsed,
                src_audio=src_audio,
                reference_audio=ref_audio,
                progress=lambda event: sender.send(pb_utils.InferenceResponse(output_tensors=[_event(event)])),
                cancelled=request.is_cancelled,
            )
            done = {
                "type": "done",
                "seeds": seeds,
                "sample_rate": self.families.sample_rate(parsed.family),
                "num_samples": int(audio.shape[-1]),
            } | info
            outputs = [_event(done), pb_utils.Tensor("audio", audio.astype(np.float32))]
            sender.send(pb_utils.InferenceResponse(output_tensors=outputs), flags=FINAL)
        except (RequestError, Cancelled, RuntimeError) as exc:
            sender.send(pb_utils.InferenceResponse(error=pb_utils.TritonError(str(exc))), flags=FINAL)
        except Exception as exc:  # noqa: BLE001 - a bug must still end the stream, with its type named
            logger.exception("sampler: song failed")
            sender.send(
                pb_utils.InferenceResponse(
                    error=pb_utils.TritonError(f"sampler: internal error: {type(exc).__name__}: {exc}")
                ),
                flags=FINAL,
            )

    def finalize(self) -> None:
        self.pool.shutdown(wait=True, cancel_futures=True)
