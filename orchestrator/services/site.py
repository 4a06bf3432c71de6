"""The page's reference sections (seed 000), generated from the running service so they cannot drift from it.

- :func:`limits` — the API's ranges, from :mod:`orchestrator.families` (the family facts) and the settings;
- :func:`performance` — this deployment's own measured stage times and queue figures beside seed 000's reference;
- :func:`request_fields` — the request body table, read from the OpenAPI schema (type, default, range, description);
- :func:`error_codes` — the statuses the song API answers (from its OpenAPI responses) with what to do about each.

The code examples and the AI-integration prompt are :mod:`orchestrator.services.site_examples`.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any, get_args

from orchestrator.families import FAMILY_FACTS, MAX_BATCH, MAX_DURATION, MAX_STEPS, MIN_DURATION, MIN_STEPS
from orchestrator.schemas.acestep import music_task_types
from orchestrator.schemas.common import AudioFormat
from orchestrator.schemas.song import SongCreate
from orchestrator.settings import Settings

logger = logging.getLogger(__name__)

SONG_CREATE = "SongCreate"
RHYMES = ("-ai", "-ang", "-ou", "-ing", "-an")
EDIT_TASKS = ("cover", "repaint")  # the source-audio tasks that need nothing but the song itself
# Seed 000's reference figures (measured on an A800 80GB, lyricist + audio model), shown beside this deployment's.
REFERENCE = {
    "hardware": "A800 80GB",
    "post_response": "< 1 s",
    "lyrics": "90 ~ 150 s",
    "audio": "15 ~ 40 s",
    "total": "~ 2-4 min",
    "get_status": "< 100 ms",
}
# The request fields' Chinese descriptions (the English ones are the schema's own).
FIELD_ZH = {
    "theme": "主题",
    "language": '"zh" 或 "en" 等 ISO 639 代码',
    "rhyme": "韵脚",
    "style": "风格描述",
    "vocal_gender": "声线",
    "duration_hint": "期望时长",
    "additional_instructions": "额外指令",
    "temperature": "采样温度",
    "expand_theme": "主题扩写(多一次 LLM 调用)",
    "vocal_mode": "写词演唱 / 按歌词的纯音乐 / 快速纯音乐",
    "track_classes": "主推乐器",
    "bpm": "手动覆盖 BPM",
    "key_scale": "手动覆盖调性",
    "duration": "手动覆盖时长",
    "audio_format": "音频格式",
    "inference_steps": "DiT 推理步数",
    "guidance_scale": "CFG 引导强度",
    "use_adg": "自适应引导 ADG",
    "align_lyrics": "歌词时间对齐(逐行时间戳)",
    "batch_size": "每次生成几首",
    "generate_cover": "是否同步生成封面图",
    "cover_size": "封面比例,留空走部署默认",
    "seed": "随机种子;第 i 首用 seed + i",
    "model": "模型(系列:版本集),留空走部署默认",
    "callback_url": "完成后回调的 URL",
}
# What to do about each status the song API answers: (zh title, en title, zh remedy, en remedy).
ERROR_HELP: dict[int, tuple[str, str, str, str]] = {
    401: (
        "未登录 / token 无效",
        "Unauthorized",
        "先调 POST /auth/login 拿 token(或带 X-API-Key)。",
        "Call POST /auth/login first (or send X-API-Key).",
    ),
    404: (
        "intent_id 不存在",
        "Unknown intent_id",
        "intent_id 拼写错误,或属于其他用户。",
        "Misspelled, or it belongs to another user.",
    ),
    413: ("请求体过大", "Body too large", "缩短文本或上传文件。", "Shorten the texts or the upload."),
    422: (
        "参数校验失败",
        "Validation error",
        "看 error.field 指出的字段:theme 非空、duration_hint 在 ({lo}, {hi}] 等。",
        "Fix the field error.field names: theme non-empty, duration_hint in ({lo}, {hi}], etc.",
    ),
    429: (
        "作业队列已满",
        "Job queue full",
        "按 Retry-After 稍后重试;队列上限 {queue_max},每用户 {user_max}。",
        "Retry after Retry-After seconds; the queue holds {queue_max} jobs, {user_max} per user.",
    ),
    503: (
        "Lyricist 服务未启用",
        "Lyricist service not enabled",
        "部署时设 TRITONE_ENABLE_LYRICIST=true(或 ACESTEP_ENABLE_LYRICIST=true);纯音乐 instrumental_quick 不受影响。",
        "Set TRITONE_ENABLE_LYRICIST=true (or ACESTEP_ENABLE_LYRICIST=true); instrumental_quick still works.",
    ),
}


def limits(settings: Settings) -> dict[str, Any]:
    """The limits section: one place (the family facts and the settings) for the page, the form and the API."""
    families = {
        name: {
            "max_duration": facts.max_duration_s,
            "default_steps": facts.default_steps,
            "default_steps_turbo": facts.default_steps_turbo,
            "default_guidance": facts.default_guidance,
        }
        for name, facts in FAMILY_FACTS.items()
    }
    return {
        "audio_duration": {"min": MIN_DURATION, "max": MAX_DURATION},
        "inference_steps": {
            "min": MIN_STEPS,
            "max": MAX_STEPS,
            "recommended": SongCreate.model_fields["inference_steps"].default,
        },
        "batch_size": {"min": 1, "max": MAX_BATCH, "recommended": settings.default_batch_size},
        "audio_formats": list(get_args(AudioFormat)),
        "queue_max": settings.queue_max,
        "user_queue_max": settings.user_queue_max,
        "rhymes": list(RHYMES),
        "poll_interval_sec": settings.poll_interval_sec,
        "lyricist_enabled": settings.enable_lyricist,
        "default_model": settings.default_model,
        "families": families,
        # The edits the library offers on a finished song (POST /v1/music/generate with src_audio_path).
        "edit_tasks": [t for t in music_task_types(settings.default_model_family) if t in EDIT_TASKS],
    }


def performance(
    stage_means: dict[str, float], counts: dict[str, int], avg_job_seconds: float, settings: Settings
) -> dict[str, Any]:
    """This deployment's measured figures (means of the last runs of each stage) beside the seed's reference."""
    measured = {stage: round(seconds, 2) for stage, seconds in stage_means.items()}
    total = round(sum(measured.values()), 2) if measured else None
    return {
        "measured": measured,
        "measured_total_s": total,
        "avg_job_seconds": round(avg_job_seconds, 2),
        "jobs": {s: counts.get(s, 0) for s in ("queued", "running", "succeeded", "failed", "cancelled")},
        "workers": settings.triton_concurrency,
        "queue_max": settings.queue_max,
        "reference": dict(REFERENCE),
    }


def _resolve(schema: dict[str, Any], node: dict[str, Any]) -> dict[str, Any]:
    ref = node.get("$ref")
    if isinstance(ref, str) and ref.startswith("#/components/schemas/"):
        found: dict[str, Any] = schema["components"]["schemas"][ref.rsplit("/", 1)[1]]
        return found
    return node


def _type_text(schema: dict[str, Any], node: dict[str, Any]) -> tuple[str, list[Any] | None]:
    """('string|null', enum values or None) for a property's schema."""
    node = _resolve(schema, node)
    if "anyOf" in node:
        parts, enum = [], None
        for option in node["anyOf"]:
            text, values = _type_text(schema, option)
            parts.append(text)
            enum = enum or values
        return "|".join(dict.fromkeys(parts)), enum
    if "enum" in node:
        return "enum", list(node["enum"])
    if node.get("type") == "array":
        inner, values = _type_text(schema, node.get("items") or {})
        return ("string[]" if inner == "enum" else f"{inner}[]"), values
    kind = str(node.get("type", "any"))
    return {"number": "float", "integer": "int", "boolean": "bool"}.get(kind, kind), None


