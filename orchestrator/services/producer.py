"""The Producer API's logic (seed 002, ``docs/producer.md``): an ``action`` becomes a job of the service's own
pipelines, the caller waits for it (bounded) or gets its result POSTed to ``callback_url``, and tasks are queried.

- ``generate``, ``custom: false`` — the song API's pipeline: the lyricist writes lyrics and title from ``prompt``
  (``instrumental``: no lyricist, an instrumental from the prompt);
- ``generate``, ``custom: true`` — the ACE-Step API's pipeline with ``lyric`` (``[Instrumental]`` when
  ``instrumental``), ``prompt`` as the style and ``title`` as given;
- ``extend``/``replace_section``/``cover``/``variation``/``swap_*`` (and ``upload_*``) — the edit actions, ``stems`` —
  the stems job, each on ``audio_id`` (a clip id of the caller's; another user's is not found) — wired in
  :data:`WIRED`; an action whose backing part this build lacks answers 400 ``api_not_implemented`` naming it.

Every job a request makes carries ``params["producer"]`` (the model name, title, prompt, action, base URL, trace id)
and, with a ``callback_url``, ``callback_format: producer``: its only callback is the seed's answer, POSTed when it
ends (signed and retried by the webhook outbox).
"""

from __future__ import annotations

import re
import time
from typing import Any

from sqlalchemy.ext.asyncio import async_sessionmaker

from orchestrator import store
from orchestrator.db import TERMINAL_STATUSES, Clip, Job
from orchestrator.errors import ApiError
from orchestrator.families import parse_model, variant_kind
from orchestrator.schemas.acestep import MusicGenerateCreate
from orchestrator.schemas.edits import EditBase
from orchestrator.schemas.producer import (
    PRODUCER_ACTIONS,
    TASK_ACTIONS,
    ErrorCode,
    ProducerAudioCreate,
    ProducerTaskQuery,
)
from orchestrator.schemas.song import SongCreate
from orchestrator.services import clips
from orchestrator.services.audio_fetch import fetch_audio
from orchestrator.services.events import EventBus
from orchestrator.services.jobs import JobService
from orchestrator.services.jobs.edits import knob_params
from orchestrator.services.jobs.submit import tagged
from orchestrator.services.model_catalog import describe_models, resolve_model
from orchestrator.services.producer_edits import EDIT_OF, ProducerEdits, uses
from orchestrator.services.producer_views import CALLBACK_FORMAT
from orchestrator.services.triton import StageGateway
from orchestrator.services.webhooks import WebhookSender
from orchestrator.settings import Settings

# The actions this build runs (the others answer api_not_implemented, naming the action).
WIRED = ("generate", *EDIT_OF, "stems")
# The fields each action reads besides action, model, callback_url (one it does not read is refused, not ignored).
USES: dict[str, frozenset[str]] = {
    "generate": frozenset(
        {
            "custom",
            "lyric",
            "prompt",
            "title",
            "instrumental",
            "weirdness",
            "sound_strength",
            "lyrics_strength",
            "align_lyrics",
        }
    ),
} | {action: uses(action) for action in (*EDIT_OF, "stems")}
# weirdness -> the lyricist's sampling temperature (custom: false): 0 -> 0.4, 0.5 -> 0.85 (its default), 1 -> 1.3
WEIRDNESS_TEMPERATURE = (0.4, 0.9)
_SCRIPTS = (("ja", re.compile(r"[\u3040-\u30ff]")), ("ko", re.compile(r"[\uac00-\ud7af]")),
            ("zh", re.compile(r"[\u4e00-\u9fff]")))  # fmt: skip


class ProducerError(ApiError):
    """An error with one of the seed's codes that its HTTP status alone does not tell (``api_not_implemented``)."""

    def __init__(self, status: int, message: str, *, code: ErrorCode, field: str | None = None) -> None:
        super().__init__(status, message, field=field)
        self.code = code


def not_implemented(problem: str) -> ProducerError:
    """The seed's 400 ``api_not_implemented`` for an ``action`` value."""
    return ProducerError(400, f"action: {problem}", code="api_not_implemented", field="action")


def language_of(text: str) -> str:
    """The lyricist's language for a prompt: Japanese kana, Hangul or Han characters, else English."""
    for code, pattern in _SCRIPTS:
        if pattern.search(text):
            return code
    return "en"


