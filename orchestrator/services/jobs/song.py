"""The song API's pipeline (job kind ``song``): lyrics → metadata → audio → post.

1. ``lyrics``   — the ``lyricist`` streams lyrics into the job (throttled writes), then a plan (title, caption,
                  metadata); ``instrumental_quick`` skips it with a caption from theme and style.
2. ``metadata`` — bpm / key / time signature / duration: the user's values win, the plan's come next, the ``lm``
                  fills what is still missing.
3. ``audio``, 4. ``post`` — shared (``stages.py``, ``post.py``); the external cover API runs beside the sampler.
"""

from __future__ import annotations

import asyncio
import re
from typing import Any

from orchestrator.families import clamp_duration
from orchestrator.services.jobs.engine import Run, StageFailedError, Throttle
from orchestrator.services.jobs.stages import StagedPipeline, normal_meta

LYRICS_FLUSH_S = 0.25  # streamed lyrics reach the database (and the SSE stream) at most this often


def caption_with_tracks(caption: str, track_classes: list[str] | None) -> str:
    """Append the featured instruments as hints (skipping any the caption already names)."""
    if not track_classes:
        return caption
    lower = caption.lower()
    names = [t.replace("_", " ") for t in track_classes if t.replace("_", " ") not in lower]
    if not names:
        return caption
    hint = "featuring " + ", ".join(names)
    return f"{caption.rstrip(' ,.')}, {hint}" if caption.strip() else hint


def structure_only(lyrics: str) -> str:
    """Section tags without the words: shapes an instrumental after the written song (vocal_mode
    instrumental_from_lyrics)."""
    tags = [line.strip() for line in lyrics.splitlines() if re.fullmatch(r"\[[^\]]+\]", line.strip())]
    return "\n\n".join(tags) if tags else "[Instrumental]"


class SongPipeline(StagedPipeline):
    kind = "song"

    async def run(self, run: Run) -> None:
        engine, p = self._engine, run.params
        await engine.stage(run, "lyrics", self._lyrics)
        await engine.stage(run, "metadata", self._metadata)
        if p.get("generate_cover") and engine.settings.cover_api_url and "post" not in run.done:
            run.cover_task = asyncio.create_task(self._post.external_cover(run))
        await engine.stage(run, "audio", self._stages.audio)
        await engine.stage(run, "post", self._post.post)
        await self._post.succeed(run)

    async def _lyrics(self, run: Run) -> None:
        engine, p = self._engine, run.params
        if p["vocal_mode"] == "instrumental_quick":
            caption = ", ".join(x for x in (p.get("style"), p["theme"]) if x) + ", instrumental"
            run.state["plan"] = {"title": p["theme"][:60], "caption": caption, "lyrics": "[Instrumental]"}
            await engine.checkpoint(run, title=run.state["plan"]["title"], lyrics="")
            return
        request = {
            "theme": p["theme"],
            "language": p["language"],
            "rhyme": p.get("rhyme"),
            "style": p.get("style"),
            "vocal_gender": p["vocal_gender"],
            "duration_hint": p.get("duration") or p["duration_hint"],
            "additional_instructions": p.get("additional_instructions"),
            "temperature": p["temperature"],
            "expand_theme": p.get("expand_theme", True),
            "seed": p["seeds"][0],
            "vocal_mode": p["vocal_mode"],
            "track_classes": p.get("track_classes"),
            # The user's own values bind the plan too (they win over anything the lyricist would pick).
            "bpm": p.get("bpm"),
            "key_scale": p.get("key_scale"),
            "duration": p.get("duration"),
        }

        async def write(text: str) -> None:
            await engine.update(run, lyrics=text)
            await engine.event(run, "lyrics", {"text": text})

        throttle = Throttle(LYRICS_FLUSH_S, write)
        plan: dict[str, Any] | None = None
        try:
            async for event in engine.call(run, engine.settings.lyricist_model, request):
                if event.type == "delta" and event.data.get("lyrics_so_far"):
                    await throttle.push(str(event.data["lyrics_so_far"]))
                elif event.type == "plan":
                    plan = dict(event.data.get("plan") or {})
        finally:
            await throttle.close()
        if not plan or not str(plan.get("lyrics", "")).strip():
            raise StageFailedError("the lyricist finished without a plan (no lyrics came back)")
        run.state["plan"] = plan
        await engine.checkpoint(run, lyrics=plan["lyrics"], title=plan.get("title"))
        await engine.event(run, "lyrics", {"text": plan["lyrics"], "final": True, "title": plan.get("title")})

    async def _metadata(self, run: Run) -> None:
        p, plan = run.params, run.state["plan"]
        meta = {
            "bpm": p.get("bpm") or plan.get("bpm"),
            "key_scale": p.get("key_scale") or plan.get("key_scale"),
            "time_signature": plan.get("time_signature"),
            "duration": p.get("duration") or plan.get("duration") or p["duration_hint"],
        }
        caption = caption_with_tracks(str(plan.get("caption") or p["theme"]), p.get("track_classes"))
        if p["vocal_mode"] != "sing" and "instrumental" not in caption.lower():
            caption += ", instrumental"
        if any(meta[k] is None for k in ("bpm", "key_scale", "time_signature")):
            filled = await self._stages.lm_metadata(
                run,
                caption=caption,
                lyrics=str(plan.get("lyrics", "")),
                known=meta,
                language=p["language"],
                temperature=p["temperature"],
            )
            meta = {k: meta[k] if meta[k] is not None else filled.get(k) for k in meta}
        meta = normal_meta(meta)
        meta["duration"] = clamp_duration(meta["duration"])
        lyrics = str(plan.get("lyrics", ""))
        sung = {"sing": lyrics, "instrumental_from_lyrics": structure_only(lyrics)}.get(
            p["vocal_mode"], "[Instrumental]"
        )
        run.state["meta"] = meta
        run.state["caption"] = caption
        run.state["sampler_lyrics"] = sung
        run.state["title"] = plan.get("title") or p["theme"][:60]