def _num(value: Any) -> Any:
    return int(value) if isinstance(value, float) and value.is_integer() else value


def _range_text(node: dict[str, Any]) -> str | None:
    for option in [node, *node.get("anyOf", [])]:
        lo = option.get("minimum", option.get("exclusiveMinimum"))
        hi = option.get("maximum", option.get("exclusiveMaximum"))
        if lo is not None or hi is not None:
            left = "(" if "exclusiveMinimum" in option else "["
            right = ")" if "exclusiveMaximum" in option else "]"
            return f"{left}{'' if lo is None else _num(lo)}, {'' if hi is None else _num(hi)}{right}"
        if "maxLength" in option:
            return f"≤ {option['maxLength']} chars"
        if "maxItems" in option:
            return f"≤ {option['maxItems']} items"
    return None


def _bounds(node: dict[str, Any]) -> dict[str, Any]:
    """The raw bounds a form control takes (min/max, exclusive ones, max length), from the first option naming any."""
    keys = {"minimum": "min", "maximum": "max", "exclusiveMinimum": "gt", "exclusiveMaximum": "lt"}
    keys |= {"maxLength": "max_length", "maxItems": "max_items"}
    for option in [node, *node.get("anyOf", [])]:
        found = {short: option[key] for key, short in keys.items() if key in option}
        if found:
            return found
    return {}


