"""The clip library's shapes: ``GET /v1/clips`` (a page, newest first), ``GET /v1/clips/{id}``, ``POST /v1/clips``
(an upload), ``DELETE /v1/clips/{id}``."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

CLIP_FILE_KINDS = ("audio", "source", "cover", "lrc")


class ClipPublic(BaseModel):
    """One clip as its owner sees it. ``*_url`` are signed links (they work in a browser without a header)."""

    model_config = ConfigDict(extra="forbid")

    id: str = Field(description="the clip id: use it as src_audio_id / reference_audio_id / a stems or edit source")
    origin: Literal["job", "upload"]
    action: str = Field(description="what made it: generate, an ACE-Step task type (cover, repaint, …), stems, upload")
    parent_id: str | None = Field(description="the clip it was made from (may have been deleted since)")
    job_id: str | None = Field(description="the job that made it (None for uploads)")
    item_index: int | None
    title: str | None
    lyrics: str | None
    caption: str | None = Field(description="the style / caption it was made with")
    model: str | None
    seed: int | None
    duration: float | None
    bpm: int | None
    key_scale: str | None
    time_signature: str | None
    audio_format: str
    audio_url: str
    source_url: str = Field(description="the 48 kHz stereo audio an edit starts from (lossless when made here)")
    cover_url: str | None
    lrc_url: str | None
    has_latents: bool = Field(description="the latents it was decoded from are kept (edits on the same model)")
    latent_shape: list[int] | None
    family: str | None
    version_set: str | None
    size_bytes: int
    created_at: float


class ClipPage(BaseModel):
    """A page of the caller's clips, newest first; ``next_cursor`` fetches the next (None: this is the last)."""

    items: list[ClipPublic]
    total: int
    limit: int
    next_cursor: str | None


class ClipDeleted(BaseModel):
    id: str
    deleted: bool = True
    files_removed: int = Field(description="files deleted from the data directory (the clip's and its job item's)")
