"""The edit actions on a clip (``POST /v1/clips/{clip_id}/edits``): one request model per ``action``, each with its
bounds; the shared knobs (``lyrics_strength``, ``sound_strength``, ``weirdness``) and what they map to are described
in ``docs/edits.md``. Field names follow the Producer API (seed 002) where it names them (``lyric``, ``prompt``,
``continue_at``, ``replace_section_start/end``, ``cover_strength``)."""

from __future__ import annotations

from typing import Literal

from pydantic import AliasChoices, BaseModel, ConfigDict, Field, model_validator

from orchestrator.families import MAX_DURATION, MAX_SEED, MAX_STEPS, MIN_DURATION, MIN_STEPS
from orchestrator.schemas.common import AudioFormat, CallbackUrl, Text, TrackClass

EditAction = Literal["extend", "replace_section", "variation", "cover", "swap_vocals", "swap_instrumentals"]
EDIT_ACTIONS: tuple[str, ...] = EditAction.__args__  # type: ignore[attr-defined]
Gender = Literal["male", "female"]


class EditBase(BaseModel):
    """Fields every action takes."""

    model_config = ConfigDict(extra="forbid", allow_inf_nan=False, populate_by_name=True)

    action: EditAction
    model: Text | None = Field(
        default=None,
        max_length=80,
        description="song model as in the ACE-Step API (acestep15, acestep15:base, acestep_v1, ...); null = the "
        "source clip's model, else the deployment's default",
    )
    lyrics_strength: float | None = Field(
        default=None, ge=0.0, le=1.0,
        description="how strongly the lyrics steer the sound: lyric guidance g = l/0.7 up to 0.7, then "
        "1 + 2(l-0.7)/0.3 (0 = no pull, 0.7 = the model's own, 1 = 3x); ACE-Step 1.5: the sampler's lyric_guidance, "
        "v1: guidance_scale_lyric = max(1.01, guidance * g); null = unchanged (docs/edits.md)",
    )
    sound_strength: float | None = Field(
        default=None, ge=0.2, le=1.0,
        description="how strongly the style prompt steers the sound: guidance_scale = s/0.7 x the family's default "
        "(1.5: 7, v1: 15); refused on turbo DiTs (guidance distilled in); null = unchanged",
    )
    weirdness: float | None = Field(
        default=None, ge=0.0, le=1.0,
        description="how far from the expected the sampler may go: the timestep schedule's shift = 1 + 4w "
        "(0.5 = the default 3); null = unchanged",
    )
    inference_steps: int | None = Field(default=None, ge=MIN_STEPS, le=MAX_STEPS, description="null = the model's")
    seed: int | None = Field(default=None, ge=0, le=MAX_SEED, description="null = a random seed")
    audio_format: AudioFormat = "mp3"
    callback_url: CallbackUrl = None


class _Lyrical(EditBase):
    lyrics: Text | None = Field(
        default=None, max_length=10000, validation_alias=AliasChoices("lyrics", "lyric"),
        description="new lyrics; null = the source clip's",
    )
    style: Text | None = Field(
        default=None, max_length=2000, validation_alias=AliasChoices("style", "prompt", "caption"),
        description="style / caption; null = the source clip's",
    )
    instrumental: bool = Field(default=False, description="no vocals: the lyrics become '[Instrumental]'")


class ExtendEdit(_Lyrical):
    """The source up to ``continue_at``, copied sample-exact (a 0.1 s crossfade after it), continued to
    ``duration``."""

    action: Literal["extend"] = "extend"
    continue_at: float | None = Field(
        default=None, ge=0.0, le=float(MAX_DURATION),
        description="seconds of the source kept; the continuation starts here (null = the source's end)",
    )
    duration: float | None = Field(
        default=None, ge=MIN_DURATION, le=MAX_DURATION,
        description="the whole result's length in seconds (null = continue_at + 30 s)",
    )

    @model_validator(mode="after")
    def _longer(self) -> ExtendEdit:
        if self.continue_at is not None and self.duration is not None and self.duration <= self.continue_at + 1.0:
            raise ValueError(
                f"duration: must be more than continue_at + 1 s ({self.continue_at:g} + 1), got {self.duration:g}"
            )
        return self


class ReplaceSectionEdit(_Lyrical):
    """The section regenerated; outside it the source, copied sample-exact (0.1 s crossfades inside the section)."""

    action: Literal["replace_section"] = "replace_section"
    replace_section_start: float = Field(ge=0.0, le=float(MAX_DURATION), description="seconds")
    replace_section_end: float = Field(gt=0.0, le=float(MAX_DURATION), description="seconds")

    @model_validator(mode="after")
    def _ordered(self) -> ReplaceSectionEdit:
        if self.replace_section_end - self.replace_section_start < 1.0:
            raise ValueError(
                f"replace_section_end: must be at least 1 s after replace_section_start "
                f"({self.replace_section_start:g}), got {self.replace_section_end:g}"
            )
        return self


class VariationEdit(_Lyrical):
    action: Literal["variation"] = "variation"
    closeness: float = Field(
        default=0.7, ge=0.2, le=1.0,
        description="how much of the source the variation follows (the sampler's audio_cover_strength)",
    )


class CoverEdit(_Lyrical):
    action: Literal["cover"] = "cover"
    cover_strength: float = Field(
        default=1.0, ge=0.2, le=1.0, description="how closely the cover follows the source (audio_cover_strength)"
    )


class SwapVocalsEdit(_Lyrical):
    action: Literal["swap_vocals"] = "swap_vocals"
    gender: Gender | None = Field(default=None, description="the new voice; added to the style prompt")


class SwapInstrumentalsEdit(EditBase):
    action: Literal["swap_instrumentals"] = "swap_instrumentals"
    style: Text | None = Field(
        default=None, max_length=2000, validation_alias=AliasChoices("style", "prompt", "caption"),
        description="the new accompaniment's style; null = the source clip's",
    )
    tracks: list[TrackClass] | None = Field(
        default=None, min_length=1, max_length=10,
        description="instruments of the new accompaniment (null = drums, bass, keyboard, guitar)",
    )


EDIT_MODELS: dict[str, type[EditBase]] = {
    "extend": ExtendEdit,
    "replace_section": ReplaceSectionEdit,
    "variation": VariationEdit,
    "cover": CoverEdit,
    "swap_vocals": SwapVocalsEdit,
    "swap_instrumentals": SwapInstrumentalsEdit,
}
AnyEdit = ExtendEdit | ReplaceSectionEdit | VariationEdit | CoverEdit | SwapVocalsEdit | SwapInstrumentalsEdit
