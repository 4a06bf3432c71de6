"""The ACE-Step 1.5 API (seed 003): ``POST /v1/music/generate`` (also ``/release_task``), ``GET /v1/jobs/{id}``,
``POST /query_result``. Field names, aliases and defaults follow the page and upstream's current names."""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any, Literal, get_args

from pydantic import AliasChoices, BaseModel, ConfigDict, Field, field_validator, model_validator

from orchestrator.families import (
    ALIASES,
    MAX_BATCH,
    MAX_DURATION,
    MAX_SEED,
    MAX_STEPS,
    MIN_DURATION,
    MIN_STEPS,
    family_facts,
    parse_model,
)
from orchestrator.schemas.common import VOCAL_LANGUAGES, AudioFormat, CallbackUrl, KeyScale, Text, TrackClass
from orchestrator.schemas.lyrics import ALIGN_LYRICS_DESCRIPTION, ItemLyrics
from orchestrator.schemas.stems import StemsResultPublic

TaskType = Literal["text2music", "cover", "repaint", "extract", "lego", "complete"]
TASK_TYPES: tuple[str, ...] = get_args(TaskType)
# Task types that start from a source waveform (``src_audio`` upload or ``src_audio_path``).
TASKS_NEEDING_SOURCE = ("cover", "repaint", "extract", "lego", "complete")
# Upstream skips the LM's code generation for these: they work on the source audio directly.
TASKS_WITHOUT_LM_CODES = ("cover", "repaint", "extract")
# Model names accepted in ``model`` (upstream DiT names map onto Tritone's families; ``<family>:<version set>``
# picks a version set, see orchestrator.families).
MODEL_FAMILIES = {name: family for name, (family, _) in ALIASES.items()}
_TIME_SIGNATURES = {"2": "2", "3": "3", "4": "4", "6": "6", "2/4": "2", "3/4": "3", "4/4": "4", "6/8": "6"}


def music_task_types(family: str) -> tuple[str, ...]:
    """The API's task types that ``family`` serves (its facts may name more, e.g. v1's retake and extend, which this
    API does not offer)."""
    served = family_facts(family).task_types
    return tuple(t for t in TASK_TYPES if t in served)


def _alias(*names: str) -> AliasChoices:
    return AliasChoices(*names)


