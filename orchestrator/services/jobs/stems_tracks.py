"""The stems job's second method, ``acestep``: ACE-Step 1.5's base DiT extracts each requested track class from the
song (``task_type: "extract"``, ``track_names``): one sampler request whose classes are one batch sharing every DiT
step (``docs/acestep-tracks.md``). The classes are ACE-Step's 12 (``vocals``, ``backing_vocals``, ``drums``, …); the
stems are named by them (``drums.wav``). Only a base checkpoint was trained for it: without a served base version set
the submission is a 422 naming ``method``.

:func:`tracks_params` checks a submission and gives the job's params; :func:`extract_tracks` is the ``separate``
stage of such a job (the HT-Demucs method is :class:`~orchestrator.services.jobs.stems.StemsPipeline`'s own).
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from orchestrator.errors import ApiError
from orchestrator.families import ACESTEP15, family_facts
from orchestrator.media.audio import SAMPLE_RATE, encode_audio
from orchestrator.services.jobs.engine import Run, StageEngine, StageFailedError
from orchestrator.services.model_catalog import describe_models, served_kinds
from orchestrator.services.storage import disk_guard
from orchestrator.services.triton import StageGateway

METHOD = "acestep"
TASK = "extract"


async def tracks_params(
    gateway: StageGateway, sampler_model: str, *, tracks: Sequence[str] | None, seed: int, steps: int | None
) -> dict[str, Any]:
    """The params of an ``acestep`` stems job for ``tracks`` (checked by the schema: ACE-Step's classes, no repeats):
    the served base version set that extracts them, the seed and the DiT steps; a 422 naming the field otherwise."""
    if not tracks:
        raise ApiError(422, "tracks: method 'acestep' extracts the track classes named in tracks, e.g. "
                       "tracks=vocals,drums,bass", field="tracks")
    described, error = await describe_models(gateway, sampler_model)
    if described is None:
        raise ApiError(503, f"method: the sampler cannot list its models now ({error}); try again", field="method")
    facts = family_facts(ACESTEP15)
    needed = facts.variants_for(TASK) or ()
    kinds = served_kinds(described, ACESTEP15)
    able = sorted(name for name, kind in kinds.items() if kind in needed)
    if not able:
        served = ", ".join(f"{name} ({kind})" for name, kind in sorted(kinds.items())) or "none"
        raise ApiError(
            422,
            f"method: 'acestep' extracts tracks with a {' or '.join(needed)} ACE-Step 1.5 checkpoint, and none is "
            f"served here (served: {served}); use method 'demucs', or export acestep-v15-base as version set 'base'",
            field="method",
        )
    return {
        "method": METHOD,
        "tracks": list(tracks),
        "stems": len(tracks),
        "version_set": able[0],
        "seed": seed,
        "inference_steps": steps or facts.steps_for(is_turbo=False),
    }


async def extract_tracks(engine: StageEngine, run: Run, audio: np.ndarray) -> dict[str, Any]:
    """The ``separate`` stage of an ``acestep`` job: one sampler request for every class, each item written as
    ``<class>.wav`` (32-bit float, level untouched); returns the stage's record (names, rate, length, checkpoint)."""
    p = run.params
    tracks = list(p["tracks"])
    request = {
        "family": ACESTEP15,
        "version_set": p["version_set"],
        "task_type": TASK,
        "track_names": tracks,
        "seeds": [int(p["seed"])],
        "inference_steps": int(p["inference_steps"]),
    }
    done: dict[str, Any] | None = None
    stems: np.ndarray | None = None
    progress = engine.progress_writer(run)
    try:
        async for event in engine.call(run, engine.settings.sampler_model, request, tensors={"src_audio": audio}):
            if event.type == "progress" and event.data.get("stage") == "diffusion":
                step, total = int(event.data.get("step", 0)), int(event.data.get("total", 0))
                await progress.push({"stage": "separate", "step": step, "total": total})
            elif event.type == "done":
                done, stems = event.data, event.tensors.get("audio")
        await progress.flush()
    finally:
        await progress.close()
    if done is None or stems is None or stems.ndim != 3 or stems.shape[0] != len(tracks):
        shape = None if stems is None else stems.shape
        raise StageFailedError(f"the sampler sent {shape} for the {len(tracks)} tracks {tracks}")
    directory = engine.job_dir(run)
    with disk_guard("separate", engine.settings.data_dir, StageFailedError):
        for name, wave in zip(tracks, stems, strict=True):
            await asyncio.to_thread(_write, directory / f"{name}.wav", np.asarray(wave, dtype=np.float32))
    return {
        "names": tracks,
        "sample_rate": int(done.get("sample_rate") or SAMPLE_RATE),
        "num_samples": int(done.get("num_samples") or stems.shape[-1]),
        "checkpoint": f"{ACESTEP15}:{done.get('version_set') or p['version_set']}",
    }


def _write(path: Path, wave: np.ndarray) -> None:
    encode_audio(wave, sample_rate=SAMPLE_RATE, fmt="wav32", path=path, fit=False)
