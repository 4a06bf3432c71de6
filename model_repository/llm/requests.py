"""Parsing and validation of the JSON requests the ``lyricist`` and ``lm`` models receive.

Every problem raises :class:`RequestError` whose message names the model, the field and what is allowed, e.g.
``lyricist: field 'vocal_gender' must be one of male, female, any (got 'robot')``. The Triton models turn it into a
``TritonError`` and the song API into a 422.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

from model_repository.llm import music

MAX_THEME_CHARS = 2000
MAX_TEXT_CHARS = 2000
MAX_LYRICS_CHARS = 10000
MAX_NEW_TOKENS_LIMIT = 8192
MAX_SEED = 2**63 - 1

VocalGender = Literal["male", "female", "any"]
VocalMode = Literal["sing", "instrumental_from_lyrics", "instrumental_quick"]
LMMode = Literal["metadata", "thinking", "inspire"]

VOCAL_GENDERS: tuple[str, ...] = ("male", "female", "any")
VOCAL_MODES: tuple[str, ...] = ("sing", "instrumental_from_lyrics", "instrumental_quick")
LM_MODES: tuple[str, ...] = ("metadata", "thinking", "inspire")
_LANGUAGE_RE = re.compile(r"^[a-z]{2,3}(-[A-Za-z0-9]{2,8})?$")


class RequestError(ValueError):
    """A client mistake in a request; the message names the field and the allowed values."""

    def __init__(self, model: str, field_name: str, problem: str) -> None:
        super().__init__(f"{model}: field {field_name!r} {problem}")
        self.model = model
        self.field = field_name


@dataclass(frozen=True)
class Sampling:
    """Sampling parameters of one generation. ``top_p`` >= 1 and ``top_k`` <= 0 disable those filters; a
    temperature of 0 means greedy decoding; ``seed`` None draws a fresh one."""

    temperature: float = 0.85
    top_p: float = 1.0
    top_k: int = 0
    repetition_penalty: float = 1.0
    seed: int | None = None


@dataclass(frozen=True)
class FixedMetadata:
    """Metadata values a user gave: they always win over what a model would write."""

    bpm: int | None = None
    key_scale: str | None = None
    time_signature: int | None = None
    duration: int | None = None

    def as_dict(self) -> dict[str, Any]:
        return {k: v for k, v in self.__dict__.items() if v is not None}

    def complete(self) -> bool:
        return None not in (self.bpm, self.key_scale, self.time_signature, self.duration)


@dataclass(frozen=True)
class LyricistRequest:
    theme: str
    language: str = "zh"
    rhyme: str | None = None
    style: str | None = None
    vocal_gender: VocalGender = "male"
    duration_hint: float = 220.0
    additional_instructions: str | None = None
    vocal_mode: VocalMode = "sing"
    track_classes: tuple[str, ...] = ()
    sampling: Sampling = field(default_factory=Sampling)
    max_new_tokens: int | None = None
    fixed: FixedMetadata = field(default_factory=FixedMetadata)
    expand_theme: bool = True


@dataclass(frozen=True)
class LMRequest:
    mode: LMMode
    caption: str = ""
    lyrics: str = ""
    description: str = ""
    instrumental: bool = False
    vocal_language: str | None = None
    fixed: FixedMetadata = field(default_factory=FixedMetadata)
    sampling: Sampling = field(default_factory=lambda: Sampling(top_p=0.9))
    cfg_scale: float = 2.0
    negative_prompt: str = "NO USER INPUT"
    max_new_tokens: int | None = None


# --------------------------------------------------------------------------------------------------------------------
# Field readers
# --------------------------------------------------------------------------------------------------------------------


class _Reader:
    """Reads fields out of one request object, remembering which ones were consumed."""

    def __init__(self, model: str, payload: Mapping[str, Any], allowed: tuple[str, ...]) -> None:
        self.model = model
        self.payload = payload
        unknown = sorted(set(payload) - set(allowed))
        if unknown:
            raise RequestError(model, unknown[0], f"is not a known field; allowed fields: {', '.join(allowed)}")

    def _err(self, name: str, problem: str) -> RequestError:
        return RequestError(self.model, name, problem)

    def present(self, name: str) -> bool:
        return self.payload.get(name) is not None

    def text(
        self, name: str, *, default: str | None = None, max_chars: int = MAX_TEXT_CHARS, required: bool = False
    ) -> str | None:
        value = self.payload.get(name)
        if value is None:
            if required:
                raise self._err(name, f"is required: a non-empty string of at most {max_chars} characters")
            return default
        if not isinstance(value, str):
            raise self._err(name, f"must be a string of at most {max_chars} characters (got {type(value).__name__})")
        value = value.strip()
        if required and not value:
            raise self._err(name, f"must be a non-empty string of at most {max_chars} characters")
        if len(value) > max_chars:
            raise self._err(name, f"must be a string of at most {max_chars} characters (got {len(value)})")
        return value if value else default

    def choice(self, name: str, allowed: tuple[str, ...], default: str | None) -> str | None:
        value = self.payload.get(name)
        if value is None:
            return default
        if value not in allowed:
            raise self._err(name, f"must be one of {', '.join(allowed)} (got {value!r})")
        return str(value)

    def number(
        self,
        name: str,
        lo: float,
        hi: float,
        default: float | None,
        *,
        lo_open: bool = False,
        integer: bool = False,
    ) -> float | None:
        value = self.payload.get(name)
        kind = "an integer" if integer else "a number"
        bounds = f"{'(' if lo_open else '['}{_fmt(lo)}, {_fmt(hi)}]"
        if value is None:
            return default
        if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
            raise self._err(name, f"must be {kind} in {bounds} (got {value!r})")
        if integer and not float(value).is_integer():
            raise self._err(name, f"must be {kind} in {bounds} (got {value!r})")
        if value < lo or value > hi or (lo_open and value <= lo):
            raise self._err(name, f"must be {kind} in {bounds} (got {value!r})")
        return float(value)

    def integer(self, name: str, lo: int, hi: int, default: int | None) -> int | None:
        value = self.number(name, lo, hi, None, integer=True)
        return default if value is None else int(value)

    def boolean(self, name: str, default: bool) -> bool:
        value = self.payload.get(name)
        if value is None:
            return default
        if not isinstance(value, bool):
            raise self._err(name, f"must be true or false (got {value!r})")
        return value

    def seed(self) -> int | None:
        seed = self.integer("seed", -1, MAX_SEED, None)
        return None if seed is None or seed < 0 else seed

    def language(self, name: str, default: str | None) -> str | None:
        value = self.payload.get(name)
        if value is None or value == "":
            return default
        if not isinstance(value, str) or not _LANGUAGE_RE.match(value.strip().lower()):
            raise self._err(name, f"must be an ISO 639 language code such as 'zh', 'en', 'ja' (got {value!r})")
        return value.strip().lower()

    def fixed_metadata(self) -> FixedMetadata:
        bpm = self.integer("bpm", music.BPM_MIN, music.BPM_MAX, None)
        duration = self.number("duration", music.DURATION_MIN, music.DURATION_MAX, None)
        key_scale = None
        raw_key = self.payload.get("key_scale")
        if raw_key not in (None, ""):
            key_scale = music.normalize_key_scale(raw_key) if isinstance(raw_key, str) else None
            if key_scale is None:
                raise self._err(
                    "key_scale",
                    f"must be a key such as 'C major' or 'F# minor': a note A-G, optional # or b, then major or "
                    f"minor; allowed: {', '.join(music.KEY_SCALES)} (got {raw_key!r})",
                )
        time_signature = None
        raw_ts = self.payload.get("time_signature")
        if raw_ts not in (None, ""):
            time_signature = music.normalize_time_signature(raw_ts)
            if time_signature is None:
                raise self._err(
                    "time_signature",
                    f"must be one of {', '.join(map(str, music.TIME_SIGNATURES))} (beats per bar; '4/4' and '6/8' "
                    f"are accepted too) (got {raw_ts!r})",
                )
        return FixedMetadata(
            bpm=bpm,
            key_scale=key_scale,
            time_signature=time_signature,
            duration=None if duration is None else int(round(duration)),
        )


def _fmt(x: float) -> str:
    return str(int(x)) if float(x).is_integer() else str(x)


def _load(model: str, payload: str | bytes | Mapping[str, Any]) -> Mapping[str, Any]:
    if isinstance(payload, bytes | str):
        try:
            payload = json.loads(payload)
        except (UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise RequestError(model, "request", f"must be a UTF-8 JSON object ({exc})") from None
    if not isinstance(payload, Mapping):
        raise RequestError(model, "request", f"must be a JSON object (got {type(payload).__name__})")
    return payload


# --------------------------------------------------------------------------------------------------------------------
# The two request kinds
# --------------------------------------------------------------------------------------------------------------------

LYRICIST_FIELDS: tuple[str, ...] = (
    "theme", "language", "rhyme", "style", "vocal_gender", "duration_hint", "additional_instructions",
    "temperature", "top_p", "seed", "vocal_mode", "track_classes", "max_new_tokens",
    "bpm", "key_scale", "time_signature", "duration", "expand_theme",
)  # fmt: skip

LM_FIELDS: tuple[str, ...] = (
    "mode", "caption", "lyrics", "description", "instrumental", "vocal_language",
    "bpm", "key_scale", "time_signature", "duration",
    "temperature", "cfg_scale", "negative_prompt", "top_k", "top_p", "repetition_penalty", "seed", "max_new_tokens",
)  # fmt: skip


def parse_lyricist_request(payload: str | bytes | Mapping[str, Any]) -> LyricistRequest:
    """Validate a lyricist request (a JSON text or an already decoded object)."""
    r = _Reader("lyricist", _load("lyricist", payload), LYRICIST_FIELDS)
    theme = r.text("theme", required=True, max_chars=MAX_THEME_CHARS)
    assert theme is not None
    tracks_raw = r.payload.get("track_classes")
    tracks: tuple[str, ...] = ()
    if tracks_raw is not None:
        if not isinstance(tracks_raw, list) or not all(isinstance(t, str) for t in tracks_raw):
            raise RequestError(
                "lyricist",
                "track_classes",
                f"must be a list of track names from {', '.join(music.TRACK_CLASSES)} (got {tracks_raw!r})",
            )
        bad = [t for t in tracks_raw if t not in music.TRACK_CLASSES]
        if bad:
            raise RequestError(
                "lyricist",
                "track_classes",
                f"must only contain {', '.join(music.TRACK_CLASSES)} (got {bad[0]!r})",
            )
        tracks = tuple(dict.fromkeys(tracks_raw))
    temperature = r.number("temperature", 0.0, 2.0, 0.85)
    top_p = r.number("top_p", 0.0, 1.0, 0.95, lo_open=True)
    assert temperature is not None and top_p is not None
    return LyricistRequest(
        theme=theme,
        language=r.language("language", "zh") or "zh",
        rhyme=r.text("rhyme", max_chars=40),
        style=r.text("style", max_chars=300),
        vocal_gender=r.choice("vocal_gender", VOCAL_GENDERS, "male"),  # type: ignore[arg-type]
        duration_hint=r.number("duration_hint", music.DURATION_MIN, music.DURATION_MAX, 220.0) or 220.0,
        additional_instructions=r.text("additional_instructions", max_chars=MAX_TEXT_CHARS),
        vocal_mode=r.choice("vocal_mode", VOCAL_MODES, "sing"),  # type: ignore[arg-type]
        track_classes=tracks,
        sampling=Sampling(temperature=temperature, top_p=top_p, seed=r.seed()),
        max_new_tokens=r.integer("max_new_tokens", 1, MAX_NEW_TOKENS_LIMIT, None),
        fixed=r.fixed_metadata(),
        expand_theme=r.boolean("expand_theme", True),
    )


def parse_lm_request(payload: str | bytes | Mapping[str, Any]) -> LMRequest:
    """Validate an lm request (a JSON text or an already decoded object)."""
    r = _Reader("lm", _load("lm", payload), LM_FIELDS)
    mode = r.choice("mode", LM_MODES, None)
    if mode is None:
        raise RequestError("lm", "mode", f"is required: one of {', '.join(LM_MODES)}")
    description = r.text("description", default="", max_chars=MAX_TEXT_CHARS) or ""
    if mode == "inspire" and not description:
        raise RequestError(
            "lm",
            "description",
            f"is required in mode 'inspire': a non-empty string of at most {MAX_TEXT_CHARS} "
            "characters describing the song",
        )
    vocal_language = r.payload.get("vocal_language")
    if vocal_language not in (None, "") and vocal_language not in music.VOCAL_LANGUAGES:
        raise RequestError(
            "lm", "vocal_language", f"must be one of {', '.join(music.VOCAL_LANGUAGES)} (got {vocal_language!r})"
        )
    temperature = r.number("temperature", 0.0, 2.0, 0.85)
    top_p = r.number("top_p", 0.0, 1.0, 0.9, lo_open=True)
    top_k = r.integer("top_k", 0, 100000, 0)
    penalty = r.number("repetition_penalty", 0.0, 5.0, 1.0, lo_open=True)
    cfg_scale = r.number("cfg_scale", 1.0, 20.0, 2.0)
    assert temperature is not None and top_p is not None and top_k is not None and penalty is not None
    assert cfg_scale is not None
    return LMRequest(
        mode=mode,  # type: ignore[arg-type]
        caption=r.text("caption", default="", max_chars=MAX_TEXT_CHARS) or "",
        lyrics=r.text("lyrics", default="", max_chars=MAX_LYRICS_CHARS) or "",
        description=description,
        instrumental=r.boolean("instrumental", False),
        vocal_language=vocal_language or None,
        fixed=r.fixed_metadata(),
        sampling=Sampling(temperature=temperature, top_p=top_p, top_k=top_k, repetition_penalty=penalty, seed=r.seed()),
        cfg_scale=cfg_scale,
        negative_prompt=r.text("negative_prompt", default="NO USER INPUT", max_chars=MAX_TEXT_CHARS) or "",
        max_new_tokens=r.integer("max_new_tokens", 1, MAX_NEW_TOKENS_LIMIT, None),
    )
