"""The Producer API (seed 002, ``docs/producer.md``): ``POST /producer/audios``, ``POST /producer/upload``,
``POST /producer/tasks``. Field names, defaults and ranges are the seed's; answers are its shapes
(``{success, task_id, trace_id, data}``; errors ``{success: false, error: {code, message}, trace_id}``)."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from orchestrator.families import MAX_DURATION
from orchestrator.schemas.common import CallbackUrl, Text
from orchestrator.schemas.lyrics import ALIGN_LYRICS_DESCRIPTION, AlignedWord

# Every action the seed names (``upload_replace_section`` too: its text offers it for uploaded songs).
PRODUCER_ACTIONS = (
    "generate",
    "cover",
    "extend",
    "upload_cover",
    "upload_extend",
    "upload_replace_section",
    "replace_section",
    "swap_vocals",
    "swap_instrumentals",
    "variation",
    "stems",
)
TASK_ACTIONS = ("retrieve", "retrieve_batch")
# The seed's error codes (``code`` of an error answer) by HTTP status; ``not_found`` for ids of no task/audio of
# the caller's (also another user's).
ErrorCode = Literal[
    "token_mismatched", "api_not_implemented", "invalid_token", "not_found", "too_many_requests", "api_error"
]
ItemState = Literal["running", "succeeded", "failed", "cancelled"]  # running: queued or running


class ProducerAudioCreate(BaseModel):
    """``POST /producer/audios``. Which fields an action takes: ``docs/producer.md`` (a field an action does not use
    is refused, naming it, rather than ignored)."""

    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)

    action: Text = Field(min_length=1, max_length=40, description=f"one of {', '.join(PRODUCER_ACTIONS)}")
    model: Text | None = Field(
        default=None, max_length=40, description="FUZZ-2.0 Pro, FUZZ-2.0, ... (TRITONE_PRODUCER_MODELS); null = default"
    )
    lyric: Text | None = Field(default=None, max_length=10000, description="the lyrics (custom: true)")
    custom: bool = Field(
        default=False, description="true: lyric/title/prompt are used as given; false: the lyricist writes from prompt"
    )
    prompt: Text | None = Field(
        default=None, max_length=2000, description="custom: false — what the song is about; custom: true — its style"
    )
    title: Text | None = Field(default=None, max_length=200)
    audio_id: Text | None = Field(default=None, max_length=64, description="the song to edit (a data[].id)")
    continue_at: float | None = Field(default=None, ge=0.0, le=float(MAX_DURATION), description="extend: seconds")
    replace_section_start: float | None = Field(default=None, ge=0.0, le=float(MAX_DURATION), description="seconds")
    replace_section_end: float | None = Field(default=None, gt=0.0, le=float(MAX_DURATION), description="seconds")
    lyrics_strength: float | None = Field(default=None, ge=0.0, le=1.0, description="0..1, default 0.7")
    sound_strength: float | None = Field(default=None, ge=0.2, le=1.0, description="0.2..1, default 0.7")
    cover_strength: float | None = Field(default=None, ge=0.2, le=1.0, description="cover: 0.2..1, default 1")
    weirdness: float | None = Field(default=None, ge=0.0, le=1.0, description="0..1, default 0.5")
    callback_url: CallbackUrl = None
    instrumental: bool = Field(default=False, description="no vocals")
    align_lyrics: bool = Field(default=False, description=f"Tritone's extension (generate): {ALIGN_LYRICS_DESCRIPTION}")

    @model_validator(mode="after")
    def _section(self) -> ProducerAudioCreate:
        start, end = self.replace_section_start, self.replace_section_end
        if start is not None and end is not None and end <= start:
            raise ValueError(f"replace_section_end: must be greater than replace_section_start ({start:g})")
        return self


class ProducerTaskQuery(BaseModel):
    """``POST /producer/tasks``: ``{"id": …, "action": "retrieve"}`` or ``{"ids": […], "action": "retrieve_batch"}``."""

    model_config = ConfigDict(extra="forbid")

    action: Text = Field(min_length=1, max_length=40, description="retrieve | retrieve_batch")
    id: Text | None = Field(default=None, min_length=1, max_length=64, description="retrieve: a task_id")
    ids: list[Text] | None = Field(default=None, min_length=1, max_length=100, description="retrieve_batch")

    @model_validator(mode="after")
    def _ids(self) -> ProducerTaskQuery:
        if self.action == "retrieve" and not self.id:
            raise ValueError("id: field required for action 'retrieve'")
        if self.action == "retrieve_batch" and not self.ids:
            raise ValueError("ids: field required for action 'retrieve_batch' (a list of task_id values)")
        return self


class ProducerUploadUrl(BaseModel):
    """``POST /producer/upload`` as JSON: the audio fetched from ``audio_url`` (public hosts only)."""

    model_config = ConfigDict(extra="forbid")

    audio_url: Text = Field(min_length=1, max_length=2048, pattern=r"^https?://", description="an http(s) URL")


class ProducerItem(BaseModel):
    """One song of an answer (the seed's ``data[]``); ``lrc``/``aligned_lyrics``/``alignment_score`` when the
    request set ``align_lyrics``."""

    id: str | None
    title: str
    image_url: str | None
    lyric: str
    audio_url: str | None
    video_url: str | None = None
    image_id: str | None
    topic: str | None = None
    seed: str | None
    sound: str
    created_at: str
    model: str
    progress: str
    state: ItemState
    duration: str | None
    lrc: str | None = None
    aligned_lyrics: list[AlignedWord] | None = None
    alignment_score: float | None = None


class ProducerStemsItem(BaseModel):
    title: str
    lyric: str
    stems_url: str | None
    model: str
    progress: str
    state: ItemState


class ProducerAnswer(BaseModel):
    success: Literal[True] = True
    task_id: str
    trace_id: str
    data: list[ProducerItem] | list[ProducerStemsItem]


class ProducerAccepted(BaseModel):
    """The answer when a ``callback_url`` was given: the result is POSTed there later."""

    task_id: str


class ProducerUploaded(BaseModel):
    success: Literal[True] = True
    task_id: str
    trace_id: str
    data: dict[str, Any] = Field(description="audio_id (use it with upload_cover / upload_extend), title, duration")


class ProducerBatch(BaseModel):
    success: Literal[True] = True
    trace_id: str
    count: int
    items: list[dict[str, Any]] = Field(description="one retrieve answer per id, in the order asked")


class ProducerErrorDetail(BaseModel):
    code: ErrorCode
    message: str


class ProducerError(BaseModel):
    success: Literal[False] = False
    task_id: str | None = None
    error: ProducerErrorDetail
    trace_id: str
