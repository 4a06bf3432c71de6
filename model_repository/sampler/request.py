"""The sampler's request: parsed from the ``request`` JSON and validated, each error naming the field and the allowed
values (the orchestrator relays these messages to API clients as 422s).

One request format serves both families (``family``: ``acestep15``, the default, or ``acestep_v1``). Fields shared by
both: caption, lyrics, duration, task_type, inference_steps, guidance_scale, shift, seeds, batch_size, version_set,
versions. Fields of one family only are rejected for the other when they carry a value other than their default
(``ACESTEP15_ONLY``, ``ACESTEP_V1_ONLY``), except the 1.5 prompt metadata (``vocal_language``, ``bpm``, ``key_scale``,
``time_signature``): v1 takes the caption as its tags and detects each lyric line's language, so it ignores them
and says so in its ``done`` event (``ignored_fields``).

``{"describe": true}`` alone asks the sampler which families and version sets it serves.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from typing import Any

from model_repository.facts.families import (
    ACESTEP15_FACTS,
    ACESTEP_V1_FACTS,
    FAMILIES,
    FAMILY_FACTS,
    MAX_BATCH,
    MAX_DURATION_S,
    MAX_SEED,
    MAX_STEPS,
    MIN_DURATION_S,
    MIN_STEPS,
    TRACK_CLASSES,
)

TASK_TYPES = ACESTEP15_FACTS.task_types
V1_TASK_TYPES = ACESTEP_V1_FACTS.task_types
V1_NEEDS_SOURCE = ACESTEP_V1_FACTS.needs_source
V1_GUIDANCE_TYPES = ("apg", "cfg", "cfg_star")
V1_SCHEDULERS = ("euler", "heun")
V1_MAX_DURATION_S = ACESTEP_V1_FACTS.max_duration_s
# Tasks that edit an input: they need source audio (cover may use 5 Hz audio codes instead).
NEEDS_SOURCE = {task: "src_audio" for task in ACESTEP15_FACTS.needs_source}
DEFAULT_GUIDANCE = {name: facts.default_guidance for name, facts in FAMILY_FACTS.items()}
MAX_LYRIC_GUIDANCE = 10.0
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
    # ACE-Step 1.5 extract of several track classes as one batch: item i is class track_names[i] (one seed for all).
    track_names: list[str] = field(default_factory=list)
    instruction: str | None = None
    repainting_start: float | None = None
    repainting_end: float | None = None
    audio_cover_strength: float = 1.0
    # ACE-Step 1.5: lyric guidance g (None/1 = off): velocity += (g - 1) * (v(cond) - v(cond without lyrics))
    lyric_guidance: float | None = None
    audio_codes: list[str] = field(default_factory=list)
    inference_steps: int | None = None
    guidance_scale: float = 7.0  # parse_request fills in the family's default (DEFAULT_GUIDANCE)
    shift: float = 3.0
    use_adg: bool = False
    # ACE-Step 1.5: time the lyrics from the DiT's cross-attention (one extra dit_align call; docs/lyric-alignment.md)
    align_lyrics: bool = False
    cfg_interval_start: float = 0.0
    cfg_interval_end: float = 1.0
    timesteps: list[float] | None = None
    seeds: list[int] | None = None
    batch_size: int = 1
    family: str = "acestep15"
    version_set: str | None = None
    versions: dict[str, str] | None = None
    # ACE-Step v1 only (the original pipeline's names and defaults)
    omega_scale: float = 10.0
    scheduler: str = "euler"
    guidance_type: str = "apg"
    guidance_interval: float = 0.5
    guidance_interval_decay: float = 0.0
    min_guidance_scale: float = 3.0
    guidance_scale_text: float = 0.0
    guidance_scale_lyric: float = 0.0
    use_erg_tag: bool = True
    use_erg_lyric: bool = True
    use_erg_diffusion: bool = True
    retake_variance: float = 0.5
    retake_seeds: list[int] | None = None
    repaint_start: float | None = None
    repaint_end: float | None = None
    describe: bool = False
    # Set by parse_request (not a request field): the fields this family ignored, for the done event.
    ignored_fields: list[str] = field(default_factory=list)


INTERNAL_FIELDS = ("ignored_fields",)


ACESTEP15_ONLY = ACESTEP15_FACTS.own_fields
# Lyric timing is off unless asked for (it costs one DiT evaluation and the DTW per song: docs/lyric-alignment.md).
ALIGN_LYRICS_DEFAULT = False
ACESTEP_V1_ONLY = ACESTEP_V1_FACTS.own_fields
# Read by 1.5's prompt format; v1 ignores them (reported in its done event).
V1_IGNORED = ("vocal_language", "bpm", "key_scale", "time_signature")
_EMPTY = (None, "", [], {})


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


def parse_request(
    raw: bytes | str, *, codebook_size: int | None, has_src_audio: bool, has_reference_audio: bool = False
) -> SamplerRequest:
    """``codebook_size``: the 1.5 family's 5 Hz codebook (None when the repository serves no 1.5 family)."""
    try:
        data = json.loads(raw)
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise RequestError(f"sampler: input 'request' must be a JSON object: {exc}") from None
    if not isinstance(data, dict):
        raise RequestError("sampler: input 'request' must be a JSON object")
    known = set(SamplerRequest.__dataclass_fields__) - set(INTERNAL_FIELDS)
    unknown = sorted(set(data) - known)
    if unknown:
        raise RequestError(f"sampler: unknown field(s) {unknown}; allowed: {sorted(known)}")
    if "describe" in data:
        if data["describe"] is not True or len(data) != 1:
            raise RequestError("sampler: field 'describe' must be true and come alone: {\"describe\": true}")
        return SamplerRequest(describe=True)
    family = _string(data, "family", "acestep15") or "acestep15"
    if family not in FAMILIES:
        raise RequestError(f"sampler: field 'family' must be one of {list(FAMILIES)}, got {family!r}")
    _check_family_fields(data, family)
    if family == "acestep_v1":
        if has_reference_audio:
            raise RequestError("sampler: input 'reference_audio' applies to family 'acestep15' only")
        return _parse_v1(data, has_src_audio=has_src_audio)
    req = SamplerRequest()
    req.vocal_language = _string(data, "vocal_language", "en", max_len=16) or "en"
    req.bpm = _number(data, "bpm", 30, 300, integer=True)
    req.key_scale = _string(data, "key_scale", None, max_len=32)
    signature = data.get("time_signature")
    if isinstance(signature, int) and not isinstance(signature, bool):
        signature = str(signature)  # 4 and "4" mean the same (beats per bar, as the metadata string writes it)
    req.time_signature = _string({"time_signature": signature}, "time_signature", None, max_len=8)
    req.duration = _number(data, "duration", MIN_DURATION_S, MAX_DURATION_S)
    req.family = family
    req.task_type = _string(data, "task_type", "text2music") or "text2music"
    if req.task_type not in TASK_TYPES:
        raise RequestError(f"sampler: field 'task_type' must be one of {list(TASK_TYPES)}, got {req.task_type!r}")
    req.track_name = _string(data, "track_name", None, max_len=64)
    classes = data.get("complete_track_classes") or []
    if not isinstance(classes, list) or not all(isinstance(c, str) for c in classes):
        raise RequestError("sampler: field 'complete_track_classes' must be a list of strings")
    req.complete_track_classes = classes
    req.instruction = _string(data, "instruction", None, max_len=1000)
    req.track_names = _parse_track_names(data)
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
    req.lyric_guidance = _number(data, "lyric_guidance", 0.0, MAX_LYRIC_GUIDANCE)
    req.audio_codes = _parse_codes(data.get("audio_codes"), codebook_size or 0)
    _parse_shared(req, data)
    req.use_adg = _bool(data, "use_adg", False)
    req.align_lyrics = _bool(data, "align_lyrics", ALIGN_LYRICS_DEFAULT)
    req.cfg_interval_start = _number(data, "cfg_interval_start", 0.0, 1.0, default=0.0)
    req.cfg_interval_end = _number(data, "cfg_interval_end", 0.0, 1.0, default=1.0)
    if req.cfg_interval_start > req.cfg_interval_end:
        raise RequestError("sampler: field 'cfg_interval_start' must be <= 'cfg_interval_end'")
    req.timesteps = _parse_timesteps(data.get("timesteps"))
    if req.track_names:
        _check_track_batch(req, data)
    if req.task_type == "cover" and not has_src_audio and not req.audio_codes:
        raise RequestError("sampler: task_type 'cover' needs input 'src_audio' or field 'audio_codes'")
    if req.task_type in NEEDS_SOURCE and not has_src_audio:
        raise RequestError(f"sampler: task_type '{req.task_type}' needs input 'src_audio' (48 kHz stereo [2, samples])")
    return req


