"""Stages both pipelines share: the ``lm`` filling in metadata, and the ``audio`` stage on the ``sampler``.

The audio stage sends the family's typed request (``requests.py``), streams DiT progress into the job (throttled) and
keeps the waveform as ``audio.npy`` for the post stage (and the final latents as ``latents.npy``, for the clips).
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from typing import Any

import numpy as np

from orchestrator.media.audio import SAMPLE_RATE
from orchestrator.services.jobs.engine import Run, StageEngine, StageFailedError
from orchestrator.services.jobs.post import Post
from orchestrator.services.jobs.requests import for_family
from orchestrator.services.storage import LATENTS, SRC_LATENTS, WAVEFORM, disk_guard, load_upload, save_npy_atomic

META_KEYS = ("bpm", "key_scale", "time_signature", "duration")


def normal_meta(meta: Mapping[str, Any]) -> dict[str, Any]:
    """One spelling for the metadata whichever model wrote it: bpm int, key_scale str, time_signature str ("4"),
    duration float (the sampler's request types)."""
    out: dict[str, Any] = {}
    bpm = meta.get("bpm")
    out["bpm"] = None if bpm in (None, "") else int(round(float(bpm)))
    key = meta.get("key_scale")
    out["key_scale"] = None if key in (None, "") else str(key)
    ts = meta.get("time_signature")
    out["time_signature"] = None if ts in (None, "") else str(ts).split("/")[0].strip()
    duration = meta.get("duration")
    out["duration"] = None if duration in (None, "") else float(duration)
    return out


def lm_request(
    *,
    mode: str,
    caption: str,
    lyrics: str,
    known: Mapping[str, Any],
    language: str,
    temperature: float,
    seed: int,
    extra: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """The ``lm`` request in ``mode`` (metadata, thinking, inspire) — the stages' and the direct routes' (upstream's
    /format_input, /create_random_sample) alike."""
    return {
        "mode": mode,
        "caption": caption[:2000],  # the lm's limits (a long plan caption is cut, not refused)
        "lyrics": lyrics[:10000],
        **{key: known.get(key) for key in META_KEYS},
        "vocal_language": language,
        "temperature": temperature,
        "seed": seed,
        **(extra or {}),
    }


def lm_answer(result: Mapping[str, Any]) -> dict[str, Any]:
    """The ``lm`` result event as one dict: its metadata with any codes, caption and lyrics it wrote."""
    merged = dict(result.get("metadata") or {})
    for key in ("audio_codes", "caption", "lyrics"):
        if result.get(key) is not None:
            merged[key] = result[key]
    return merged


class SharedStages:
    def __init__(self, engine: StageEngine) -> None:
        self._engine = engine

    async def lm_metadata(
        self,
        run: Run,
        *,
        caption: str,
        lyrics: str,
        known: Mapping[str, Any],
        language: str,
        temperature: float,
        mode: str = "metadata",
        extra: Mapping[str, Any] | None = None,
    ) -> dict[str, Any]:
        """The ``lm``'s answer in ``mode`` (metadata, thinking, inspire): its metadata with any codes, caption and
        lyrics it wrote."""
        request = lm_request(
            mode=mode, caption=caption, lyrics=lyrics, known=known, language=language, temperature=temperature,
            seed=run.params["seeds"][0], extra=extra,
        )
        result: dict[str, Any] | None = None
        async for event in self._engine.call(run, self._engine.settings.lm_model, request):
            if event.type == "result":
                result = event.data
        if result is None:
            raise StageFailedError("the lm finished without a result")
        run.state["lm_model"] = (run.params.get("lm") or {}).get("name") or self._engine.settings.lm_model
        return lm_answer(result)

    async def audio(self, run: Run) -> None:
        engine, settings = self._engine, self._engine.settings
        directory = engine.job_dir(run)
        tensors: dict[str, np.ndarray] = {}
        for name in run.params.get("uploads") or []:
            tensors[name] = await asyncio.to_thread(load_upload, directory, name)
        if run.params.get("src_latents_clip"):  # the source clip's latents: the sampler does not encode it again
            tensors["src_latents"] = await asyncio.to_thread(np.load, directory / SRC_LATENTS)
        audio: np.ndarray | None = None
        latents: np.ndarray | None = None
        done: dict[str, Any] = {}

        throttle = engine.progress_writer(run)
        try:
            family = for_family(run.params.get("family") or settings.default_model_family)
            request = family.build(run.job.kind, run.params, run.state["meta"], run.state).to_json()
            async for event in engine.call(run, settings.sampler_model, request, tensors=tensors):
                if event.type == "progress":
                    step, total = int(event.data.get("step", 0)), int(event.data.get("total", 0))
                    progress = {"stage": str(event.data.get("stage", "diffusion")), "step": step, "total": total}
                    await throttle.push(progress)
                    if step >= total:
                        await throttle.flush()
                elif event.type == "done":
                    done = event.data
                    audio = event.tensors.get("audio")
                    latents = event.tensors.get("latents")
            await throttle.flush()
        finally:
            await throttle.close()
        if audio is None:
            raise StageFailedError("the sampler finished without an audio tensor")
        audio = np.asarray(audio, dtype=np.float32)
        if audio.ndim == 2:
            audio = audio[None]
        if audio.ndim != 3 or audio.shape[1] != 2:
            raise StageFailedError(f"the sampler returned audio of shape {audio.shape}; expected [batch, 2, samples]")
        with disk_guard("audio", settings.data_dir, StageFailedError):
            await asyncio.to_thread(save_npy_atomic, directory / WAVEFORM, audio)
            if latents is not None and done.get("latent_shape"):  # each item's clip keeps its own (services/clips.py)
                shaped = np.asarray(latents, dtype=np.float32).reshape(-1, *[int(n) for n in done["latent_shape"]])
                await asyncio.to_thread(save_npy_atomic, directory / LATENTS, shaped)
        seeds = [int(s) for s in done.get("seeds") or run.params["seeds"]]
        run.state["audio"] = {
            "seeds": seeds,
            "sample_rate": int(done.get("sample_rate") or SAMPLE_RATE),
            "num_samples": int(audio.shape[-1]),
            "versions": done.get("versions") or {},
            "version_set": done.get("version_set") or run.params.get("version_set"),
            # False on a guidance-distilled (turbo) checkpoint: guidance_scale / use_adg were not applied.
            "guidance_applied": bool(done.get("guidance_applied", True)),
            # Per item {lrc, aligned_lyrics, alignment_score} when the request set align_lyrics.
            "alignment": done.get("alignment"),
            # Item i's track class when the request extracted several (track_names).
            "track_names": done.get("track_names"),
        }


class StagedPipeline:
    """Base of the pipelines (``song.py``, ``music.py``): the engine, the shared stages and post-processing. A
    subclass names its job ``kind`` and runs its stages in ``run``."""

    kind: str

    def __init__(self, engine: StageEngine, stages: SharedStages, post: Post) -> None:
        self._engine = engine
        self._stages = stages
        self._post = post

    async def run(self, run: Run) -> None:
        raise NotImplementedError
