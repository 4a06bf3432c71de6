"""The edit actions on a song: one function per action turning (owner, source, the action's fields) into a durable
job on the ACE-Step pipeline (job kind ``music``, so progress, events, webhooks, ``GET /v1/jobs/{id}`` and the
clip registration of its items work as for any ACE-Step job). ``params["edit"]`` says what the edit adds to the
pipeline (``edit_stages.py``) and, for the clips, ``parent`` (the source clip, when there is one) and ``action``.

- ``extend``             — the source cut at ``continue_at`` and padded with silence to ``duration``, the padding
  repainted (both families), the kept part spliced back sample-exact (``splice``);
- ``replace_section``    — ``repaint`` of ``replace_section_start..end`` (both families), the rest spliced back;
- ``variation``          — ACE-Step 1.5 ``cover`` of the source with its own caption/lyrics, a new seed and
  ``audio_cover_strength = closeness``;
- ``cover``              — ACE-Step 1.5 ``cover`` with new lyrics/style, ``audio_cover_strength = cover_strength``;
- ``swap_vocals``        — the source's instrumental (``separator``) as context of ``lego`` (track ``vocals``),
  the new vocals split from its output and mixed over the kept instrumental (a *base* DiT only);
- ``swap_instrumentals`` — the source's vocals as context of ``complete`` (``tracks``), the new accompaniment split
  from its output and mixed under the kept vocals (a *base* DiT only).

The knobs (``docs/edits.md``): ``weirdness`` -> ``shift``, ``sound_strength`` -> ``guidance_scale``,
``lyrics_strength`` -> the lyric guidance (1.5: ``lyric_guidance``; v1: ``guidance_scale_lyric``) — see
:func:`knob_params`.
"""

from __future__ import annotations

import asyncio
import io
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
import soundfile as sf

from orchestrator import store
from orchestrator.db import Job
from orchestrator.errors import ApiError
from orchestrator.families import (
    ACESTEP15,
    ACESTEP_V1,
    MAX_DURATION_S,
    MIN_DURATION_S,
    family_facts,
    parse_model,
    variant_kind,
)
from orchestrator.media.audio import SAMPLE_RATE, decode_audio
from orchestrator.media.splice import CROSSFADE_S
from orchestrator.schemas.acestep import MusicGenerateCreate
from orchestrator.schemas.edits import (
    AnyEdit,
    CoverEdit,
    EditBase,
    ExtendEdit,
    ReplaceSectionEdit,
    SwapInstrumentalsEdit,
    SwapVocalsEdit,
    VariationEdit,
)
from orchestrator.services import clips
from orchestrator.services.jobs.engine import job_dir
from orchestrator.services.jobs.submit import Submitter, result_file_key
from orchestrator.services.model_catalog import describe_models, resolve_model

EXTEND_DEFAULT_S = 30.0  # an extend without ``duration`` adds this much after continue_at
DEFAULT_ACCOMPANIMENT = ("drums", "bass", "keyboard", "guitar")
# The knobs' neutral points: there the mapped parameter takes its usual default (docs/edits.md).
SOUND_NEUTRAL, LYRICS_NEUTRAL = 0.7, 0.7
V1_MAX_GUIDANCE = 30.0  # the sampler's bound on v1's guidance scales


@dataclass(frozen=True)
class EditSource:
    """The song an edit starts from: its 48 kHz stereo audio and what is known of how it was made."""

    audio: np.ndarray  # [2, samples] float32, 48 kHz
    clip_id: str | None = None
    caption: str = ""
    lyrics: str = ""
    model: str | None = None
    bpm: int | None = None
    key_scale: str | None = None
    time_signature: str | None = None
    latents_family: str | None = None  # the family whose sampler can start from the clip's kept latents
    field: str = "source"  # the request field that named it (errors about the source name it)

    @property
    def seconds(self) -> float:
        return self.audio.shape[-1] / SAMPLE_RATE