def _parse_shared(req: SamplerRequest, data: dict[str, Any]) -> None:
    """The fields both families read the same way."""
    req.caption = _string(data, "caption", "") or ""
    req.lyrics = _string(data, "lyrics", "") or ""
    req.inference_steps = _number(data, "inference_steps", MIN_STEPS, MAX_STEPS, integer=True)
    req.guidance_scale = _number(data, "guidance_scale", 0.0, 30.0, default=DEFAULT_GUIDANCE[req.family])
    req.shift = _number(data, "shift", 0.01, 10.0, default=3.0)
    # A track batch (``track_names``) holds one item per class, up to all of them.
    tracks = data.get("track_names")
    most = len(TRACK_CLASSES) if tracks else MAX_BATCH
    default = len(tracks) if isinstance(tracks, list) and tracks else 1
    req.batch_size = _number(data, "batch_size", 1, most, integer=True, default=default)
    req.seeds = _parse_seeds(data.get("seeds"), req.batch_size)
    req.version_set = _string(data, "version_set", None, max_len=64)
    versions = data.get("versions")
    if versions is not None and (
        not isinstance(versions, dict) or not all(isinstance(v, str | int) for v in versions.values())
    ):
        raise RequestError("sampler: field 'versions' must map model names to version numbers")
    req.versions = {str(k): str(v) for k, v in versions.items()} if versions else None


