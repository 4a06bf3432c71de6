"""The Producer actions on an existing song (``audio_id``: a clip id of the caller's): the edit actions
(``services/jobs/edits.py``) and the stems job (``services/jobs/stems.py``), with the seed's fields mapped onto
theirs (``docs/producer.md``):

- ``lyric`` → the edit's lyrics (``custom: true``; without ``lyric`` the source's lyrics stay), ``prompt`` → its
  style (without one, the source's), ``instrumental``, ``continue_at``, ``replace_section_start/end``,
  ``cover_strength``, and the knobs ``lyrics_strength`` / ``sound_strength`` / ``weirdness`` as the edits map them;
- ``upload_cover`` / ``upload_extend`` / ``upload_replace_section`` are ``cover`` / ``extend`` / ``replace_section``
  on an uploaded clip (``POST /producer/upload``'s ``audio_id``) — any clip of the caller's works for both;
- ``swap_vocals`` / ``swap_instrumentals`` need ACE-Step's track tasks, which only a *base* DiT has: a model that maps
  to another ACE-Step 1.5 set runs them on the family's base set (``acestep-v15-base``); where none is served the
  edit's error names the variant;
- ``stems`` — the two-stem set (vocals + instrumental) of the clip, as a zip.
"""

from __future__ import annotations

from typing import Any

from orchestrator.db import Clip, Job
from orchestrator.errors import ApiError, validated
from orchestrator.families import ACESTEP15, parse_model
from orchestrator.schemas.edits import EDIT_MODELS, AnyEdit
from orchestrator.schemas.producer import ProducerAudioCreate
from orchestrator.services import clips
from orchestrator.services.jobs import JobService
from orchestrator.services.jobs.edits import EditSubmitter, source_from_clip
from orchestrator.services.jobs.stems import ClipSource, submit_stems
from orchestrator.services.jobs.submit import tagged
from orchestrator.settings import Settings

# Producer action -> the edit action it runs
EDIT_OF = {
    "extend": "extend",
    "upload_extend": "extend",
    "replace_section": "replace_section",
    "upload_replace_section": "replace_section",
    "cover": "cover",
    "upload_cover": "cover",
    "variation": "variation",
    "swap_vocals": "swap_vocals",
    "swap_instrumentals": "swap_instrumentals",
}
_LYRICAL = frozenset({"custom", "lyric", "prompt", "title", "instrumental", "lyrics_strength", "sound_strength",
                      "weirdness"})  # fmt: skip
# The Producer fields each edit action reads (besides action, model, callback_url, audio_id).
EDIT_USES: dict[str, frozenset[str]] = {
    "extend": _LYRICAL | {"continue_at"},
    "replace_section": _LYRICAL | {"replace_section_start", "replace_section_end"},
    "cover": _LYRICAL | {"cover_strength"},
    "variation": _LYRICAL,
    "swap_vocals": _LYRICAL,
    "swap_instrumentals": frozenset({"custom", "prompt", "title", "lyrics_strength", "sound_strength", "weirdness"}),
}
STEMS = 2  # vocals + instrumental
TRACK_TASK_MODEL = "acestep-v15-base"  # the ACE-Step 1.5 set with lego/complete
# The edit and stems fields that are another one in the Producer API
_PRODUCER_NAMES = {"lyrics": "lyric", "style": "prompt", "clip_id": "audio_id"}


def producer_named(exc: ApiError) -> ApiError:
    """``exc`` with the field it names spelled as the Producer API spells it."""
    field = _PRODUCER_NAMES.get(exc.field or "")
    if field is None:
        return exc
    return ApiError(exc.status, exc.message.replace(f"{exc.field}:", f"{field}:", 1), field=field, headers=exc.headers)


def uses(action: str) -> frozenset[str]:
    if action == "stems":
        return frozenset({"audio_id"})
    return EDIT_USES[EDIT_OF[action]] | {"audio_id"}


def _edit_model(action: str, model: str) -> str:
    if action in ("swap_vocals", "swap_instrumentals") and parse_model(model).family == ACESTEP15:
        return TRACK_TASK_MODEL
    return model


def edit_request(body: ProducerAudioCreate, model: str, settings: Settings) -> AnyEdit:
    """The edit action's request from the Producer body (its errors name the Producer's fields)."""
    action = EDIT_OF[body.action]
    raw: dict[str, Any] = {
        "action": action,
        "model": _edit_model(action, model),
        "callback_url": body.callback_url,
        "audio_format": settings.producer_audio_format,
        "inference_steps": settings.producer_inference_steps,
        "lyrics_strength": body.lyrics_strength,
        "sound_strength": body.sound_strength,
        "weirdness": body.weirdness,
        "style": body.prompt or None,
    }
    if action != "swap_instrumentals":
        raw |= {"lyrics": body.lyric or None, "instrumental": body.instrumental}
    if action == "extend":
        raw["continue_at"] = body.continue_at
    elif action == "replace_section":
        raw |= {"replace_section_start": body.replace_section_start, "replace_section_end": body.replace_section_end}
        for name in ("replace_section_start", "replace_section_end"):
            if raw[name] is None:
                raise ApiError(400, f"{name}: field required for action {body.action!r} (seconds)", field=name)
    elif action == "cover" and body.cover_strength is not None:
        raw["cover_strength"] = body.cover_strength
    try:
        return validated(EDIT_MODELS[action], {k: v for k, v in raw.items() if v is not None})  # type: ignore[return-value]
    except ApiError as exc:
        raise producer_named(exc) from None


class ProducerEdits:
    def __init__(self, jobs: JobService, settings: Settings) -> None:
        self._jobs = jobs
        self._settings = settings

    async def clip(self, owner: str, body: ProducerAudioCreate) -> Clip:
        if not body.audio_id:
            raise ApiError(400, f"audio_id: field required for action {body.action!r} (a data[].id)", field="audio_id")
        return await clips.get_clip(self._jobs.deps.sessions, owner=owner, clip_id=body.audio_id, field="audio_id")

    async def edit(self, owner: str, body: ProducerAudioCreate, model: str, producer: dict[str, Any]) -> Job:
        clip = await self.clip(owner, body)
        if body.lyric and not body.custom:
            raise ApiError(
                400, "lyric: send custom: true to sing new lyrics (custom false keeps the song's)", field="lyric"
            )
        request = edit_request(body, model, self._settings)
        producer["title"] = body.title or clip.title or "Untitled"
        source = await source_from_clip(self._jobs, owner=owner, clip_id=clip.public_id, field="audio_id")
        try:
            with tagged({"title": producer["title"]}):  # the new clip's title too
                return await EditSubmitter(self._jobs).submit(owner=owner, source=source, edit=request)
        except ApiError as exc:
            raise producer_named(exc) from None

    async def stems(self, owner: str, body: ProducerAudioCreate, producer: dict[str, Any]) -> Job:
        clip = await self.clip(owner, body)
        producer["title"] = clip.title or ""
        producer["model"] = ""  # the seed's stems answer names no model
        try:
            return await submit_stems(
                self._jobs, owner=owner, source=ClipSource(clip.public_id), stems=STEMS, callback_url=body.callback_url
            )
        except ApiError as exc:
            raise producer_named(exc) from None