class MusicGenerateCreate(BaseModel):
    model_config = ConfigDict(extra="ignore", allow_inf_nan=False, populate_by_name=True)

    # basic
    caption: Text = Field(default="", max_length=2000, validation_alias=_alias("caption", "prompt"))
    lyrics: Text = Field(default="", max_length=10000)
    thinking: bool = Field(default=False, description="use the 5 Hz LM to write audio codes for the DiT")
    instrumental: bool = Field(default=False, description="no vocals: the lyrics become '[Instrumental]'")
    vocal_language: Text = Field(default="en", max_length=16, description="ISO 639 code: en, zh, ja, ... or unknown")
    audio_format: AudioFormat = Field(default="mp3", validation_alias=_alias("audio_format", "output_format", "format"))
    # sample / description mode (the LM's "inspire" mode writes caption, lyrics and metadata)
    sample_mode: bool = False
    sample_query: Text = Field(
        default="", max_length=2000, validation_alias=_alias("sample_query", "sampleQuery", "description", "desc")
    )
    model: Text | None = Field(
        default=None,
        max_length=80,
        description="song model: acestep15 | acestep_v1 | an upstream name (acestep-v15-turbo, ...) | "
        "<family>:<version set> | <name>@<version set> (pinned: must be served); null = the deployment's default "
        "(GET /v1/models lists them)",
    )
    version_set: Text | None = Field(
        default=None, max_length=64, pattern=r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$",
        description="pin the version set (same as model '<name>@<set>'); must be served",
    )
    network_versions: dict[str, str] | None = Field(
        default=None, max_length=16, validation_alias=_alias("network_versions", "versions"),
        description="pin single networks, e.g. {\"dit\": \"2\"} (a canary DiT), on top of the version set",
    )
    # music attributes
    bpm: int | None = Field(default=None, ge=30, le=300)
    key_scale: KeyScale = Field(
        default=None, max_length=32, validation_alias=_alias("key_scale", "keyscale", "keyScale")
    )
    time_signature: Text | None = Field(
        default=None, max_length=8, validation_alias=_alias("time_signature", "timesignature", "timeSignature")
    )
    audio_duration: float | None = Field(
        default=None,
        ge=MIN_DURATION,
        le=MAX_DURATION,
        validation_alias=_alias("audio_duration", "duration", "audioDuration", "target_duration"),
    )
    # audio codes
    audio_code_string: Text | list[Text] = Field(
        default="", validation_alias=_alias("audio_code_string", "audioCodeString")
    )
    # generation control
    inference_steps: int = Field(default=8, ge=MIN_STEPS, le=MAX_STEPS)
    guidance_scale: float = Field(default=7.0, ge=0.0, le=30.0)
    use_random_seed: bool = True
    seed: int = Field(default=-1, ge=-1, le=MAX_SEED)
    batch_size: int | None = Field(default=None, ge=1, le=MAX_BATCH)
    shift: float = Field(default=3.0, ge=1.0, le=5.0)
    timesteps: list[float] | None = Field(default=None, max_length=MAX_STEPS + 1)
    use_adg: bool = False
    align_lyrics: bool = Field(default=False, description=ALIGN_LYRICS_DESCRIPTION)
    cfg_interval_start: float = Field(default=0.0, ge=0.0, le=1.0)
    cfg_interval_end: float = Field(default=1.0, ge=0.0, le=1.0)
    # 5 Hz LM
    lm_model_path: Text | None = Field(default=None, max_length=256)
    lm_backend: Text | None = Field(
        default=None, max_length=32, description="a served LM (or a TRITONE_LM_ALIASES name, e.g. vllm/pt)"
    )
    lm_temperature: float = Field(default=0.85, ge=0.0, le=2.0)
    lm_cfg_scale: float = Field(default=2.0, ge=1.0, le=10.0)
    lm_negative_prompt: Text = Field(default="NO USER INPUT", max_length=2000)
    lm_top_k: int | None = Field(default=None, ge=0, le=10000)
    lm_top_p: float = Field(default=0.9, gt=0.0, le=1.0)
    lm_repetition_penalty: float = Field(default=1.0, ge=0.5, le=2.0)
    # edit / reference audio
    reference_audio_path: Text | None = Field(default=None, max_length=4096)
    src_audio_path: Text | None = Field(default=None, max_length=4096)
    src_audio_id: Text | None = Field(
        default=None, max_length=64, description="a clip id of yours (GET /v1/clips): its audio is the source"
    )
    reference_audio_id: Text | None = Field(
        default=None, max_length=64, description="a clip id of yours: its audio is the timbre reference"
    )
    task_type: TaskType = "text2music"
    instruction: Text | None = Field(default=None, max_length=2000)
    repainting_start: float = Field(default=0.0, ge=0.0, le=float(MAX_DURATION))
    repainting_end: float | None = Field(
        default=None, ge=-1.0, le=float(MAX_DURATION), description="seconds; -1/null = the end"
    )
    audio_cover_strength: float = Field(default=1.0, ge=0.0, le=1.0)
    track_name: TrackClass | None = None
    complete_track_classes: list[TrackClass] | None = Field(default=None, max_length=12)
    track_names: list[TrackClass] | None = Field(
        default=None,
        max_length=12,
        description="task_type 'extract' only: several track classes from one source as one batch (one item per "
        "class, named by it; they share the seed and every DiT step); needs a base checkpoint",
    )
    callback_url: CallbackUrl = None

    @field_validator("vocal_language")
    @classmethod
    def _language(cls, value: str) -> str:
        code = value.strip().lower() or "unknown"
        if code not in VOCAL_LANGUAGES:
            raise ValueError(f"must be one of {', '.join(VOCAL_LANGUAGES)}")
        return code

    @field_validator("time_signature")
    @classmethod
    def _time_signature(cls, value: str | None) -> str | None:
        if value is None or not value.strip():
            return None
        key = value.strip()
        if key not in _TIME_SIGNATURES:
            raise ValueError("must be one of 2, 3, 4, 6 (or 2/4, 3/4, 4/4, 6/8)")
        return _TIME_SIGNATURES[key]

    @field_validator("timesteps", mode="before")
    @classmethod
    def _timesteps(cls, value: Any) -> Any:
        if isinstance(value, str):
            if not value.strip():
                return None
            try:
                return [float(v) for v in value.replace(";", ",").split(",") if v.strip()]
            except ValueError:
                raise ValueError("must be comma-separated numbers in [0, 1], e.g. '0.97,0.5,0'") from None
        return value

    @field_validator("timesteps")
    @classmethod
    def _timesteps_range(cls, value: list[float] | None) -> list[float] | None:
        if value is None:
            return None
        if len(value) < 2 or any(not 0.0 <= v <= 1.0 for v in value):
            raise ValueError(f"must hold 2..{MAX_STEPS + 1} numbers in [0, 1]")
        if any(b >= a for a, b in zip(value, value[1:], strict=False)):
            raise ValueError("must be strictly decreasing (from noise to clean), e.g. '0.97,0.5,0'")
        return value

    @field_validator("audio_code_string", mode="before")
    @classmethod
    def _codes(cls, value: Any) -> Any:
        if isinstance(value, str) and value.strip().startswith("["):
            try:
                parsed = json.loads(value)
            except ValueError:
                return value
            return parsed
        return value

    @field_validator("audio_code_string")
    @classmethod
    def _codes_size(cls, value: str | list[str]) -> str | list[str]:
        items = [value] if isinstance(value, str) else value
        if len(items) > MAX_BATCH or any(len(v) > 200_000 for v in items):
            raise ValueError(f"must be a string (or up to {MAX_BATCH} strings) of at most 200000 characters each")
        return value

    @field_validator("model")
    @classmethod
    def _model(cls, value: str | None) -> str | None:
        if value is None or not value.strip():
            return None
        parse_model(value)  # raises naming the accepted forms
        return value.strip()

    @field_validator("complete_track_classes", "track_names", mode="before")
    @classmethod
    def _track_list(cls, value: Any) -> Any:
        # Form clients send lists as "drums,bass" (JavaScript's String(array)).
        if isinstance(value, str):
            return [v.strip() for v in value.split(",") if v.strip()] or None
        return value

    @field_validator("network_versions", mode="before")
    @classmethod
    def _versions(cls, value: Any) -> Any:
        if isinstance(value, str):
            if not value.strip():
                return None
            try:
                value = json.loads(value)
            except ValueError:
                raise ValueError('must be a JSON object of network -> version, e.g. {"dit": "2"}') from None
        if isinstance(value, dict):
            return {str(k): str(v) for k, v in value.items()}
        return value

    @model_validator(mode="after")
    def _cross_fields(self) -> MusicGenerateCreate:
        if self.cfg_interval_end < self.cfg_interval_start:
            raise ValueError("cfg_interval_end: must be >= cfg_interval_start")
        if (
            self.repainting_end is not None
            and self.repainting_end != -1
            and self.repainting_end <= self.repainting_start
        ):
            raise ValueError("repainting_end: must be greater than repainting_start (or -1 for the end)")
        if self.track_names:
            self._check_track_names(self.track_names)
        return self

    def _check_track_names(self, names: Sequence[str]) -> None:
        if self.task_type != "extract":
            raise ValueError(f"track_names: applies to task_type 'extract' only, not '{self.task_type}'")
        if len(set(names)) != len(names):
            raise ValueError(f"track_names: names a class twice: {', '.join(names)}")
        if self.track_name:
            raise ValueError("track_names: send track_name (one class) or track_names (several), not both")
        if self.instruction:
            raise ValueError("track_names: each class gets its own extract instruction; remove instruction")
        if self.batch_size not in (None, len(names)):
            raise ValueError(f"batch_size: must be {len(names)} (one item per track_names entry) or absent")

    @property
    def codes_list(self) -> list[str]:
        items = [self.audio_code_string] if isinstance(self.audio_code_string, str) else self.audio_code_string
        return [c for c in items if c.strip()]