def _bool(data: dict[str, Any], name: str, default: bool) -> bool:
    value = data.get(name, default)
    if value is None:
        return default
    if not isinstance(value, bool):
        raise RequestError(f"sampler: field '{name}' must be true or false, got {value!r}")
    return value


def _check_family_fields(data: dict[str, Any], family: str) -> None:
    """Fields of the other family must be absent, null or at their default."""
    defaults = SamplerRequest()
    foreign = ACESTEP_V1_ONLY if family == "acestep15" else ACESTEP15_ONLY
    other = "acestep_v1" if family == "acestep15" else "acestep15"
    for name in foreign:
        value = data.get(name)
        if value in _EMPTY or value == getattr(defaults, name):
            continue
        raise RequestError(
            f"sampler: field '{name}' applies to family '{other}' only; family '{family}' does not take it "
            f"(remove it, or set \"family\": \"{other}\")"
        )


def _parse_v1(data: dict[str, Any], *, has_src_audio: bool) -> SamplerRequest:
    req = SamplerRequest(family="acestep_v1")
    _parse_shared(req, data)
    req.ignored_fields = [name for name in V1_IGNORED if data.get(name) not in _EMPTY]
    req.duration = _number(data, "duration", MIN_DURATION_S, V1_MAX_DURATION_S)
    req.vocal_language = _string(data, "vocal_language", "en", max_len=16) or "en"
    req.task_type = _string(data, "task_type", "text2music") or "text2music"
    if req.task_type not in V1_TASK_TYPES:
        raise RequestError(
            f"sampler: field 'task_type' must be one of {list(V1_TASK_TYPES)} for family 'acestep_v1', "
            f"got {req.task_type!r}"
        )
    req.omega_scale = _number(data, "omega_scale", -100.0, 100.0, default=10.0)
    req.scheduler = _string(data, "scheduler", "euler", max_len=16) or "euler"
    if req.scheduler not in V1_SCHEDULERS:
        raise RequestError(f"sampler: field 'scheduler' must be one of {list(V1_SCHEDULERS)}, got {req.scheduler!r}")
    req.guidance_type = _string(data, "guidance_type", "apg", max_len=16) or "apg"
    if req.guidance_type not in V1_GUIDANCE_TYPES:
        raise RequestError(
            f"sampler: field 'guidance_type' must be one of {list(V1_GUIDANCE_TYPES)}, got {req.guidance_type!r}"
        )
    req.guidance_interval = _number(data, "guidance_interval", 0.0, 1.0, default=0.5)
    req.guidance_interval_decay = _number(data, "guidance_interval_decay", 0.0, 1.0, default=0.0)
    req.min_guidance_scale = _number(data, "min_guidance_scale", 0.0, 30.0, default=3.0)
    req.guidance_scale_text = _number(data, "guidance_scale_text", 0.0, 30.0, default=0.0)
    req.guidance_scale_lyric = _number(data, "guidance_scale_lyric", 0.0, 30.0, default=0.0)
    for name in ("use_erg_tag", "use_erg_lyric", "use_erg_diffusion"):
        setattr(req, name, _bool(data, name, True))
    req.retake_variance = _number(data, "retake_variance", 0.0, 1.0, default=0.5)
    req.retake_seeds = _parse_seeds(data.get("retake_seeds"), req.batch_size, name="retake_seeds")
    req.repaint_start = _number(data, "repaint_start", -V1_MAX_DURATION_S, V1_MAX_DURATION_S)
    req.repaint_end = _number(data, "repaint_end", 0.0, 2 * V1_MAX_DURATION_S)
    if req.task_type in V1_NEEDS_SOURCE:
        if not has_src_audio:
            raise RequestError(
                f"sampler: task_type '{req.task_type}' needs input 'src_audio' (48 kHz stereo [2, samples])"
            )
        if req.repaint_start is None or req.repaint_end is None:
            raise RequestError(
                f"sampler: task_type '{req.task_type}' needs fields 'repaint_start' and 'repaint_end' (seconds)"
            )
        if req.repaint_end <= req.repaint_start:
            raise RequestError(
                f"sampler: field 'repaint_end' ({req.repaint_end:g}) must be greater than 'repaint_start' "
                f"({req.repaint_start:g})"
            )
        if req.task_type == "repaint" and req.repaint_start < 0:
            raise RequestError(
                "sampler: field 'repaint_start' must be >= 0 for task_type 'repaint' (a negative start extends the "
                "song: use task_type 'extend')"
            )
    elif req.repaint_start is not None or req.repaint_end is not None:
        raise RequestError(
            f"sampler: fields 'repaint_start'/'repaint_end' apply to task_type 'repaint' or 'extend', "
            f"not {req.task_type!r}"
        )
    elif has_src_audio:
        raise RequestError(
            f"sampler: input 'src_audio' applies to task_type 'repaint' or 'extend', not {req.task_type!r}"
        )
    return req


