"""The ACE-Step API's pipeline (job kind ``music``): [inspire] → metadata → audio → post.

1. ``lyrics``   — only with ``sample_mode``/``sample_query``: the ``lm`` in "inspire" mode writes caption, lyrics and
                  metadata from a description.
2. ``metadata`` — the user's values win, then the inspiration's; the ``lm`` fills what is missing ("metadata" mode)
                  or, with ``thinking``, also writes the 5 Hz audio codes ("thinking" mode; the user's codes win).
3. ``audio``, 4. ``post`` — shared (``stages.py``, ``post.py``).

An edit action's job (``params["edit"]``, ``edits.py``) adds ``stems`` before the metadata and ``splice`` or ``mix``
after the audio (``edit_stages.py``).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from orchestrator.families import clamp_duration
from orchestrator.schemas.acestep import TASKS_WITHOUT_LM_CODES
from orchestrator.services.jobs.edit_stages import EditStages
from orchestrator.services.jobs.engine import Run, StageEngine
from orchestrator.services.jobs.post import Post
from orchestrator.services.jobs.stages import META_KEYS, SharedStages, StagedPipeline, normal_meta


def _user_meta(p: Mapping[str, Any]) -> dict[str, Any]:
    return {
        "bpm": p.get("bpm"),
        "key_scale": p.get("key_scale"),
        "time_signature": p.get("time_signature"),
        "duration": p.get("audio_duration"),
    }


def _lm_sampling(p: Mapping[str, Any]) -> dict[str, Any]:
    return {
        "temperature": p["lm_temperature"],
        "cfg_scale": p["lm_cfg_scale"],
        "negative_prompt": p["lm_negative_prompt"],
        "top_k": p.get("lm_top_k") or None,
        "top_p": p["lm_top_p"],
        "repetition_penalty": p["lm_repetition_penalty"],
    }


class MusicPipeline(StagedPipeline):
    kind = "music"

    def __init__(self, engine: StageEngine, stages: SharedStages, post: Post) -> None:
        super().__init__(engine, stages, post)
        self._edits = EditStages(engine)

    async def run(self, run: Run) -> None:
        engine, p = self._engine, run.params
        edit = p.get("edit") or {}  # an edit action's job (services/jobs/edits.py)
        if p.get("sample_mode") or p.get("sample_query"):
            await engine.stage(run, "lyrics", self._inspire)
        if edit.get("keep_stem"):
            await engine.stage(run, "stems", self._edits.separate_source)
        await engine.stage(run, "metadata", self._metadata)
        await engine.stage(run, "audio", self._stages.audio)
        if edit.get("windows"):
            await engine.stage(run, "splice", self._edits.splice)
        if edit.get("keep_stem"):
            await engine.stage(run, "mix", self._edits.mix)
        await engine.stage(run, "post", self._post.post)
        await self._post.succeed(run)

    async def _inspire(self, run: Run) -> None:
        p = run.params
        description = p.get("sample_query") or p.get("caption") or "a song"
        filled = await self._stages.lm_metadata(
            run,
            caption=p.get("caption", ""),
            lyrics=p.get("lyrics", ""),
            known=_user_meta(p),
            language=p["vocal_language"],
            temperature=p["lm_temperature"],
            mode="inspire",
            extra={**_lm_sampling(p), "description": description},
        )
        run.state["plan"] = filled
        await self._engine.checkpoint(run, lyrics=filled.get("lyrics"), title=None)
        if filled.get("lyrics"):
            await self._engine.event(run, "lyrics", {"text": filled["lyrics"], "final": True})

    async def _metadata(self, run: Run) -> None:
        p = run.params
        plan = run.state.get("plan") or {}
        caption = str(plan.get("caption") or p.get("caption") or "")
        lyrics = "[Instrumental]" if p.get("instrumental") else str(plan.get("lyrics") or p.get("lyrics") or "")
        meta = _user_meta(p)
        for key in META_KEYS:
            if meta.get(key) is None and plan.get(key) is not None:
                meta[key] = plan[key]
        if meta.get("duration") is None and p.get("src_audio_seconds"):
            meta["duration"] = p["src_audio_seconds"]
        user_codes = [
            c
            for c in ([p["audio_code_string"]] if isinstance(p["audio_code_string"], str) else p["audio_code_string"])
            if c.strip()
        ]
        codes: str | list[str] | None = None
        want_codes = bool(p["thinking"]) and p["task_type"] not in TASKS_WITHOUT_LM_CODES
        if want_codes and user_codes:
            codes = user_codes[0] if len(user_codes) == 1 else user_codes  # the user's codes win over the LM's
        missing = any(meta.get(k) is None for k in META_KEYS)
        if (want_codes and codes is None) or missing:
            mode = "thinking" if want_codes and codes is None else "metadata"
            filled = await self._stages.lm_metadata(
                run,
                caption=caption,
                lyrics=lyrics,
                known=meta,
                language=p["vocal_language"],
                temperature=p["lm_temperature"],
                mode=mode,
                extra=_lm_sampling(p),
            )
            for key in META_KEYS:
                if meta.get(key) is None:
                    meta[key] = filled.get(key)
            if mode == "thinking":
                codes = filled.get("audio_codes") or None
            run.state["lm_metas"] = {k: v for k, v in filled.items() if k != "audio_codes"}
        meta = normal_meta(meta)
        meta["duration"] = clamp_duration(meta.get("duration") or 30.0)
        run.state["meta"] = meta
        run.state["caption"] = caption
        run.state["sampler_lyrics"] = lyrics
        run.state["codes"] = codes