def _lyric_guidance(strength: float) -> float:
    """lyrics_strength 0..1 -> lyric guidance: 0 -> 0 (lyrics without effect), 0.7 -> 1 (the model's own balance),
    1 -> 3 (the lyric direction tripled); linear in between."""
    if strength <= LYRICS_NEUTRAL:
        return strength / LYRICS_NEUTRAL
    return 1.0 + 2.0 * (strength - LYRICS_NEUTRAL) / (1.0 - LYRICS_NEUTRAL)


def knob_params(edit: EditBase, *, family: str, turbo: bool, variant: str) -> dict[str, Any]:
    """The sampler parameters the knobs set (none set -> none changed); a knob the served model would not apply is a
    422 naming it and the variant."""
    out: dict[str, Any] = {}
    if edit.weirdness is not None:
        out["shift"] = 1.0 + 4.0 * edit.weirdness  # 0 -> 1 (no shift), 0.5 -> 3 (the default), 1 -> 5
    default_guidance = family_facts(family).default_guidance
    if edit.sound_strength is not None:
        if turbo:
            raise ApiError(
                422,
                f"sound_strength: maps to guidance_scale, which the {variant} version set does not apply (guidance "
                "is distilled into turbo DiTs); choose a base or sft model, or leave sound_strength out",
                field="sound_strength",
            )
        out["guidance_scale"] = edit.sound_strength / SOUND_NEUTRAL * default_guidance
    if edit.lyrics_strength is not None:
        if family == ACESTEP_V1:
            # v1's double-condition guidance: uncond + text * (text_only - uncond) + lyric * (cond - text_only);
            # lyric = text is plain guidance; it runs only with both above 1, so the weakest lyric weight is 1.01.
            scale = out.get("guidance_scale", default_guidance)
            out["guidance_scale_text"] = scale
            out["guidance_scale_lyric"] = min(V1_MAX_GUIDANCE, max(1.01, scale * _lyric_guidance(edit.lyrics_strength)))
        else:
            out["lyric_guidance"] = _lyric_guidance(edit.lyrics_strength)
    return out


