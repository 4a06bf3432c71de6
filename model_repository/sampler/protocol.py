"""What a family runner is, and the pieces every runner uses.

A runner turns one :class:`~model_repository.sampler.request.SamplerRequest` into audio. It never touches a model:
its song loop is a generator (:meth:`FamilyRunner.steps`) that *yields* every network evaluation it needs as a
:class:`NetworkRequest` and is sent the outputs back (and heavy CPU work as :class:`HostWork`, sent its result). Who
answers decides how songs share networks:

* :func:`drive` answers one song's requests one by one through a :class:`NetworkCaller` (``FamilyRunner.run``:
  in-process ONNX Runtime, :class:`~model_repository.onnx.inprocess.OrtNetworkCaller`, in benchmarks and tests);
* :class:`~model_repository.sampler.scheduler.StepScheduler` (the served ``sampler``) holds every active song's
  pending request and sends requests of the same shape as one batched call (one BLS request), so N songs cost one
  DiT call per step.

Like TensorRT-LLM's decoder/transport split, nothing here knows it runs inside Triton.
"""

from __future__ import annotations

import secrets
from collections.abc import Callable, Generator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar, Literal, Protocol, TypedDict, TypeVar, Unpack

import numpy as np

from model_repository.facts.families import MAX_SEED
from model_repository.facts.manifest import SamplerManifest
from model_repository.sampler.request import RequestError, SamplerRequest

Progress = Callable[[dict[str, Any]], None]
IsCancelled = Callable[[], bool]
# (audio [B, 2, S] float32 at the family's sample rate, the seeds used, generation info for the done event)
SongResult = tuple[np.ndarray, list[int], dict[str, Any]]
Outputs = dict[str, np.ndarray]
# Where in a song a request comes from: the step scheduler starts songs that encode together on the same DiT step.
Stage = Literal["encode", "diffusion", "decode"]
T = TypeVar("T")


@dataclass(frozen=True)
class NetworkRequest:
    """One network evaluation a song needs: ``inputs`` are batch-first (axis 0 = rows) and already padded to the
    contract's bucket, so requests with equal shapes past axis 0 can be concatenated into one call."""

    model: str
    version: str
    inputs: dict[str, np.ndarray]
    outputs: list[str]
    stage: Stage = "diffusion"
    rows: int = field(init=False)

    def __post_init__(self) -> None:
        first = {name: value.shape[0] if value.ndim else 0 for name, value in self.inputs.items()}
        object.__setattr__(self, "rows", max(first.values(), default=0))


@dataclass(frozen=True)
class HostWork:
    """CPU work a song needs between its network calls (e.g. the lyric alignment's DTW): the step scheduler runs
    ``fn`` on its worker pool, off the loop thread, so other songs keep stepping meanwhile; :func:`drive` runs it
    inline. The song is sent ``fn()``'s return value (an exception it raises is raised into the song)."""

    fn: Callable[[], Any]
    stage: Stage = "decode"


# A song's calls: yields requests (network evaluations or host work), is sent each one's answer, returns ``T``.
Calls = Generator[NetworkRequest | HostWork, Any, T]
SongSteps = Calls[SongResult]


def network(model: str, version: str, inputs: dict[str, np.ndarray], outputs: list[str],
            stage: Stage = "diffusion") -> Calls[Outputs]:
    """``out = yield from network(...)``: one network evaluation inside a song generator."""
    out: Outputs = yield NetworkRequest(model, version, inputs, outputs, stage)
    return out


def host_work(fn: Callable[[], T], stage: Stage = "decode") -> Calls[T]:
    """``value = yield from host_work(fn)``: CPU work inside a song generator, run off the scheduler's loop thread."""
    value: T = yield HostWork(fn, stage)
    return value


def drive(steps: SongSteps, call: NetworkCaller) -> SongResult:
    """Run one song generator to the end, answering each request with one direct call (host work inline)."""
    try:
        request = next(steps)
        while True:
            if isinstance(request, HostWork):
                try:
                    value = request.fn()
                except Exception as exc:  # noqa: BLE001 - raised into the song, as the scheduler does
                    request = steps.throw(exc)
                    continue
                request = steps.send(value)
            else:
                request = steps.send(call(request.model, request.version, request.inputs, request.outputs))
    except StopIteration as done:
        result: SongResult = done.value
        return result


class NetworkCaller(Protocol):
    def __call__(
        self, model: str, version: str, inputs: dict[str, np.ndarray], outputs: list[str]
    ) -> dict[str, np.ndarray]: ...


class Cancelled(RuntimeError):
    """The client cancelled the request; the runner stops at the next step boundary."""


class SongInputs(TypedDict, total=False):
    """What a song takes beside its request: the source audio of an edit task and the reference audio (48 kHz stereo
    [2, samples]), where its progress events go, and how it learns that its client cancelled."""

    src_audio: np.ndarray | None
    reference_audio: np.ndarray | None
    # The latents ``src_audio`` was decoded from (a clip's, [frames, channels]): ACE-Step 1.5 starts from them
    # instead of encoding the audio again (lossless; the VAE encoder samples a posterior).
    src_latents: np.ndarray | None
    progress: Progress
    cancelled: IsCancelled


class FamilyRunner(Protocol):
    """One model family's song loop. Registered in :data:`model_repository.sampler.registry.RUNNERS`."""

    family: ClassVar[str]

    def __init__(self, assets: Path, call: NetworkCaller) -> None:
        """``assets``: the family's folder under the sampler's assets (its ``pipeline.json`` and version sets)."""

    @property
    def manifest(self) -> SamplerManifest: ...

    @property
    def sample_rate(self) -> int: ...

    def parse_limits(self) -> dict[str, Any]:
        """Facts of the served checkpoints that request parsing needs (e.g. the 5 Hz codebook size)."""
        ...

    def describe(self) -> dict[str, Any]:
        """Version sets, defaults and sample rate, for the sampler's ``{"describe": true}`` answer."""
        ...

    def steps(self, req: SamplerRequest, **inputs: Unpack[SongInputs]) -> SongSteps:
        """The song as a generator of network requests (its return value: audio, seeds, info). Request errors and
        :class:`Cancelled` are raised from inside it."""
        ...

    def run(self, req: SamplerRequest, **inputs: Unpack[SongInputs]) -> SongResult:
        """:meth:`steps` driven through the runner's own caller, one call at a time."""
        ...


def bucket(size: int, buckets: Sequence[int], what: str, family: str) -> int:
    """The smallest bucket that holds ``size``; a :class:`RequestError` naming ``what`` otherwise."""
    for b in buckets:
        if b >= size:
            return int(b)
    raise RequestError(
        f"sampler: {what} is {size} tokens/frames; at most {buckets[-1]} fit (family {family}); shorten it"
    )


def resolve_versions(req: SamplerRequest, versions: dict[str, str]) -> dict[str, str]:
    """A version set's network versions with the request's per-network pins (``versions``) applied."""
    out = dict(versions)
    if req.versions:
        unknown = sorted(set(req.versions) - set(out))
        if unknown:
            raise RequestError(f"sampler: field 'versions' names unknown model(s) {unknown}; known {sorted(out)}")
        out.update(req.versions)
    return out


def fill_seeds(given: Sequence[int] | None, batch: int) -> list[int]:
    """The request's seeds, completed with random ones up to ``batch``."""
    seeds = list(given or [])
    return seeds + [secrets.randbelow(MAX_SEED + 1) for _ in range(batch - len(seeds))]


def check_cancelled(cancelled: IsCancelled) -> None:
    if cancelled():
        raise Cancelled("sampler: request cancelled")
