"""Upstream's OpenAI-chat-style music route (its OpenRouter document): ``POST /v1/chat/completions`` — messages become
a song; the answer carries the LM's metadata and lyrics as text and the audio as base64 data URLs, whole or streamed
as ``chat.completion.chunk`` events. Also seed 001's ``POST /v1/audio/music/generate``."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

from orchestrator.families import MAX_BATCH, MAX_DURATION, MAX_SEED, MAX_STEPS, MIN_DURATION, MIN_STEPS
from orchestrator.schemas.acestep import TaskType
from orchestrator.schemas.common import AudioFormat, Text

# base64 of one upload at most (the upload limit is checked again on the decoded bytes)
_MAX_B64 = 80 * 1024 * 1024


class InputAudio(BaseModel):
    model_config = ConfigDict(extra="ignore")
    data: str = Field(max_length=_MAX_B64, description="base64 audio, or a data: URL")
    format: Text = Field(default="mp3", max_length=16)


class ContentPart(BaseModel):
    model_config = ConfigDict(extra="ignore")
    type: Literal["text", "input_audio"]
    text: Text | None = Field(default=None, max_length=20000)
    input_audio: InputAudio | None = None


class ChatMessage(BaseModel):
    model_config = ConfigDict(extra="ignore")
    role: Text = Field(max_length=32)
    content: Text | list[ContentPart] = Field(default="", max_length=20000)


class AudioConfig(BaseModel):
    model_config = ConfigDict(extra="ignore")
    duration: float | None = Field(default=None, ge=MIN_DURATION, le=MAX_DURATION)
    bpm: int | None = Field(default=None, ge=30, le=300)
    vocal_language: Text = Field(default="en", max_length=16)
    instrumental: bool | None = None
    format: AudioFormat = "mp3"
    key_scale: Text | None = Field(default=None, max_length=32)
    time_signature: Text | None = Field(default=None, max_length=8)


class ChatCompletionRequest(BaseModel):
    model_config = ConfigDict(extra="ignore", allow_inf_nan=False)

    model: Text | None = Field(default=None, max_length=120, description="a name from GET /v1/models (any prefix/)")
    messages: list[ChatMessage] = Field(min_length=1, max_length=64)
    stream: bool = False
    audio_config: AudioConfig | None = None
    temperature: float = Field(default=0.85, ge=0.0, le=2.0)
    top_p: float = Field(default=0.9, gt=0.0, le=1.0)
    seed: int | Text | None = Field(default=None, description="an int, or comma-separated ints for a batch")
    lyrics: Text = Field(default="", max_length=10000)
    sample_mode: bool = False
    thinking: bool = False
    guidance_scale: float = Field(default=7.0, ge=0.0, le=30.0)
    inference_steps: int | None = Field(default=None, ge=MIN_STEPS, le=MAX_STEPS)
    batch_size: int = Field(default=1, ge=1, le=MAX_BATCH)
    task_type: TaskType = "text2music"
    repainting_start: float = Field(default=0.0, ge=0.0, le=float(MAX_DURATION))
    repainting_end: float | None = Field(default=None, ge=-1.0, le=float(MAX_DURATION))
    audio_cover_strength: float = Field(default=1.0, ge=0.0, le=1.0)

    @field_validator("seed")
    @classmethod
    def _seed(cls, value: int | str | None) -> int | None:
        if value is None or isinstance(value, int):
            if isinstance(value, int) and not 0 <= value <= MAX_SEED:
                raise ValueError(f"must be in 0..{MAX_SEED}")
            return value
        first = value.split(",")[0].strip()
        if not first:
            return None
        try:
            seed = int(first)
        except ValueError:
            raise ValueError("must be an int or comma-separated ints, e.g. '42,123'") from None
        if not 0 <= seed <= MAX_SEED:
            raise ValueError(f"must be in 0..{MAX_SEED}")
        return seed


class MusicGenerate001(BaseModel):
    """Seed 001's request: ``prompt``, ``lyrics``, ``duration``, ``output_format``."""

    model_config = ConfigDict(extra="ignore", allow_inf_nan=False)
    prompt: Text = Field(max_length=2000)
    lyrics: Text = Field(default="", max_length=10000)
    duration: float = Field(default=60, ge=MIN_DURATION, le=MAX_DURATION)
    output_format: AudioFormat = "mp3"
    model: Text | None = Field(default=None, max_length=80)
    wait_seconds: float = Field(
        default=600, ge=0, le=1800, description="how long to hold the answer for the song (0 = answer at once)"
    )