class EditSubmitter:
    """The edit actions over a :class:`Submitter` (the service's ``JobService``)."""

    def __init__(self, jobs: Submitter) -> None:
        self._jobs = jobs

    async def submit(self, *, owner: str, source: EditSource, edit: AnyEdit) -> Job:
        """``edit``'s action on ``source`` (the router's entry point)."""
        if isinstance(edit, ExtendEdit):
            return await self.extend(owner=owner, source=source, edit=edit)
        if isinstance(edit, ReplaceSectionEdit):
            return await self.replace_section(owner=owner, source=source, edit=edit)
        if isinstance(edit, VariationEdit):
            return await self.variation(owner=owner, source=source, edit=edit)
        if isinstance(edit, CoverEdit):
            return await self.cover(owner=owner, source=source, edit=edit)
        if isinstance(edit, SwapVocalsEdit):
            return await self.swap_vocals(owner=owner, source=source, edit=edit)
        return await self.swap_instrumentals(owner=owner, source=source, edit=edit)

    # ---- the actions -----------------------------------------------------------------------------------------------
    async def extend(self, *, owner: str, source: EditSource, edit: ExtendEdit) -> Job:
        keep = source.seconds if edit.continue_at is None else edit.continue_at
        if keep > source.seconds + 1e-6:
            raise ApiError(
                422, f"continue_at: {keep:g} s lies past the source's end ({source.seconds:.2f} s)", field="continue_at"
            )
        total = edit.duration if edit.duration is not None else keep + EXTEND_DEFAULT_S
        family, _ = await self._model(source, edit)
        limit = min(MAX_DURATION_S, family_facts(family).max_duration_s)
        if total > limit:
            raise ApiError(422, f"duration: {family} generates at most {limit:g} s, got {total:g}", field="duration")
        if total <= keep + 1.0:
            raise ApiError(
                422, f"duration: must be more than continue_at + 1 s ({keep:g} + 1), got {total:g}", field="duration"
            )
        audio = np.zeros((2, int(round(total * SAMPLE_RATE))), np.float32)
        cut = int(round(keep * SAMPLE_RATE))
        audio[:, :cut] = source.audio[:, :cut]
        fields = {"task_type": "repaint", "repainting_start": keep, "repainting_end": total, "audio_duration": total}
        windows = [(keep, total)]
        return await self._submit(owner, source, edit, fields, audio=audio, windows=windows)

    async def replace_section(self, *, owner: str, source: EditSource, edit: ReplaceSectionEdit) -> Job:
        start, end = edit.replace_section_start, edit.replace_section_end
        if end > source.seconds + 1e-6:
            raise ApiError(
                422,
                f"replace_section_end: {end:g} s lies past the source's end ({source.seconds:.2f} s); to add audio "
                "after it use action 'extend'",
                field="replace_section_end",
            )
        fields = {"task_type": "repaint", "repainting_start": start, "repainting_end": end}
        return await self._submit(owner, source, edit, fields, windows=[(start, end)])

    async def variation(self, *, owner: str, source: EditSource, edit: VariationEdit) -> Job:
        await self._needs_15(source, edit)
        fields = {"task_type": "cover", "audio_cover_strength": edit.closeness}
        return await self._submit(owner, source, edit, fields)

    async def cover(self, *, owner: str, source: EditSource, edit: CoverEdit) -> Job:
        await self._needs_15(source, edit)
        fields = {"task_type": "cover", "audio_cover_strength": edit.cover_strength}
        return await self._submit(owner, source, edit, fields)

    async def swap_vocals(self, *, owner: str, source: EditSource, edit: SwapVocalsEdit) -> Job:
        await self._needs_task(source, edit, "lego")
        style = edit.style if edit.style is not None else source.caption
        if edit.gender:
            style = f"{style}, {edit.gender} vocals".strip(", ")
        fields = {"task_type": "lego", "track_name": "vocals", "caption": style}
        stems = {"keep_stem": "instrumental", "new_stem": "vocals"}
        return await self._submit(owner, source, edit, fields, stems=stems)

    async def swap_instrumentals(self, *, owner: str, source: EditSource, edit: SwapInstrumentalsEdit) -> Job:
        await self._needs_task(source, edit, "complete")
        fields = {"task_type": "complete", "complete_track_classes": list(edit.tracks or DEFAULT_ACCOMPANIMENT)}
        stems = {"keep_stem": "vocals", "new_stem": "instrumental"}
        return await self._submit(owner, source, edit, fields, stems=stems)

    # ---- shared ----------------------------------------------------------------------------------------------------
    async def _model(self, source: EditSource, edit: EditBase) -> tuple[str, str]:
        """(family, the model name the job asks for): the edit's ``model``, else the source's, else the default."""
        requested = edit.model or source.model or self._jobs.deps.settings.default_model
        try:
            return parse_model(requested).family, requested
        except ValueError as exc:
            raise ApiError(422, f"model: {exc}", field="model") from None

    async def _served(self, requested: str) -> tuple[str, dict[str, Any], dict[str, str]] | None:
        """(version set name, its catalog entry, every served set of the family -> its variant kind) for the model
        ``requested``; None when the sampler cannot describe itself (the request is then sent as is)."""
        deps = self._jobs.deps
        choice = parse_model(requested)
        described, _ = await describe_models(deps.gateway, deps.settings.sampler_model)
        if described is None:
            return None
        resolved = resolve_model(choice, requested, described)
        info = (described.get("families") or {}).get(resolved.family) or {}
        sets: dict[str, Any] = info.get("version_sets") or {}
        name = resolved.version_set or info.get("default_version_set")
        if name not in sets:
            return None
        kinds = {n: variant_kind(e.get("variant"), is_turbo=e.get("is_turbo")) for n, e in sets.items()}
        return str(name), dict(sets[name]), kinds

    async def _needs_15(self, source: EditSource, edit: EditBase) -> None:
        family, requested = await self._model(source, edit)
        if family != ACESTEP15:
            raise ApiError(
                422,
                f"action: {edit.action} uses ACE-Step 1.5's cover task, which {requested} ({family}) does not have; "
                f"set model to an {ACESTEP15} model",
                field="action",
            )

    async def _needs_task(self, source: EditSource, edit: EditBase, task: str) -> None:
        """The track tasks run on base DiTs only: a 422 naming the served variant and the sets that have it."""
        await self._needs_15(source, edit)
        _, requested = await self._model(source, edit)
        served = await self._served(requested)
        if served is None:
            return  # no catalog to check against: the sampler's own error will name the variant
        name, entry, sets = served
        refusal = family_facts(ACESTEP15).variant_refusal(
            task, version_set=name, variant=entry.get("variant"), is_turbo=entry.get("is_turbo"), served=sets
        )
        if refusal is not None:
            raise ApiError(422, f"action: {edit.action} runs ACE-Step's '{task}' track task: {refusal}", field="action")

    async def _submit(
        self,
        owner: str,
        source: EditSource,
        edit: AnyEdit,
        fields: Mapping[str, Any],
        *,
        audio: np.ndarray | None = None,
        windows: list[tuple[float, float]] | None = None,
        stems: Mapping[str, str] | None = None,
    ) -> Job:
        family, requested = await self._model(source, edit)
        seconds = source.seconds if audio is None else audio.shape[-1] / SAMPLE_RATE
        if seconds < MIN_DURATION_S:  # the result is as long as its source: below what the families generate
            name = source.field if audio is None else "duration"
            raise ApiError(
                422,
                f"{name}: the result would be {seconds:.2f} s; edits make songs of {MIN_DURATION_S:g}-"
                f"{MAX_DURATION_S:g} s (extend a shorter clip first: action 'extend' with a duration)",
                field=name,
            )
        served = await self._served(requested)
        name, entry, _ = served if served is not None else ("default", {}, {})
        turbo = bool(entry.get("is_turbo"))
        variant = f"{name!r} ({variant_kind(entry.get('variant'), is_turbo=entry.get('is_turbo'))})"
        lyrics = getattr(edit, "lyrics", None)
        style = getattr(edit, "style", None)
        body: dict[str, Any] = {
            "model": requested,
            "caption": style if style is not None else source.caption,
            "lyrics": lyrics if lyrics is not None else source.lyrics,
            "instrumental": bool(getattr(edit, "instrumental", False)),
            "bpm": source.bpm,
            "key_scale": source.key_scale,
            "time_signature": source.time_signature,
            "audio_duration": seconds,
            "audio_format": edit.audio_format,
            "callback_url": edit.callback_url,
            "batch_size": 1,
            **({"inference_steps": edit.inference_steps} if edit.inference_steps is not None else {}),
            **({"seed": edit.seed, "use_random_seed": False} if edit.seed is not None else {}),
            **fields,
        }
        knobs = knob_params(edit, family=family, turbo=turbo, variant=variant)
        body.update({k: v for k, v in knobs.items() if k in MusicGenerateCreate.model_fields})
        request = MusicGenerateCreate.model_validate(body)
        extra = {k: v for k, v in knobs.items() if k not in MusicGenerateCreate.model_fields}
        if audio is None and not stems and source.clip_id and source.latents_family == family:
            # the sampler gets the clip's audio unchanged: it starts from the clip's latents (where kept), no re-encode
            extra["src_latents_clip"] = source.clip_id
        plan: dict[str, Any] = {"action": edit.action, "parent": source.clip_id, "knobs": knobs}
        if windows:
            plan |= {"windows": [list(w) for w in windows], "crossfade_s": CROSSFADE_S}
        if stems:
            plan |= dict(stems)
        wave = source.audio if audio is None else audio
        return await self._jobs.submit_music(
            owner=owner,
            body=request,
            uploads={"src_audio": wav_bytes(wave)},
            # the clip registration's lineage (services/clips.py): parent clip + the action that made the result
            extra_params={**extra, "edit": plan, "clip_action": edit.action, "parent_clip_id": source.clip_id},
        )


