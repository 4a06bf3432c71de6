"""Post-processing: every item encoded (flac/wav/wav32/mp3), the cover art, and the job's result.

The cover is made alongside the audio: an external image API (``cover_api_url``) is called while the sampler runs
(:meth:`Post.external_cover`, started by the song pipeline); the built-in renderer, which also draws from the audio,
runs in parallel with the encoding.
"""

from __future__ import annotations

import asyncio
import logging
from pathlib import Path
from typing import Any

import numpy as np

from orchestrator.families import checkpoint_name
from orchestrator.media.audio import encode_audio
from orchestrator.media.cover import render_cover
from orchestrator.media.cover_fetch import fetch_cover
from orchestrator.services.jobs.engine import Run, StageEngine, StageFailedError
from orchestrator.services.jobs.lyric_files import item_lyrics
from orchestrator.services.jobs.tagging import tag_items
from orchestrator.services.storage import WAVEFORM, disk_guard, drop_waveform

logger = logging.getLogger(__name__)

_AUDIO_EXT = {"flac": ".flac", "wav": ".wav", "wav32": ".wav", "mp3": ".mp3"}
TURBO_GUIDANCE_WARNING = (
    "guidance_scale and use_adg were not applied: the checkpoint is guidance-distilled (turbo) and runs without "
    "classifier-free guidance"
)


class Post:
    def __init__(self, engine: StageEngine) -> None:
        self._engine = engine

    async def external_cover(self, run: Run) -> Path | None:
        settings = self._engine.settings
        plan = run.state.get("plan") or {}
        title = str(run.state.get("title") or plan.get("title") or run.params.get("theme", ""))
        prompt = f"Album cover art for the song '{title}'. {run.state.get('caption', '')}".strip()
        path = self._engine.job_dir(run) / "cover.png"
        assert settings.cover_api_url is not None
        try:
            return await fetch_cover(
                url=settings.cover_api_url,
                prompt=prompt,
                aspect=run.params["cover_size"],
                path=path,
                timeout_s=settings.cover_timeout_s,
            )
        except Exception as exc:  # the built-in renderer takes over
            logger.warning("job %s: cover API failed (%s); using the built-in renderer", run.job.public_id, exc)
            return None

    async def post(self, run: Run) -> None:
        """Encode every item; with ``generate_cover`` (the song API's) also the cover, in parallel."""
        p, info = run.params, run.state["audio"]
        directory = self._engine.job_dir(run)
        audio = await asyncio.to_thread(np.load, directory / WAVEFORM)
        fmt = p["audio_format"]
        total = int(audio.shape[0])
        await self._engine.update(run, progress={"stage": "encode", "step": 0, "total": total})
        # A track batch (extract of several classes): item i is class tracks[i], its file named by it (drums.wav).
        tracks = list(info.get("track_names") or [])

        def encode(index: int) -> dict[str, Any]:
            stem = tracks[index] if index < len(tracks) else f"item_{index}"
            target = directory / f"{stem}{_AUDIO_EXT[fmt]}"
            written = encode_audio(audio[index], sample_rate=info["sample_rate"], fmt=fmt, path=target)
            return ({"track_name": tracks[index]} if index < len(tracks) else {}) | {
                "index": index,
                "file": written.name,
                "format": fmt,
                "duration": round(info["num_samples"] / info["sample_rate"], 3),
                "seed": info["seeds"][index] if index < len(info["seeds"]) else None,
            } | item_lyrics(info.get("alignment"), index, written)

        jobs: list[Any] = [asyncio.to_thread(encode, i) for i in range(total)]
        want_cover = bool(p.get("generate_cover"))
        if want_cover:
            jobs.append(self._cover(run, audio[0], info["sample_rate"]))
        with disk_guard("post", self._engine.settings.data_dir, StageFailedError):
            results = await asyncio.gather(*jobs)
        run.state["items"] = results[:total]
        run.state["cover"] = results[total].name if want_cover and results[total] is not None else None
        await asyncio.to_thread(self._tag, run, directory)
        await self._engine.update(run, progress={"stage": "encode", "step": total, "total": total})

    def _tag(self, run: Run, directory: Path) -> None:
        """Title, artist/album, lyrics (timed where the format can hold it), cover, seed and model in every file."""
        settings, p = self._engine.settings, run.params
        cover = run.state.get("cover")
        tag_items(
            directory,
            run.state["items"],
            title=str(run.state.get("title") or (run.state.get("plan") or {}).get("title") or p.get("theme") or ""),
            artist=settings.tag_artist,
            album=settings.tag_album,
            lyrics=str((run.state.get("plan") or {}).get("lyrics") or run.state.get("sampler_lyrics") or ""),
            model=checkpoint_name(p.get("family") or "", run.state["audio"].get("version_set")),
            cover=directory / cover if cover else None,
            language=p.get("vocal_language") or p.get("language"),
        )

    async def _cover(self, run: Run, audio: np.ndarray, sample_rate: int) -> Path | None:
        if run.cover_task is not None:
            external = await run.cover_task
            if external is not None:
                return external
        title = str(run.state.get("title") or run.params.get("theme", ""))
        path = self._engine.job_dir(run) / "cover.png"
        return await asyncio.to_thread(
            render_cover,
            title=title,
            caption=str(run.state.get("caption", "")),
            audio=audio,
            sample_rate=sample_rate,
            aspect=run.params["cover_size"],
            path=path,
            seed=int(run.params["seeds"][0]),
        )

    async def succeed(self, run: Run) -> None:
        """The job's result from its finished stages, written as it succeeds."""
        p, meta, info = run.params, run.state["meta"], run.state["audio"]
        guided = info.get("guidance_applied", True)
        warnings = [] if guided else [TURBO_GUIDANCE_WARNING]
        result = {
            "title": run.state.get("title"),
            "caption": run.state.get("caption"),
            "lyrics": (run.state.get("plan") or {}).get("lyrics") or run.state.get("sampler_lyrics"),
            "metadata": {**meta, "seeds": info["seeds"]},
            "items": run.state["items"],
            "cover": run.state.get("cover"),
            "versions": info.get("versions") or {},
            # What produced the audio: the model under the name clients know, its version set and network versions
            # (a canary pinned per request shows here), and the LM if one ran.
            "model": {
                "name": checkpoint_name(p.get("family") or "", info.get("version_set")),
                "family": p.get("family"),
                "version_set": info.get("version_set"),
                "versions": info.get("versions") or {},
                "requested": p.get("model_requested"),
                "fallback": bool(p.get("model_fallback")),
            },
            "lm_model": run.state.get("lm_model"),
            # what the client asked for as lm_model_path / lm_backend, and whether an upstream name ran on the served LM
            "lm_requested": (p.get("lm") or {}).get("requested"),
            "lm_fallback": bool((p.get("lm") or {}).get("fallback")),
            "lm_metas": run.state.get("lm_metas"),
            "generation_info": (
                f"Steps: {p['inference_steps']}, "
                + (f"Scale: {p['guidance_scale']}, " if guided else "Scale: not applied (turbo), ")
                + (f"Shift: {p['shift']}, " if "shift" in p else "")
                + (f"ADG: {p['use_adg']}, " if guided else "ADG: not applied (turbo), ")
                + f"Seeds: {','.join(map(str, info['seeds']))}, Family: {p.get('family')}"
            ),
            "warnings": warnings,
        }
        for warning in warnings:
            await self._engine.event(run, "warning", {"message": warning})
        await self._engine.succeed(run, result)
        # Every item is encoded and the job is done: the float waveform (the largest file by far) can go.
        await asyncio.to_thread(drop_waveform, self._engine.job_dir(run))