def request_fields(openapi: dict[str, Any], model: str = SONG_CREATE) -> list[dict[str, Any]]:
    """The request body table of ``model`` from the OpenAPI schema: name, type, default, range, enum, required,
    description (en from the schema, zh from :data:`FIELD_ZH`)."""
    body = openapi["components"]["schemas"][model]
    required = set(body.get("required", []))
    rows = []
    for name, node in body["properties"].items():
        kind, enum = _type_text(openapi, node)
        rows.append(
            {
                "name": name,
                "type": kind,
                "required": name in required,
                "default": node.get("default"),
                "range": _range_text(node),
                "enum": enum,
                "description": node.get("description") or node.get("title") or "",
                "description_zh": FIELD_ZH.get(name, ""),
                **_bounds(node),
            }
        )
    return rows


def song_statuses(openapi: dict[str, Any]) -> list[str]:
    """The song API's status machine, from the status response's schema."""
    status = openapi["components"]["schemas"]["SongStatusPublic"]["properties"]["status"]
    return list(_resolve(openapi, status).get("enum") or [])


def error_codes(openapi: dict[str, Any], settings: Settings) -> list[dict[str, Any]]:
    """Every non-2xx status ``POST /v1/song/create`` and ``GET /v1/song/status`` declare, with what to do."""
    declared: dict[int, str] = {}
    for path, method in (("/v1/song/create", "post"), ("/v1/song/status", "get")):
        for code, response in openapi["paths"][path][method].get("responses", {}).items():
            if code.isdigit() and int(code) >= 400:
                declared.setdefault(int(code), str(response.get("description", "")))
    values = {
        "lo": MIN_DURATION,
        "hi": MAX_DURATION,
        "queue_max": settings.queue_max,
        "user_max": settings.user_queue_max,
    }
    rows = []
    for code in sorted(declared):
        zh, en, todo_zh, todo_en = ERROR_HELP.get(code, (declared[code], declared[code], "", ""))
        rows.append(
            {
                "code": code,
                "title_zh": zh,
                "title_en": en,
                "description": declared[code],
                "todo_zh": todo_zh.format(**values),
                "todo_en": todo_en.format(**values),
            }
        )
    return rows


def list_samples(folder: Path | None) -> list[dict[str, Any]]:
    """The operator's curated samples: audio files in ``folder``, titled by an optional ``samples.json``
    (``[{"file", "title", "caption", "lyrics"}]``)."""
    if folder is None or not folder.is_dir():
        return []
    import json

    described: dict[str, dict[str, Any]] = {}
    manifest = folder / "samples.json"
    if manifest.is_file():
        try:
            for entry in json.loads(manifest.read_text("utf-8")):
                if isinstance(entry, dict) and isinstance(entry.get("file"), str):
                    described[entry["file"]] = entry
        except (ValueError, OSError) as exc:
            logger.warning("samples.json in %s is unreadable: %s", folder, exc)
    samples = []
    for path in sorted(folder.iterdir()):
        if path.suffix.lower() not in (".flac", ".wav", ".mp3", ".ogg") or not path.is_file():
            continue
        entry = described.get(path.name, {})
        samples.append(
            {
                "file": path.name,
                "url": f"/v1/site/samples/{path.name}",
                "title": str(entry.get("title") or path.stem),
                "caption": entry.get("caption"),
                "lyrics": entry.get("lyrics"),
            }
        )
    return samples