def wav_bytes(audio: np.ndarray) -> bytes:
    """``audio`` [2, S] as a 48 kHz float WAV: the submission decodes it back without loss."""
    buffer = io.BytesIO()
    sf.write(buffer, np.ascontiguousarray(audio.T), SAMPLE_RATE, format="WAV", subtype="FLOAT")
    return buffer.getvalue()


async def source_from_result(jobs: Submitter, *, owner: str, value: str, field: str = "source") -> EditSource:
    """One of ``owner``'s finished results (``<job id>/<file>``, or the ``file``/URL a result handed out) as the
    source of an edit: its audio and the caption, lyrics, metadata and model of the job that made it."""
    key = result_file_key(value)
    if key is None:
        raise ApiError(
            422, f"{field}: {value!r} is neither a clip id nor a result path ('<job id>/<file>')", field=field
        )
    job_id, name = key
    deps = jobs.deps
    async with deps.sessions() as session:
        job = await store.get_job(session=session, public_id=job_id, owner=owner)
    result: dict[str, Any] = (job.result or {}) if job is not None else {}
    item = next((i for i in result.get("items", []) if i.get("file") == name), None)
    if job is None or item is None:
        raise ApiError(404, f"{field}: {value!r} is not one of your results (no such job or file)", field=field)
    if item.get("clip_id"):  # the item's clip: the edit's parent, with its lossless audio and latents
        return await source_from_clip(jobs, owner=owner, clip_id=str(item["clip_id"]), field=field)
    path = job_dir(deps.settings, job_id) / name
    if not path.is_file():
        raise ApiError(404, f"{field}: the result file {job_id}/{name} is gone", field=field)
    audio = await asyncio.to_thread(decode_audio, await asyncio.to_thread(path.read_bytes), target_rate=SAMPLE_RATE)
    meta = result.get("metadata") or {}
    params = job.params or {}
    family, version_set = params.get("family"), (result.get("model") or {}).get("version_set")
    return EditSource(
        audio=np.asarray(audio, np.float32),
        caption=str(result.get("caption") or ""),
        lyrics=str(result.get("lyrics") or ""),
        model=f"{family}:{version_set}" if family and version_set else family,
        bpm=meta.get("bpm"),
        key_scale=meta.get("key_scale"),
        time_signature=meta.get("time_signature"),
        field=field,
    )


