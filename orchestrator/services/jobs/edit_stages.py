"""The stages an edit job (``services/jobs/edits.py``) adds to the ACE-Step pipeline (``music.py``), driven by the
job's ``params["edit"]``:

- ``stems``  (swaps, before the audio stage) — the source split by the served ``separator`` into vocals +
  instrumental; the stem the swap keeps becomes the sampler's ``src_audio`` (the context lego/complete sing over);
- ``splice`` (extend, replace_section, after the audio stage) — the source put back outside the edited windows,
  sample-exact, with a :data:`~orchestrator.media.splice.CROSSFADE_S` crossfade inside them;
- ``mix``    (swaps, after the audio stage) — the sampler's output split again, its new stem (the new vocals or the new
  accompaniment) added to the kept stem.

Each stage is idempotent: the sampler's raw output is kept as ``generated.npy`` and the kept stem as
``kept_stem.npy``, so a stage re-run after a restart computes the same result.
"""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import numpy as np

from orchestrator.media.audio import SAMPLE_RATE
from orchestrator.media.splice import mix, splice
from orchestrator.services.jobs.engine import Run, StageEngine, StageFailedError
from orchestrator.services.storage import LATENTS, WAVEFORM, load_upload, save_npy_atomic, save_upload

SEPARATOR_MODEL = "separator"
TWO_STEMS = 2  # the separator's vocals + instrumental set
KEPT_STEM = "kept_stem.npy"
GENERATED = "generated.npy"


class EditStages:
    def __init__(self, engine: StageEngine) -> None:
        self._engine = engine

    async def _stems(self, run: Run, audio: np.ndarray) -> dict[str, np.ndarray]:
        """``audio`` [2, S] at 48 kHz -> {"vocals": [2, S], "instrumental": [2, S]} from the served separator."""
        stems: dict[str, np.ndarray] = {}
        request = {"stems": TWO_STEMS, "sample_rate": SAMPLE_RATE}
        async for event in self._engine.call(run, SEPARATOR_MODEL, request, tensors={"audio": audio}):
            if event.type == "stem":
                stems[str(event.data.get("name"))] = np.asarray(event.tensors["audio"], np.float32)
        if set(stems) != {"vocals", "instrumental"}:
            raise StageFailedError(f"the separator answered stems {sorted(stems)}; expected vocals and instrumental")
        return stems

    async def separate_source(self, run: Run) -> None:
        edit: dict[str, Any] = run.params["edit"]
        directory = self._engine.job_dir(run)
        kept_path = directory / KEPT_STEM
        if not kept_path.is_file():
            source = await asyncio.to_thread(load_upload, directory, "src_audio")
            stems = await self._stems(run, source)
            await asyncio.to_thread(save_npy_atomic, kept_path, stems[edit["keep_stem"]])
        kept = await asyncio.to_thread(np.load, kept_path)
        await asyncio.to_thread(save_upload, directory, "src_audio", kept)

    async def _generated(self, directory: Path) -> np.ndarray:
        """The sampler's own output [B, 2, S], kept aside the first time a stage rewrites ``audio.npy``."""
        raw = directory / GENERATED
        if not raw.is_file():
            await asyncio.to_thread(save_npy_atomic, raw, np.load(directory / WAVEFORM))
        return await asyncio.to_thread(np.load, raw)

    async def splice(self, run: Run) -> None:
        edit: dict[str, Any] = run.params["edit"]
        directory = self._engine.job_dir(run)
        generated = await self._generated(directory)
        source = await asyncio.to_thread(load_upload, directory, "src_audio")
        windows = [(float(a), float(b)) for a, b in edit["windows"]]
        # the result is as long as the sampler's source (extend: already padded to the target duration)
        out = splice(
            source, generated, windows, rate=SAMPLE_RATE, crossfade_s=float(edit["crossfade_s"]),
            length=source.shape[-1],
        )
        await self._keep(run, directory, out)

    async def mix(self, run: Run) -> None:
        edit: dict[str, Any] = run.params["edit"]
        directory = self._engine.job_dir(run)
        generated = await self._generated(directory)
        kept = await asyncio.to_thread(np.load, directory / KEPT_STEM)
        new = np.stack([(await self._stems(run, item))[edit["new_stem"]] for item in generated])
        await self._keep(run, directory, mix(kept, new))

    @staticmethod
    async def _keep(run: Run, directory: Path, audio: np.ndarray) -> None:
        """The edited waveform replaces the sampler's; its latents no longer decode to it, so the clips do not get
        them (they would start a later edit from the wrong audio)."""
        await asyncio.to_thread(save_npy_atomic, directory / WAVEFORM, audio)
        (directory / LATENTS).unlink(missing_ok=True)
        run.state["audio"]["num_samples"] = int(audio.shape[-1])
