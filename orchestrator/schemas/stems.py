"""The stems API: ``POST /v1/stems`` (an uploaded file, or a finished item of the caller's own) and the stems result
as ``GET /v1/jobs/{job_id}`` shows it (one file per stem, and a zip of them all)."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, model_validator

from orchestrator.families import MAX_BATCH, MAX_STEPS, MIN_STEPS
from orchestrator.schemas.common import CallbackUrl, Text, TrackClass


def _int_text(value: Any) -> Any:
    """A form field's "4" is the number 4 (multipart bodies carry text only)."""
    if isinstance(value, str) and value.strip().isdigit():
        return int(value.strip())
    return value


StemSet = Annotated[Literal[2, 4, 6], BeforeValidator(_int_text)]
# How the stems are made. "demucs": HT-Demucs on the served ``separator``; "acestep": ACE-Step 1.5's base DiT extracts
# the classes named in ``tracks`` (services/jobs/stems_tracks.py).
StemsMethod = Literal["demucs", "acestep"]


def _names(value: Any) -> Any:
    """A form field's "vocals,drums" is the list (multipart bodies carry text only)."""
    if isinstance(value, str):
        return [v.strip() for v in value.split(",") if v.strip()] or None
    return value


class StemsCreate(BaseModel):
    """The source is an uploaded ``file`` (multipart), a ``clip_id`` of yours, or ``job_id`` + ``item``: one of your
    own finished results."""

    model_config = ConfigDict(extra="forbid")

    stems: StemSet = Field(
        default=4,
        description="2: vocals + instrumental; 4: drums, bass, other, vocals; 6: adds guitar and piano (only where a "
        "6-source model is served)",
    )
    method: StemsMethod = Field(
        default="demucs",
        description="demucs: HT-Demucs, the stem set 'stems'; acestep: ACE-Step's base DiT extracts each class in "
        "'tracks' (one batch sharing every DiT step; needs a served base checkpoint)",
    )
    tracks: Annotated[list[TrackClass] | None, BeforeValidator(_names)] = Field(
        default=None, max_length=12, description="method acestep: the track classes to extract (vocals, drums, ...)"
    )
    inference_steps: Annotated[int | None, BeforeValidator(_int_text)] = Field(
        default=None, ge=MIN_STEPS, le=MAX_STEPS, description="method acestep: DiT steps (default: the base DiT's)"
    )
    job_id: Text | None = Field(
        default=None, min_length=36, max_length=36, description="a finished job of yours whose item to separate"
    )
    item: Annotated[int, BeforeValidator(_int_text)] = Field(
        default=0, ge=0, le=MAX_BATCH - 1, description="the index of that job's item"
    )
    clip_id: Text | None = Field(default=None, max_length=64, description="a clip of yours (GET /v1/clips) to separate")
    callback_url: CallbackUrl = Field(default=None, description="webhook for status changes (http/https)")

    @model_validator(mode="after")
    def _item_needs_a_job(self) -> StemsCreate:
        if "item" in self.model_fields_set and self.job_id is None:
            raise ValueError("item: names an item of job_id; set job_id too (or upload a file)")
        if self.method == "acestep":
            if "stems" in self.model_fields_set:
                raise ValueError("stems: method 'acestep' makes one stem per entry of tracks; remove stems")
            if not self.tracks:
                raise ValueError("tracks: method 'acestep' needs the classes to extract, e.g. vocals,drums,bass")
            if len(set(self.tracks)) != len(self.tracks):
                raise ValueError(f"tracks: names a class twice: {', '.join(self.tracks)}")
        elif self.tracks or self.inference_steps is not None:
            name = "tracks" if self.tracks else "inference_steps"
            raise ValueError(f"{name}: applies to method 'acestep'; method 'demucs' makes the stem set 'stems'")
        return self


class StemsCreated(BaseModel):
    job_id: str
    status: Literal["queued"] = "queued"
    queue_position: int
    stems: int
    status_url: str = Field(description="GET: the job, with the stems once it has succeeded")
    events_url: str = Field(description="server-sent events: progress, then done or failed")


class StemFile(BaseModel):
    name: str = Field(description="vocals, instrumental, drums, bass, other, guitar, piano")
    file: str
    url: str = Field(description="a signed link to the 48 kHz 32-bit float WAV")
    format: Literal["wav32"] = "wav32"
    sample_rate: int
    duration: float
    clip_id: str | None = Field(default=None, description="the stem as a clip of yours (parent: the source)")


class StemsSource(BaseModel):
    kind: Literal["upload", "item", "clip"]
    filename: str | None = None
    job_id: str | None = None
    item: int | None = None
    clip_id: str | None = None


class StemsResultPublic(BaseModel):
    kind: Literal["stems"] = "stems"
    stems: int
    method: str
    items: list[StemFile]
    zip_url: str = Field(description="every stem in one zip (vocals.wav, drums.wav, ...)")
    zip_file: str
    sample_rate: int
    duration: float
    checkpoint: str | None = None
    source: StemsSource