async def source_from_clip(jobs: Submitter, *, owner: str, clip_id: str, field: str = "clip_id") -> EditSource:
    """``owner``'s clip as the source of an edit: its lossless 48 kHz audio, caption, lyrics, metadata and model."""
    settings = jobs.deps.settings
    clip = await clips.get_clip(jobs.deps.sessions, owner=owner, clip_id=clip_id, field=field)
    audio = await asyncio.to_thread(clips.load_source_audio, settings, clip)
    extra = clip.extra or {}
    family, version_set = extra.get("family"), extra.get("version_set")
    return EditSource(
        audio=np.asarray(audio, np.float32),
        clip_id=clip.public_id,
        caption=clip.caption or "",
        lyrics=clip.lyrics or "",
        model=f"{family}:{version_set}" if family and version_set else family,
        bpm=clip.bpm,
        key_scale=clip.key_scale,
        time_signature=extra.get("time_signature"),
        latents_family=family if family in clips.LATENT_SOURCE_FAMILIES and clip.latents_file else None,
        field=field,
    )


async def resolve_source(jobs: Submitter, *, owner: str, value: str, field: str = "clip_id") -> EditSource:
    """A clip id or a result path of ``owner``'s as an edit's source; another user's is not found (404)."""
    if result_file_key(value) is not None:
        return await source_from_result(jobs, owner=owner, value=value, field=field)
    return await source_from_clip(jobs, owner=owner, clip_id=value, field=field)
