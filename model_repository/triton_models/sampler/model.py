"""Triton Python-backend model ``sampler``: one song request in, a stream of progress events and then the audio out.

Decoupled: ``execute`` validates each request, hands the song to the step scheduler and returns at once, so many
songs run concurrently. The request's ``family`` picks the runner from the registry
(:mod:`model_repository.sampler.registry`: ACE-Step 1.5's ``text_encoder``/``condition_encoder``/``dit``/
``vae_decoder`` …, ACE-Step v1's ``v1_*`` networks); the runner's song generator yields its network requests and the
:class:`~model_repository.sampler.scheduler.StepScheduler` (one loop for all active songs of every family) sends the
requests of all songs that share a network and shape as one BLS call, up to the network's ``max_batch_size`` rows.
The dynamic batcher on the network models still merges calls of several sampler instances.

Parameters: ``step_scheduler`` (``"true"``; ``"false"`` runs each song on its own thread calling BLS one request at
a time, the pre-scheduler path, kept for comparison benchmarks), ``max_rows_per_call`` (``"0"``: each network's
``max_batch_size``; a positive number caps every network lower), ``max_concurrent_songs`` (threads of the
per-song path). ``{"describe": true}`` is answered with one ``done`` event listing the families and version sets.
This file only translates tensors and responses.
"""

from __future__ import annotations

import json
import logging
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np
import triton_python_backend_utils as pb_utils

from model_repository.sampler.protocol import Cancelled, SongResult
from model_repository.sampler.registry import SamplerFamilies
from model_repository.sampler.request import RequestError, SamplerRequest
from model_repository.sampler.scheduler import RowCaps, StepScheduler
from model_repository.triton_models.transport import bls, event_tensor, stream_error, string_parameters

logger = logging.getLogger(__name__)
FINAL = pb_utils.TRITONSERVER_RESPONSE_COMPLETE_FINAL


def _bls(model: str, version: str, inputs: dict[str, np.ndarray], outputs: list[str]) -> dict[str, np.ndarray]:
    return bls("sampler", model, version, inputs, outputs)


class TritonPythonModel:
    def initialize(self, args: dict[str, str]) -> None:
        config = json.loads(args["model_config"])
        params = string_parameters(config)
        model_dir = Path(args["model_repository"])
        self.families = SamplerFamilies(model_dir / args["model_version"] / "assets", _bls)
        self.pool: ThreadPoolExecutor | None = None
        self.scheduler: StepScheduler | None = None
        mode = params.get("step_scheduler", "true").strip().lower()
        if mode not in ("true", "false"):
            raise ValueError(f"sampler: parameter step_scheduler is {mode!r}; use 'true' or 'false'")
        if mode == "true":
            limit = int(params.get("max_rows_per_call", "0"))
            if limit < 0:
                raise ValueError(f"sampler: parameter max_rows_per_call is {limit}; use 0 (networks' max_batch_size) "
                                 "or a positive row cap")
            caps = RowCaps(model_dir.parent, limit=limit or None)
            self.scheduler = StepScheduler(_bls, caps, instances=caps.instances)
        else:
            self.pool = ThreadPoolExecutor(max_workers=int(params.get("max_concurrent_songs", "64")))
        logger.info("sampler: %s", "step scheduler" if self.scheduler else "one thread per song")

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
                sources = {"src_audio": src_audio, "reference_audio": ref_audio}
                lat = pb_utils.get_input_tensor_by_name(request, "src_latents")
                if lat is not None:  # the latents src_audio was decoded from: used instead of encoding it again
                    sources["src_latents"] = lat.as_numpy().astype(np.float32)
                    if sources["src_latents"].ndim != 2 or src_audio is None:
                        raise RequestError(
                            "sampler: input 'src_latents' must be [frames, channels], sent beside 'src_audio' (the "
                            f"latents that audio was decoded from), got {sources['src_latents'].shape}"
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
                sender.send(pb_utils.InferenceResponse(output_tensors=[event_tensor(event)]), flags=FINAL)
                continue
            if self.scheduler is not None:
                self._schedule(request, sender, parsed, sources)
            else:
                assert self.pool is not None
                self.pool.submit(self._song, request, sender, parsed, sources)
        return None

    def _schedule(self, request: Any, sender: Any, parsed: SamplerRequest, sources: dict[str, Any]) -> None:
        assert self.scheduler is not None
        steps = self.families.runner(parsed).steps(
            parsed,
            **sources,
            progress=lambda event: sender.send(pb_utils.InferenceResponse(output_tensors=[event_tensor(event)])),
            cancelled=request.is_cancelled,
        )
        self.scheduler.submit(
            steps,
            on_done=lambda result: self._done(sender, parsed, result),
            on_error=lambda exc: _fail(sender, exc),
            cancelled=request.is_cancelled,
        )

    def _song(self, request: Any, sender: Any, parsed: SamplerRequest, sources: dict[str, Any]) -> None:
        try:
            runner = self.families.runner(parsed)
            result = runner.run(
                parsed,
                **sources,
                progress=lambda event: sender.send(pb_utils.InferenceResponse(output_tensors=[event_tensor(event)])),
                cancelled=request.is_cancelled,
            )
            self._done(sender, parsed, result)
        except Exception as exc:  # noqa: BLE001 - every failure must end the stream
            _fail(sender, exc)

    def _done(self, sender: Any, parsed: SamplerRequest, result: SongResult) -> None:
        audio, seeds, info = result
        info = dict(info)
        latents = info.pop("latents", None)
        done = {
            "type": "done",
            "seeds": seeds,
            "sample_rate": self.families.sample_rate(parsed.family),
            "num_samples": int(audio.shape[-1]),
        } | info
        outputs = [pb_utils.Tensor("audio", audio.astype(np.float32))]
        if latents is not None:  # the final latents, flat per item ([B, N]; their shape in the done event)
            latents = np.ascontiguousarray(latents, dtype=np.float32)
            done["latent_shape"] = list(latents.shape[1:])
            outputs.append(pb_utils.Tensor("latents", latents.reshape(latents.shape[0], -1)))
        outputs.insert(0, event_tensor(done))
        sender.send(pb_utils.InferenceResponse(output_tensors=outputs), flags=FINAL)

    def finalize(self) -> None:
        if self.scheduler is not None:
            self.scheduler.close()
        if self.pool is not None:
            self.pool.shutdown(wait=True, cancel_futures=True)


def _fail(sender: Any, exc: BaseException) -> None:
    """End the song's stream with its error; a bug names its type."""
    sender.send(stream_error("sampler", exc, (RequestError, Cancelled, RuntimeError)), flags=FINAL)
