"""The song API (seed 000): ``POST /v1/song/create`` and ``GET /v1/song/status``. Defaults and ranges are the page's."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

from orchestrator.families import (
    DRAWN_SEED_RANGE,
    MAX_BATCH,
    MAX_DURATION,
    MAX_STEPS,
    MIN_DURATION,
    MIN_STEPS,
    parse_model,
)
from orchestrator.schemas.common import AudioFormat, CallbackUrl, CoverAspect, KeyScale, Text, TrackClass
from orchestrator.schemas.lyrics import ALIGN_LYRICS_DESCRIPTION, ItemLyrics

SongStatus = Literal["lyrics_pending", "lyrics_ready", "audio_pending", "succeeded", "failed", "cancelled"]
VocalMode = Literal["sing", "instrumental_from_lyrics", "instrumental_quick"]


class SongCreate(BaseModel):
    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)

    theme: Text = Field(min_length=1, max_length=2000, description="one-line description of the song (any language)")
    language: Text = Field(
        default="zh", pattern=r"^[a-z]{2,3}(-[A-Za-z0-9]{2,8})?$", description='ISO 639 code: "zh", "en", ...'
    )
    rhyme: Text | None = Field(default=None, max_length=40, description="rhyme suffix, e.g. -ai -ang -ou -ing -an")
    style: Text | None = Field(default=None, max_length=300, description="style hint")
    vocal_gender: Literal["male", "female", "any"] = Field(default="male", description="the singing voice")
    duration_hint: float = Field(
        default=220.0,
        gt=MIN_DURATION,
        le=MAX_DURATION,
        description=f"target duration in seconds, ({MIN_DURATION}, {MAX_DURATION}]",
    )
    additional_instructions: Text | None = Field(
        default=None, max_length=2000, description="extra instructions for the lyricist"
    )
    temperature: float = Field(default=0.85, ge=0.0, le=2.0, description="lyricist sampling temperature, 0..2")
    expand_theme: bool = Field(
        default=True,
        description="expand a short theme into a creative brief first (one extra LLM call, ~1-3 s); "
        "skipped anyway when the theme is longer than 60 characters",
    )
    vocal_mode: VocalMode = Field(
        default="sing",
        description="sing: sung lyrics; instrumental_from_lyrics: lyrics are written and shape the song's sections "
        "but nothing is sung; instrumental_quick: no lyricist, an instrumental straight from the theme",
    )
    track_classes: list[TrackClass] | None = Field(
        default=None, max_length=12, description="featured instruments, appended to the caption as hints"
    )
    bpm: int | None = Field(default=None, ge=30, le=300, description="override the suggested BPM, 30..300")
    key_scale: KeyScale = Field(default=None, max_length=32, description="override the key, e.g. 'C major'")
    duration: float | None = Field(
        default=None,
        ge=MIN_DURATION,
        le=MAX_DURATION,
        description=f"override the duration, {MIN_DURATION}..{MAX_DURATION} s",
    )
    audio_format: AudioFormat = Field(
        default="flac", description="flac/wav lossless · mp3 lossy and small · wav32 float32 for mastering"
    )
    inference_steps: int = Field(
        default=64, ge=MIN_STEPS, le=MAX_STEPS, description=f"DiT denoising steps, {MIN_STEPS}..{MAX_STEPS}"
    )
    guidance_scale: float = Field(default=7.0, ge=0.0, le=30.0, description="classifier-free guidance, 0..30")
    use_adg: bool = Field(default=False, description="adaptive dual guidance")
    align_lyrics: bool = Field(default=False, description=ALIGN_LYRICS_DESCRIPTION)
    batch_size: int = Field(default=1, ge=1, le=MAX_BATCH, description=f"songs per request, 1..{MAX_BATCH}")
    generate_cover: bool = Field(default=True, description="make a cover image beside the audio")
    cover_size: CoverAspect | None = Field(default=None, description="cover aspect; null = deployment default")
    seed: int | None = Field(
        default=None, ge=0, le=DRAWN_SEED_RANGE - 1, description="item i uses seed + i; null = random"
    )
    model: Text | None = Field(
        default=None,
        max_length=80,
        description="song model: acestep15 | acestep_v1 | <family>:<version set>; null = the deployment's default",
    )
    callback_url: CallbackUrl = None

    @field_validator("theme")
    @classmethod
    def _theme_not_blank(cls, value: str) -> str:
        if not value.strip():
            raise ValueError("must not be blank")
        return value.strip()

    @field_validator("model")
    @classmethod
    def _model(cls, value: str | None) -> str | None:
        if value is None or not value.strip():
            return None
        return parse_model(value).id

    @field_validator("track_classes")
    @classmethod
    def _unique_tracks(cls, value: list[str] | None) -> list[str] | None:
        return None if value is None else list(dict.fromkeys(value))


class NextStep(BaseModel):
    method: Literal["GET"] = "GET"
    url: str
    poll_interval_sec: int


class SongCreated(BaseModel):
    intent_id: str
    status: SongStatus
    next_step: NextStep


class SongProgress(BaseModel):
    stage: str | None = None
    step: int = 0
    total: int = 0


class SongItem(ItemLyrics):
    index: int
    audio_url: str
    format: str
    duration: float
    seed: int
    clip_id: str | None = Field(default=None, description="the item as a clip (GET /v1/clips/{id}; edit sources)")


class SongMetadata(BaseModel):
    title: str | None = None
    caption: str | None = None
    bpm: int | None = None
    key_scale: str | None = None
    time_signature: str | None = None
    duration: float | None = None
    seeds: list[int] | None = None


class SongStatusPublic(BaseModel):
    intent_id: str
    status: SongStatus
    warnings: list[str] = Field(
        default_factory=list, description="settings that were not applied, e.g. guidance on a turbo checkpoint"
    )
    lyrics: str | None = None
    title: str | None = None
    progress: SongProgress
    items: list[SongItem] = Field(default_factory=list)
    cover_url: str | None = None
    metadata: SongMetadata
    queue_position: int = 0
    eta_seconds: float | None = None
    error: str | None = None
    created_at: float
    finished_at: float | None = None


class SongCancel(BaseModel):
    model_config = ConfigDict(extra="forbid")
    intent_id: Text = Field(min_length=1, max_length=64)


class SongCreateResponse(BaseModel):
    code: int = 200
    data: SongCreated
    error: None = None


class SongStatusResponse(BaseModel):
    code: int = 200
    data: SongStatusPublic
    error: None = None
