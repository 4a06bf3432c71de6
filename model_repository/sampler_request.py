"""The sampler's request: parsed from the ``request`` JSON and validated, each error naming the field and the allowed
values (the orchestrator relays these messages to API clients as 422s)."""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from typing import Any

TASK_TYPES = ("text2music", "repaint", "cover", "extract", "lego", "complete")
# Tasks that edit an input: they need source audio (cover may use 5 Hz audio codes instead).
NEEDS_SOURCE = {"repaint": "src_audio", "extract": "src_audio", "lego": "src_audio", "complete": "src_audio"}
FAMILIES = ("acestep15",)
MIN_DURATION_S, MAX_DURATION_S = 10.0, 600.0
MIN_STEPS, MAX_STEPS = 1, 200
MAX_BATCH = 8
MAX_SEED = 2**32 - 1
_CODE = re.compile(r"<\|audio_code_(\d+)\|>")


class RequestError(ValueError):
    """A client mistake; the message names the field and what is allowed."""


@dataclass
class SamplerRequest:
    caption: str = ""
    lyrics: str = ""
    vocal_language: str = "en"
    bpm: int | None = None
    key_scale: str | None = None
    time_signature: str | None = None
    duration: float | None = None
    task_type: str = "text2music"
    track_name: str | None = None
    complete_track_classes: list[str] = field(default_factory=list)
    instruction: str | None = None
    repainting_start: float | None = None
    repainting_end: float | None = None
    audio_cover_strength: float = 1.0
    audio_codes: list[str] = field(default_factory=list)
    inference_steps: int | None = None
    guidance_scale: float = 7.0
    shift: float = 3.0
    use_adg: bool = False
    cfg_interval_start: float = 0.0
    cfg_interval_end: float = 1.0
    timesteps: list[float] | None = None
    seeds: list[int] | None = None
    batch_size: int = 1
    family: str = "acestep15"
    version_set: str | None = None
    versions: dict[str, str] | None = None


def _number(data: dict[str, Any], name: str, lo: float, hi: float, *, integer: bool = False, default: Any = None):
    value = data.get(name, default)
    if value is None:
        return default
    if isinstance(value, bool) or not isinstance(value, int | float) or (integer and not float(value).is_integer()):
        kind = "an integer" if integer else "a number"
        raise RequestError(f"sampler: field '{name}' must be {kind} in {lo:g}..{hi:g}, got {value!r}")
    if not lo <= value <= hi:
        raise RequestError(f"sampler: field '{name}' must be in {lo:g}..{hi:g}, got {value!r}")
    return int(value) if integer else float(value)


def _string(data: dict[str, Any], name: str, default: str | None = None, max_len: int = 20_000) -> str | None:
    value = data.get(name, default)
    if value is None:
        return default
    if not isinstance(value, str):
        raise RequestError(f"sampler: field '{name}' must be a string, got {type(value).__name__}")
    if len(value) > max_len:
        raise RequestError(f"sampler: field '{name}' is {len(value)} characters; at most {max_len} are allowed")
    return value


