"""One song's separation: resample, split into segments, batched network calls, overlap-add, resample back.

The numerics are ``demucs_infer.apply.apply_model(model, mix, shifts=0, split=True, overlap=overlap)``: the same
offsets (``range(0, length, stride)``, ``stride = int((1 - overlap) * segment)``), the same chunk padding
(``TensorChunk.padded``: a short last chunk is centred and filled with the audio before it), the same trim
(``center_trim``) and the same triangular transition weights, normalized by their sum. What differs is only where
the segments run: ``rows_per_call`` segments per network call and ``calls_in_flight`` calls at once, so a song's
segments batch together and, in Triton's dynamic batcher, with other songs' segments. The stem set's 0/1 matrix
(:func:`model_repository.stems.sets.stem_matrix`) is applied per segment before the overlap-add (both linear).

Audio enters and leaves at the request's rate (48 kHz by default) and is resampled to and from the model's rate
(44.1 kHz) with :func:`model_repository.acestep_v1.resample.resample` (torchaudio's ``sinc_interp_hann``).
"""

from __future__ import annotations

import json
from collections.abc import Callable
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from demucs_infer.apply import TensorChunk
from demucs_infer.utils import center_trim

from model_repository.acestep_v1.resample import resample
from model_repository.stems.manifest import StemsNetwork
from model_repository.stems.sets import MAX_SECONDS, SERVICE_RATE, STEM_SETS, StemsError, stem_matrix
from model_repository.stems.spectrogram import Spectrogram

# call(model, inputs) -> outputs: BLS in Triton, an ONNX session or torch in tests and benches.
NetworkCall = Callable[[str, dict[str, np.ndarray]], dict[str, np.ndarray]]
Progress = Callable[[dict[str, Any]], None]
OUTPUTS = ("spec_out", "wave_out")
REQUEST_FIELDS = ("stems", "overlap", "sample_rate")
MAX_OVERLAP = 0.75


class Cancelled(RuntimeError):
    """The client went away; the song stops between network calls."""


@dataclass(frozen=True)
class StemsRequest:
    stems: int = 4
    overlap: float = 0.25
    sample_rate: int = SERVICE_RATE


def parse_request(raw: bytes | str, *, model_rates: tuple[int, ...] = ()) -> StemsRequest:
    """The JSON ``request`` of one song; :class:`StemsError` naming the field otherwise."""
    try:
        body = json.loads(raw)
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise StemsError(f"request: not valid JSON ({exc})") from None
    if not isinstance(body, dict):
        raise StemsError(f"request: expected a JSON object, got {type(body).__name__}")
    unknown = sorted(set(body) - set(REQUEST_FIELDS))
    if unknown:
        raise StemsError(f"request: unknown field(s) {unknown}; allowed: {list(REQUEST_FIELDS)}")
    stems = body.get("stems", 4)
    if isinstance(stems, bool) or stems not in STEM_SETS:
        raise StemsError(f"stems: {stems!r} is not a stem set; choose one of {sorted(STEM_SETS)}")
    overlap = body.get("overlap", 0.25)
    if isinstance(overlap, bool) or not isinstance(overlap, int | float) or not 0.0 <= overlap <= MAX_OVERLAP:
        raise StemsError(f"overlap: {overlap!r}; need a number in [0, {MAX_OVERLAP}]")
    rates = (SERVICE_RATE, *model_rates)
    rate = body.get("sample_rate", SERVICE_RATE)
    if isinstance(rate, bool) or rate not in rates:
        raise StemsError(f"sample_rate: {rate!r}; allowed: {sorted(set(rates))} (the service's and the model's)")
    return StemsRequest(stems=int(stems), overlap=float(overlap), sample_rate=int(rate))


def check_audio(audio: Any, sample_rate: int) -> np.ndarray:
    """``audio`` as float32 [2, samples], at most :data:`MAX_SECONDS`; :class:`StemsError` naming ``audio``."""
    if audio is None:
        raise StemsError("audio: missing; send the song as float32 [2, samples]")
    audio = np.asarray(audio)
    if audio.ndim != 2 or audio.shape[0] != 2 or audio.shape[1] < 1:
        raise StemsError(f"audio: must be stereo [2, samples] at {sample_rate} Hz, got shape {list(audio.shape)}")
    limit = MAX_SECONDS * sample_rate
    if audio.shape[1] > limit:
        raise StemsError(
            f"audio: {audio.shape[1] / sample_rate:.1f} s is longer than the {MAX_SECONDS} s limit "
            f"({limit} samples at {sample_rate} Hz)"
        )
    audio = audio.astype(np.float32, copy=False)
    if not np.isfinite(audio).all():
        raise StemsError("audio: contains NaN or Inf samples")
    return audio


