"""Field types shared by the request models."""

from __future__ import annotations

import re
from typing import Annotated, Any, Literal, get_args

from pydantic import AfterValidator, BaseModel, Field

TrackClass = Literal[
    "drums",
    "bass",
    "guitar",
    "keyboard",
    "strings",
    "synth",
    "brass",
    "woodwinds",
    "percussion",
    "fx",
    "vocals",
    "backing_vocals",
]
# The page's instrument chips; the tuple is derived from the type so the two cannot drift apart.
TRACK_CLASSES: tuple[str, ...] = get_args(TrackClass)
AudioFormat = Literal["flac", "wav", "wav32", "mp3"]
CoverAspect = Literal["1:1", "3:4", "4:3", "9:16", "16:9"]


def _no_nul(value: str) -> str:
    # PostgreSQL text cannot hold NUL, and no caption or lyric needs one.
    if "\x00" in value:
        raise ValueError("must not contain NUL characters")
    return value


Text = Annotated[str, AfterValidator(_no_nul)]

_KEY_RE = re.compile(r"^\s*([A-Ga-g])\s*([#b♯♭]?)\s*(major|minor|maj|min|m)?\s*$", re.IGNORECASE)
# The twelve pitch classes with their usual sharp/flat spellings (E#, B#, Cb, Fb are not used).
KEY_TONICS = ("C", "C#", "Db", "D", "D#", "Eb", "E", "F", "F#", "Gb", "G", "G#", "Ab", "A", "A#", "Bb", "B")
KEY_SCALE_HELP = (
    "a key like 'C major', 'F# minor', 'Bb major' or 'Am': tonic one of " + " ".join(KEY_TONICS) + ", then major|minor"
)
# ISO 639 codes the ACE-Step models know for vocals ("unknown" = let the model decide).
VOCAL_LANGUAGES = (
    "ar", "az", "bg", "bn", "ca", "cs", "da", "de", "el", "en", "es", "fa", "fi", "fr", "he", "hi", "hr", "ht", "hu",
    "id", "is", "it", "ja", "ko", "la", "lt", "ms", "ne", "nl", "no", "pa", "pl", "pt", "ro", "ru", "sa", "sk", "sr",
    "sv", "sw", "ta", "te", "th", "tl", "tr", "uk", "ur", "vi", "yue", "zh", "unknown",
)  # fmt: skip


def normalize_key_scale(value: str | None) -> str | None:
    """'am' -> 'A minor', 'F#' -> 'F# major', '' -> None; anything else raises ValueError naming the format."""
    if value is None or not value.strip():
        return None
    match = _KEY_RE.match(value)
    if not match:
        raise ValueError(f"must be {KEY_SCALE_HELP}")
    tonic, accidental, mode = match.groups()
    accidental = {"♯": "#", "♭": "b", "B": "b"}.get(accidental, accidental)
    minor = mode is not None and (mode.lower() in ("minor", "min") or mode == "m")
    key = f"{tonic.upper()}{accidental}"
    if key not in KEY_TONICS:
        raise ValueError(f"must be {KEY_SCALE_HELP} (got tonic {key!r})")
    return f"{key} {'minor' if minor else 'major'}"


KeyScale = Annotated[str | None, AfterValidator(normalize_key_scale)]


def _callback_url(value: str | None) -> str | None:
    if value is None or not value.strip():
        return None
    value = value.strip()
    if not re.match(r"^https?://[^\s/?#]+", value):
        raise ValueError("must be an absolute http:// or https:// URL")
    return value


CallbackUrl = Annotated[str | None, Field(default=None, max_length=2048), AfterValidator(_callback_url)]


class ErrorDetail(BaseModel):
    message: str
    field: str | None = None


class ErrorEnvelope(BaseModel):
    code: int
    data: None = None
    error: ErrorDetail
    detail: str


def envelope(data: Any, code: int = 200) -> dict[str, Any]:
    return {"code": code, "data": data, "error": None}


def describe_field(model: type[BaseModel], name: str) -> str | None:
    """The allowed values of ``model.name`` in words ("10 < value <= 600", "one of flac, wav"), from its schema."""
    import typing

    import annotated_types

    info = model.model_fields.get(name)
    if info is None:
        for field_name, candidate in model.model_fields.items():
            alias = candidate.validation_alias
            choices = getattr(alias, "choices", None) or ([alias] if isinstance(alias, str) else [])
            if name in choices:
                info, name = candidate, field_name
                break
    if info is None:
        return None
    lower = upper = None
    max_len = min_len = None
    for meta in info.metadata:
        if isinstance(meta, annotated_types.Ge):
            lower = f"{meta.ge} <= value"
        elif isinstance(meta, annotated_types.Gt):
            lower = f"{meta.gt} < value"
        elif isinstance(meta, annotated_types.Le):
            upper = f"<= {meta.le}"
        elif isinstance(meta, annotated_types.Lt):
            upper = f"< {meta.lt}"
        elif isinstance(meta, annotated_types.MaxLen):
            max_len = meta.max_length
        elif isinstance(meta, annotated_types.MinLen):
            min_len = meta.min_length
    if lower or upper:
        return f"allowed: {lower or 'value'} {upper or ''}".strip()

    def literals(tp: Any) -> list[Any]:
        if typing.get_origin(tp) is Literal:
            return list(typing.get_args(tp))
        found: list[Any] = []
        for arg in typing.get_args(tp):
            found.extend(literals(arg))
        return found

    choices = literals(info.annotation)
    if choices:
        return "allowed: " + ", ".join(str(c) for c in choices)
    if max_len is not None:
        return f"allowed: length {min_len or 0}..{max_len}"
    return None