def _parse_track_names(data: dict[str, Any]) -> list[str]:
    value = data.get("track_names")
    if value in (None, []):
        return []
    allowed = list(TRACK_CLASSES)
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise RequestError(f"sampler: field 'track_names' must be a list of track classes from {allowed}")
    unknown = [v for v in value if v not in TRACK_CLASSES]
    if unknown:
        raise RequestError(f"sampler: field 'track_names' has {unknown}; allowed: {allowed}")
    if len(set(value)) != len(value):
        raise RequestError(f"sampler: field 'track_names' names a class twice: {value}")
    return list(value)


def _check_track_batch(req: SamplerRequest, data: dict[str, Any]) -> None:
    """``track_names``: one extract item per class, all in one batch sharing the source, the seed and every step."""
    names = req.track_names
    if req.task_type != "extract":
        raise RequestError(
            f"sampler: field 'track_names' applies to task_type 'extract' only, not {req.task_type!r} "
            "(use 'track_name' for lego)"
        )
    for name in ("track_name", "instruction"):
        if data.get(name) not in _EMPTY:
            raise RequestError(
                f"sampler: field '{name}' cannot come with 'track_names' (each class gets its own extract "
                "instruction); send one of them"
            )
    if "batch_size" in data and data["batch_size"] not in (None, len(names)):
        raise RequestError(
            f"sampler: field 'batch_size' must be {len(names)} (one item per entry of 'track_names') or absent, "
            f"got {data['batch_size']!r}"
        )
    if req.seeds is not None and len(req.seeds) > 1:
        raise RequestError("sampler: field 'seeds' takes one seed with 'track_names' (every class shares it)")
    if req.align_lyrics:
        raise RequestError("sampler: field 'align_lyrics' does not apply to 'track_names' (an extract has no lyrics "
                           "to time); remove it")
    req.batch_size = len(names)


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


def _parse_seeds(value: Any, batch_size: int, name: str = "seeds") -> list[int] | None:
    if value is None:
        return None
    if isinstance(value, int) and not isinstance(value, bool):
        value = [value]
    if not isinstance(value, list) or not all(isinstance(s, int) and not isinstance(s, bool) for s in value):
        raise RequestError(f"sampler: field '{name}' must be a list of integers")
    if not all(0 <= s <= MAX_SEED for s in value):
        raise RequestError(f"sampler: field '{name}' values must be in 0..{MAX_SEED}")
    if len(value) > batch_size:
        raise RequestError(f"sampler: field '{name}' has {len(value)} values for batch_size {batch_size}")
    return value