def first_line(lyric: str) -> str | None:
    """A title from the lyrics as the seed's answers make one: the first line that is not a section tag."""
    for line in lyric.replace("\\n", "\n").splitlines():
        text = re.sub(r"\[[^\]]*\]", "", line).strip()
        if text:
            return text[:80]
    return None


class ProducerService:
    def __init__(
        self,
        *,
        jobs: JobService,
        sessions: async_sessionmaker,
        gateway: StageGateway,
        bus: EventBus,
        webhooks: WebhookSender,
        settings: Settings,
    ) -> None:
        self._webhooks = webhooks
        self._jobs = jobs
        self._sessions = sessions
        self._gateway = gateway
        self._bus = bus
        self._settings = settings

    # --- checks ----------------------------------------------------------------------------------------------------
    def model_of(self, name: str | None) -> tuple[str, str]:
        """``(Producer name, the service's model)``; 400 listing the names for one that is not configured."""
        chosen = name or self._settings.producer_default_model
        mapped = self._settings.producer_models.get(chosen)
        if mapped is None:
            names = ", ".join(self._settings.producer_models)
            raise ApiError(400, f"model: {chosen!r} is not a model of this API; allowed: {names}", field="model")
        return chosen, mapped

    @staticmethod
    def check_action(body: ProducerAudioCreate) -> None:
        if body.action not in PRODUCER_ACTIONS:
            allowed = ", ".join(PRODUCER_ACTIONS)
            raise not_implemented(f"{body.action!r} is not an action of this API; allowed: {allowed}")
        if body.action not in WIRED:
            raise not_implemented(
                f"{body.action!r} is not implemented on this server yet (its backing part is not built); "
                f"implemented: {', '.join(WIRED)}"
            )
        reads = USES[body.action]
        defaults = ProducerAudioCreate.model_fields
        for name in sorted(body.model_fields_set - {"action", "model", "callback_url"} - reads):
            if getattr(body, name) != defaults[name].default:
                allowed = ", ".join(sorted(reads))
                raise ApiError(400, f"{name}: action {body.action!r} does not use it (it reads {allowed})", field=name)

    # --- submission ------------------------------------------------------------------------------------------------
    async def create(self, *, owner: str, body: ProducerAudioCreate, base_url: str, trace_id: str) -> Job:
        """The job of ``body``'s action, tagged with the Producer fields its answers show."""
        self.check_action(body)
        name, model = self.model_of(body.model)
        tags: dict[str, Any] = {
            "producer": {
                "action": body.action,
                "model": name,
                "title": body.title,
                "prompt": body.prompt or "",
                "base_url": base_url,
                "trace_id": trace_id,
            }
        }
        if body.callback_url:
            tags["callback_format"] = CALLBACK_FORMAT
        with tagged(tags):
            if body.action == "generate":
                return await self._generate(owner, body, model, tags["producer"])
            edits = ProducerEdits(self._jobs, self._settings)
            if body.action == "stems":
                return await edits.stems(owner, body, tags["producer"])
            return await edits.edit(owner, body, model, tags["producer"])

    async def upload(self, *, owner: str, data: bytes | None, audio_url: str | None) -> Clip:
        """An uploaded file, or the one at ``audio_url`` (public hosts only, size-bounded), as ``owner``'s clip."""
        field = "file"
        if data is None:
            if not audio_url:
                raise ApiError(400, "file: send a multipart 'file' or an 'audio_url'", field="file")
            field = "audio_url"
            data = await fetch_audio(
                self._webhooks,
                audio_url,
                max_bytes=self._settings.producer_fetch_max_bytes,
                timeout_s=self._settings.producer_fetch_timeout_s,
            )
        clip, _ = await clips.store_upload(
            self._settings, self._sessions, owner=owner, data=data, field=field, quota=self._jobs.quota
        )
        return clip

    async def _generate(self, owner: str, body: ProducerAudioCreate, model: str, producer: dict[str, Any]) -> Job:
        settings = self._settings
        common: dict[str, Any] = {
            "model": model,
            "callback_url": body.callback_url,
            "audio_format": settings.producer_audio_format,
            "align_lyrics": body.align_lyrics,
            **({"inference_steps": settings.producer_inference_steps} if settings.producer_inference_steps else {}),
        }
        if not body.custom:
            if body.lyric:
                raise ApiError(
                    400,
                    "lyric: with custom false the lyricist writes the lyrics from prompt; send custom: true to use "
                    "your own lyrics",
                    field="lyric",
                )
            if body.lyrics_strength is not None:
                raise ApiError(
                    400, "lyrics_strength: applies to your own lyrics; send custom: true", field="lyrics_strength"
                )
            if not (body.prompt or "").strip():
                raise ApiError(
                    400, "prompt: field required (what the song is about) when custom is false", field="prompt"
                )
            low, span = WEIRDNESS_TEMPERATURE
            song = SongCreate.model_validate(
                {
                    **common,
                    **await self._knobs(model, sound_strength=body.sound_strength),
                    "theme": body.prompt,
                    "language": language_of(body.prompt or ""),
                    "vocal_mode": "instrumental_quick" if body.instrumental else "sing",
                    "generate_cover": True,
                    **({"duration": settings.producer_duration_s} if settings.producer_duration_s else {}),
                    **({"temperature": low + span * body.weirdness} if body.weirdness is not None else {}),
                }
            )
            return await self._jobs.submit_song(owner=owner, body=song)
        lyric = (body.lyric or "").strip()
        if not lyric and not body.instrumental:
            raise ApiError(400, "lyric: field required with custom true (or set instrumental: true)", field="lyric")
        producer["title"] = body.title or first_line(lyric) or "Untitled"
        knobs = await self._knobs(
            model, weirdness=body.weirdness, sound_strength=body.sound_strength, lyrics_strength=body.lyrics_strength
        )
        music = MusicGenerateCreate.model_validate(
            {
                **common,
                **{k: v for k, v in knobs.items() if k in MusicGenerateCreate.model_fields},
                "caption": body.prompt or "",
                "lyrics": lyric,
                "instrumental": body.instrumental,
                "vocal_language": language_of(lyric) if lyric else "unknown",
                **({"audio_duration": settings.producer_duration_s} if settings.producer_duration_s else {}),
            }
        )
        sampler_only = {k: v for k, v in knobs.items() if k not in MusicGenerateCreate.model_fields}
        with tagged({"title": producer["title"]}):  # the clips' title too
            return await self._jobs.submit_music(owner=owner, body=music, extra_params=sampler_only)

    async def _knobs(
        self,
        model: str,
        *,
        weirdness: float | None = None,
        sound_strength: float | None = None,
        lyrics_strength: float | None = None,
    ) -> dict[str, Any]:
        """The sampler parameters the knobs set, mapped as the edit actions map them (``knob_params``,
        ``docs/edits.md``): a knob the model's version set would not apply is refused, naming it."""
        if weirdness is None and sound_strength is None and lyrics_strength is None:
            return {}
        described, _ = await describe_models(self._gateway, self._settings.sampler_model)
        resolved = resolve_model(parse_model(model), model, described)
        family = ((described or {}).get("families") or {}).get(resolved.family) or {}
        name = resolved.version_set or family.get("default_version_set")
        entry = (family.get("version_sets") or {}).get(name) or {}
        kind = variant_kind(entry.get("variant"), is_turbo=entry.get("is_turbo"))
        knobs = EditBase(
            action="variation", weirdness=weirdness, sound_strength=sound_strength, lyrics_strength=lyrics_strength
        )
        return knob_params(knobs, family=resolved.family, turbo=kind == "turbo", variant=f"{name!r} ({kind})")

    # --- waiting and queries ---------------------------------------------------------------------------------------
    async def wait(self, job: Job, timeout_s: float) -> Job:
        """``job`` once it ended, or as it stands after ``timeout_s`` (woken by the event bus; re-read each second for
        jobs another process runs)."""
        deadline = time.monotonic() + timeout_s
        while True:
            async with self._sessions() as session:
                fresh = await store.get_job(session=session, public_id=job.public_id)
            job = fresh or job
            left = deadline - time.monotonic()
            if job.status in TERMINAL_STATUSES or left <= 0:
                return job
            await self._bus.wait(job.id, min(1.0, left))

    async def tasks(self, *, owner: str, query: ProducerTaskQuery) -> list[Job | str]:
        """The caller's jobs for the query's ids, in order (an id with no task of theirs stays a string)."""
        if query.action not in TASK_ACTIONS:
            raise not_implemented(f"{query.action!r} is not a task action; allowed: {', '.join(TASK_ACTIONS)}")
        ids = [query.id] if query.action == "retrieve" and query.id else list(query.ids or [])
        async with self._sessions() as session:
            found = {j.public_id: j for j in await store.get_jobs(session=session, public_ids=ids, owner=owner)}
        mine = {i: j for i, j in found.items() if (j.params or {}).get("producer")}  # Producer tasks only
        return [mine.get(i) or i for i in ids]