def pick_network(networks: dict[str, StemsNetwork], stems: int) -> StemsNetwork:
    """The network that answers ``stems``: an exact source count first (4 for 2 and 4 stems), then a larger one."""
    if not networks:
        raise StemsError("stems: this repository serves no stems network (export one with --stems-checkpoint)")
    candidates = []
    for net in networks.values():
        try:
            stem_matrix(stems, net.sources)
        except StemsError:
            continue
        candidates.append(net)
    if not candidates:
        served = ", ".join(f"{n.checkpoint} ({len(n.sources)} sources)" for n in networks.values())
        raise StemsError(f"stems: {stems} needs a 6-source checkpoint (htdemucs_6s); this repository serves {served}")
    return min(candidates, key=lambda n: (len(n.sources), n.model))


def transition_weight(segment: int, power: float = 1.0) -> torch.Tensor:
    """``apply_model``'s triangle, peak 1 in the middle of the segment, to ``power``."""
    weight = torch.cat([torch.arange(1, segment // 2 + 1), torch.arange(segment - segment // 2, 0, -1)])
    return (weight / weight.max()) ** power


class Separator:
    """Separates songs with one stems network through ``call``; thread-safe (one song per calling thread)."""

    def __init__(
        self,
        network: StemsNetwork,
        call: NetworkCall,
        *,
        rows_per_call: int = 4,
        calls_in_flight: int = 2,
        pool: ThreadPoolExecutor | None = None,
    ) -> None:
        if rows_per_call < 1 or rows_per_call > network.max_batch_size:
            raise ValueError(f"rows_per_call={rows_per_call}; need 1..{network.max_batch_size} (max_batch_size)")
        if calls_in_flight < 1:
            raise ValueError(f"calls_in_flight={calls_in_flight}; need >= 1")
        self.network = network
        self.call = call
        self.rows_per_call = rows_per_call
        self.calls_in_flight = calls_in_flight
        self.spectrogram = Spectrogram(network.nfft, network.hop_length)
        self.weight = transition_weight(network.segment_samples)
        self._pool = pool or ThreadPoolExecutor(max_workers=max(4, 4 * calls_in_flight), thread_name_prefix="stems")

    def segments(self, length: int, overlap: float) -> list[int]:
        stride = int((1 - overlap) * self.network.segment_samples)
        return list(range(0, length, stride))

    def run(
        self,
        audio: np.ndarray,
        request: StemsRequest,
        *,
        progress: Progress | None = None,
        cancelled: Callable[[], bool] | None = None,
    ) -> list[tuple[str, np.ndarray]]:
        """``audio`` [2, samples] at ``request.sample_rate`` -> [(stem name, [2, samples])] at the same rate."""
        net = self.network
        names, matrix_rows = stem_matrix(request.stems, net.sources)
        matrix = torch.tensor(matrix_rows, dtype=torch.float32)
        samples = audio.shape[-1]
        mix = torch.from_numpy(np.ascontiguousarray(audio, dtype=np.float32))[None]
        mix = resample(mix, request.sample_rate, net.samplerate)
        length = mix.shape[-1]
        segment = net.segment_samples
        offsets = self.segments(length, request.overlap)
        groups = [offsets[i : i + self.rows_per_call] for i in range(0, len(offsets), self.rows_per_call)]
        out = torch.zeros(len(names), net.audio_channels, length)
        sum_weight = torch.zeros(length)
        pending: dict[Future, list[TensorChunk]] = {}
        done_segments = 0
        next_group = 0
        try:
            while next_group < len(groups) or pending:
                while next_group < len(groups) and len(pending) < self.calls_in_flight:
                    if cancelled is not None and cancelled():
                        raise Cancelled("separator: request cancelled by the client")
                    chunks = [TensorChunk(mix, offset, segment) for offset in groups[next_group]]
                    pending[self._pool.submit(self._segments, chunks, segment)] = chunks
                    next_group += 1
                finished, _ = wait(pending, return_when=FIRST_COMPLETED)
                for future in finished:
                    chunks = pending.pop(future)
                    sources = future.result()  # [R, S, C, segment]
                    for row, chunk in enumerate(chunks):
                        chunk_out = center_trim(sources[row], chunk.length)
                        stems = torch.einsum("os,scl->ocl", matrix, chunk_out)
                        w = self.weight[: chunk.length]
                        out[..., chunk.offset : chunk.offset + chunk.length] += w * stems
                        sum_weight[chunk.offset : chunk.offset + chunk.length] += w
                    done_segments += len(chunks)
                    if progress is not None:
                        progress({"type": "progress", "segments_done": done_segments, "segments": len(offsets),
                                  "fraction": round(done_segments / len(offsets), 4)})
        finally:
            for future in pending:
                future.cancel()
        out /= sum_weight
        out = resample(out, net.samplerate, request.sample_rate)[..., :samples]
        return [(name, np.ascontiguousarray(out[i].numpy())) for i, name in enumerate(names)]

    def _segments(self, chunks: list[TensorChunk], segment: int) -> torch.Tensor:
        """One network call for ``chunks``: padded mixes + their spectrograms in, the segments' sources out."""
        padded = torch.cat([chunk.padded(segment) for chunk in chunks])
        spec = self.spectrogram.forward(padded)
        got = self.call(self.network.model, {"mix": padded.numpy(), "spec": spec.contiguous().numpy()})
        return self.spectrogram.inverse(torch.from_numpy(got["spec_out"]), torch.from_numpy(got["wave_out"]))