class JobResultPublic(BaseModel):
    audio_paths: list[str]
    clip_ids: list[str | None] = Field(
        default_factory=list, description="each audio path's clip (GET /v1/clips/{id}; use it as src_audio_id)"
    )
    first_audio_path: str | None = None
    second_audio_path: str | None = None
    generation_info: str
    status_message: str
    seed_value: str
    bpm: int | None = None
    duration: float | None = None
    genres: str | None = None
    keyscale: str | None = None
    timesignature: str | None = None
    metas: dict[str, Any] = Field(default_factory=dict)
    lyrics: str | None = None
    caption: str | None = None
    dit_model: str = Field(default="", description="the model that ran, under the name clients know")
    lm_model: str = Field(default="", description="the LM that ran ('' when none did)")
    lm_requested: dict[str, str] | None = Field(default=None, description="lm_model_path / lm_backend as sent")
    lm_fallback: bool = Field(
        default=False, description="an upstream LM name or backend that is not served ran on the served LM"
    )
    model: dict[str, Any] | None = Field(
        default=None, description="name, family, version_set, network versions, requested name, fallback"
    )
    # One per audio path when the request set align_lyrics (null otherwise).
    alignment: list[ItemLyrics] | None = None
    track_names: list[str] | None = Field(
        default=None, description="with track_names: each audio path's track class, in order (null otherwise)"
    )


class JobPublic(BaseModel):
    job_id: str
    kind: str = Field(default="music", description="music, song or stems (a stems job's result is its stems)")
    status: Literal["queued", "running", "succeeded", "failed", "cancelled"]
    stage: str | None = None
    created_at: float
    started_at: float | None = None
    finished_at: float | None = None
    queue_position: int
    eta_seconds: float | None = None
    avg_job_seconds: float | None = None
    progress: dict[str, Any] | None = None
    result: JobResultPublic | StemsResultPublic | None = None
    error: str | None = None


class JobCreated(BaseModel):
    job_id: str
    status: Literal["queued"] = "queued"
    queue_position: int


class QueryResultRequest(BaseModel):
    model_config = ConfigDict(extra="ignore")
    task_id_list: list[Text] | Text = Field(description="task ids, as a list or a JSON array string")

    @field_validator("task_id_list")
    @classmethod
    def _parse(cls, value: list[str] | str) -> list[str]:
        if isinstance(value, str):
            try:
                parsed = json.loads(value)
            except ValueError:
                parsed = [v.strip() for v in value.split(",") if v.strip()]
            if isinstance(parsed, str):
                parsed = [parsed]
            if not isinstance(parsed, list) or not all(isinstance(v, str) for v in parsed):
                raise ValueError("must be a list of task ids or a JSON array of strings")
            value = parsed
        if len(value) > 100:
            raise ValueError("must hold at most 100 task ids")
        return value


class JobCancelled(BaseModel):
    job_id: str
    status: str