def parse_request(raw: bytes | str, *, codebook_size: int, has_src_audio: bool) -> SamplerRequest:
    try:
        data = json.loads(raw)
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise RequestError(f"sampler: input 'request' must be a JSON object: {exc}") from None
    if not isinstance(data, dict):
        raise RequestError("sampler: input 'request' must be a JSON object")
    known = set(SamplerRequest.__dataclass_fields__)
    unknown = sorted(set(data) - known)
    if unknown:
        raise RequestError(f"sampler: unknown field(s) {unknown}; allowed: {sorted(known)}")
    req = SamplerRequest()
    req.caption = _string(data, "caption", "") or ""
    req.lyrics = _string(data, "lyrics", "") or ""
    req.vocal_language = _string(data, "vocal_language", "en", max_len=16) or "en"
    req.bpm = _number(data, "bpm", 30, 300, integer=True)
    req.key_scale = _string(data, "key_scale", None, max_len=32)
    req.time_signature = _string(data, "time_signature", None, max_len=8)
    req.duration = _number(data, "duration", MIN_DURATION_S, MAX_DURATION_S)
    req.family = _string(data, "family", "acestep15") or "acestep15"
    if req.family not in FAMILIES:
        raise RequestError(f"sampler: field 'family' must be one of {list(FAMILIES)}, got {req.family!r}")
    req.task_type = _string(data, "task_type", "text2music") or "text2music"
    if req.task_type not in TASK_TYPES:
        raise RequestError(f"sampler: field 'task_type' must be one of {list(TASK_TYPES)}, got {req.task_type!r}")
    req.track_name = _string(data, "track_name", None, max_len=64)
    classes = data.get("complete_track_classes") or []
    if not isinstance(classes, list) or not all(isinstance(c, str) for c in classes):
        raise RequestError("sampler: field 'complete_track_classes' must be a list of strings")
    req.complete_track_classes = classes
    req.instruction = _string(data, "instruction", None, max_len=1000)
    req.repainting_start = _number(data, "repainting_start", 0.0, MAX_DURATION_S)
    req.repainting_end = _number(data, "repainting_end", -1.0, MAX_DURATION_S)
    if (
        req.repainting_start is not None
        and req.repainting_end is not None
        and req.repainting_end > 0
        and req.repainting_start >= req.repainting_end
    ):
        raise RequestError(
            f"sampler: field 'repainting_end' ({req.repainting_end}) must be greater than "
            f"'repainting_start' ({req.repainting_start}), or -1/null for the end of the song"
        )
    req.audio_cover_strength = _number(data, "audio_cover_strength", 0.0, 1.0, default=1.0)
    req.audio_codes = _parse_codes(data.get("audio_codes"), codebook_size)
    req.inference_steps = _number(data, "inference_steps", MIN_STEPS, MAX_STEPS, integer=True)
    req.guidance_scale = _number(data, "guidance_scale", 0.0, 30.0, default=7.0)
    req.shift = _number(data, "shift", 0.01, 10.0, default=3.0)
    use_adg = data.get("use_adg", False)
    if not isinstance(use_adg, bool):
        raise RequestError(f"sampler: field 'use_adg' must be true or false, got {use_adg!r}")
    req.use_adg = use_adg
    req.cfg_interval_start = _number(data, "cfg_interval_start", 0.0, 1.0, default=0.0)
    req.cfg_interval_end = _number(data, "cfg_interval_end", 0.0, 1.0, default=1.0)
    if req.cfg_interval_start > req.cfg_interval_end:
        raise RequestError("sampler: field 'cfg_interval_start' must be <= 'cfg_interval_end'")
    req.timesteps = _parse_timesteps(data.get("timesteps"))
    req.batch_size = _number(data, "batch_size", 1, MAX_BATCH, integer=True, default=1)
    req.seeds = _parse_seeds(data.get("seeds"), req.batch_size)
    req.version_set = _string(data, "version_set", None, max_len=64)
    versions = data.get("versions")
    if versions is not None and (
        not isinstance(versions, dict) or not all(isinstance(v, str | int) for v in versions.values())
    ):
        raise RequestError("sampler: field 'versions' must map model names to version numbers")
    req.versions = {str(k): str(v) for k, v in versions.items()} if versions else None
    if req.task_type == "cover" and not has_src_audio and not req.audio_codes:
        raise RequestError("sampler: task_type 'cover' needs input 'src_audio' or field 'audio_codes'")
    if req.task_type in NEEDS_SOURCE and not has_src_audio:
        raise RequestError(f"sampler: task_type '{req.task_type}' needs input 'src_audio' (48 kHz stereo [2, samples])")
    return req


def _parse_codes(value: Any, codebook_size: int) -> list[str]:
    if value in (None, "", []):
        return []
    items = [value] if isinstance(value, str) else value
    if not isinstance(items, list) or not all(isinstance(v, str) for v in items):
        raise RequestError("sampler: field 'audio_codes' must be a string or a list of strings of <|audio_code_N|>")
    for text in items:
        for match in _CODE.findall(text):
            if int(match) >= codebook_size:
                raise RequestError(
                    f"sampler: field 'audio_codes' has <|audio_code_{match}|>; codes must be in 0..{codebook_size - 1}"
                )
    if not any(_CODE.search(text) for text in items):
        raise RequestError("sampler: field 'audio_codes' contains no <|audio_code_N|> tokens")
    return items


def _parse_timesteps(value: Any) -> list[float] | None:
    if value is None:
        return None
    if (
        not isinstance(value, list)
        or not value
        or len(value) > MAX_STEPS
        or not all(isinstance(t, int | float) and not isinstance(t, bool) and 0.0 < t <= 1.0 for t in value)
    ):
        raise RequestError(f"sampler: field 'timesteps' must be a list of 1..{MAX_STEPS} numbers in (0, 1]")
    if any(b >= a for a, b in zip(value, value[1:], strict=False)):
        raise RequestError("sampler: field 'timesteps' must be strictly decreasing (from noise towards 0)")
    return [float(t) for t in value]


def _parse_seeds(value: Any, batch_size: int) -> list[int] | None:
    if value is None:
        return None
    if isinstance(value, int) and not isinstance(value, bool):
        value = [value]
    if not isinstance(value, list) or not all(isinstance(s, int) and not isinstance(s, bool) for s in value):
        raise RequestError("sampler: field 'seeds' must be a list of integers")
    if not all(0 <= s <= MAX_SEED for s in value):
        raise RequestError(f"sampler: field 'seeds' values must be in 0..{MAX_SEED}")
    if len(value) > batch_size:
        raise RequestError(f"sampler: field 'seeds' has {len(value)} values for batch_size {batch_size}")
    return value
