"""Triton Python-backend model ``separator``: one song in, a stream of progress events, its stems, then ``done``.

Decoupled: ``execute`` validates each request (every error names the field: ``request``, ``stems``, ``overlap``,
``sample_rate``, ``audio``) and hands the song to a thread, so many songs run at once. The song's segments go to the
``stems`` network (``stems_6s`` for 6 stems) by BLS, ``rows_per_call`` segments per call and ``calls_in_flight``
calls at once; the network's dynamic batcher merges them with other songs' calls. Responses: ``{"type":
"progress", ...}`` events; one ``{"type": "stem", "name": ...}`` event + ``audio`` [2, samples] per stem; a final
``{"type": "done", "stems": [...], "sample_rate": ..., "num_samples": ...}``. Parameters: ``max_concurrent_songs``,
``rows_per_call``, ``calls_in_flight``. All the numerics live in :mod:`model_repository.stems.separate`.
"""

from __future__ import annotations

import json
import logging
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np
import triton_python_backend_utils as pb_utils

from model_repository.stems import manifest
from model_repository.stems.separate import (
    Cancelled,
    Separator,
    StemsRequest,
    check_audio,
    parse_request,
    pick_network,
)
from model_repository.stems.sets import StemsError
from model_repository.triton_models.transport import bls, event_tensor, stream_error, string_parameters

logger = logging.getLogger(__name__)
FINAL = pb_utils.TRITONSERVER_RESPONSE_COMPLETE_FINAL


class TritonPythonModel:
    def initialize(self, args: dict[str, str]) -> None:
        config = json.loads(args["model_config"])
        params = string_parameters(config)
        assets = Path(args["model_repository"]) / args["model_version"] / "assets"
        self.networks = manifest.read(assets)
        songs = int(params.get("max_concurrent_songs", "16"))
        rows = int(params.get("rows_per_call", "4"))
        in_flight = int(params.get("calls_in_flight", "2"))
        self.songs = ThreadPoolExecutor(max_workers=songs, thread_name_prefix="song")
        self.calls = ThreadPoolExecutor(max_workers=songs * in_flight, thread_name_prefix="stems-call")
        self.separators = {
            name: Separator(net, self._bls, rows_per_call=min(rows, net.max_batch_size),
                            calls_in_flight=in_flight, pool=self.calls)
            for name, net in self.networks.items()
        }
        self.rates = tuple(sorted({net.samplerate for net in self.networks.values()}))
        logger.info("separator: networks %s", ", ".join(f"{n} ({v.checkpoint})" for n, v in self.networks.items()))

    def _bls(self, model: str, inputs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        return bls("separator", model, self.networks[model].version, inputs, ["spec_out", "wave_out"])

    def execute(self, requests: list[Any]) -> None:
        for request in requests:
            sender = request.get_response_sender()
            try:
                raw = pb_utils.get_input_tensor_by_name(request, "request")
                if raw is None:
                    raise StemsError("request: missing; send a JSON object such as {\"stems\": 4}")
                parsed = parse_request(raw.as_numpy().reshape(-1)[0], model_rates=self.rates)
                separator = self.separators[pick_network(self.networks, parsed.stems).model]
                tensor = pb_utils.get_input_tensor_by_name(request, "audio")
                audio = check_audio(tensor.as_numpy() if tensor is not None else None, parsed.sample_rate)
            except StemsError as exc:
                sender.send(pb_utils.InferenceResponse(error=pb_utils.TritonError(str(exc))), flags=FINAL)
                continue
            self.songs.submit(self._song, request, sender, separator, parsed, audio)
        return None

    def _song(self, request: Any, sender: Any, separator: Separator, parsed: StemsRequest, audio: np.ndarray) -> None:
        try:
            stems = separator.run(
                audio,
                parsed,
                progress=lambda event: sender.send(pb_utils.InferenceResponse(output_tensors=[event_tensor(event)])),
                cancelled=request.is_cancelled,
            )
            for name, wave in stems:
                event = event_tensor({"type": "stem", "name": name})
                sender.send(pb_utils.InferenceResponse(output_tensors=[event, pb_utils.Tensor("audio", wave)]))
            done = {
                "type": "done",
                "stems": [name for name, _ in stems],
                "checkpoint": separator.network.checkpoint,
                "sample_rate": parsed.sample_rate,
                "num_samples": int(audio.shape[-1]),
            }
            sender.send(pb_utils.InferenceResponse(output_tensors=[event_tensor(done)]), flags=FINAL)
        except Exception as exc:  # noqa: BLE001 - every failure must end the stream
            sender.send(stream_error("separator", exc, (StemsError, Cancelled, RuntimeError)), flags=FINAL)

    def finalize(self) -> None:
        self.songs.shutdown(wait=True, cancel_futures=True)
        self.calls.shutdown(wait=True, cancel_futures=True)
