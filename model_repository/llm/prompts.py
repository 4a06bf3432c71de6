"""Prompt templates, loaded from ``prompts/<lang>/*.txt`` next to this module.

A template is plain text with ``{name}`` placeholders. A line whose placeholders are all filled is kept; a line
with any placeholder left empty (``None`` or ``""``) is dropped whole, so optional inputs such as the rhyme simply
disappear from the prompt when the user gave none. ``labels.json`` holds the per-language wording of enum values.
Chinese-family languages use the ``zh`` templates; every other language uses ``en`` (which names the target
language explicitly).
"""

from __future__ import annotations

import functools
import json
import string
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from model_repository.llm import music
from model_repository.llm.requests import LyricistRequest

PROMPT_DIR = Path(__file__).with_name("prompts")
TEMPLATE_LANGUAGES: tuple[str, ...] = ("en", "zh")
_ZH_FAMILY = ("zh", "yue", "wuu", "cmn")

Messages = list[dict[str, str]]


def template_language(language: str) -> str:
    """Which template set serves lyrics in ``language`` (an ISO 639 code)."""
    return "zh" if language.split("-")[0] in _ZH_FAMILY else "en"


@functools.lru_cache(maxsize=32)
def load_template(lang: str, name: str) -> str:
    path = PROMPT_DIR / lang / f"{name}.txt"
    if not path.is_file():
        raise FileNotFoundError(f"prompt template {path} is missing; known languages: {', '.join(TEMPLATE_LANGUAGES)}")
    return path.read_text(encoding="utf-8").strip("\n")


@functools.lru_cache(maxsize=8)
def load_labels(lang: str) -> dict[str, Any]:
    return json.loads((PROMPT_DIR / lang / "labels.json").read_text(encoding="utf-8"))


def render(template: str, values: Mapping[str, Any]) -> str:
    """Fill ``template``; drop every line that has a placeholder whose value is ``None`` or ``""``."""
    out = []
    for line in template.splitlines():
        names = [f for _, f, _, _ in string.Formatter().parse(line) if f]
        missing = [n for n in names if n not in values]
        if missing:
            raise KeyError(f"prompt template placeholder {{{missing[0]}}} has no value; known: {sorted(values)}")
        if any(values[n] is None or values[n] == "" for n in names):
            continue
        out.append(line.format_map({n: values[n] for n in names}))
    return "\n".join(out)


def _language_name(lang: str, language: str) -> str:
    return str(load_labels(lang)["language_names"].get(language.split("-")[0], language))


def _common_values(req: LyricistRequest, lang: str) -> dict[str, Any]:
    labels = load_labels(lang)
    lines: int | None
    lines, sections, example = music.song_shape(req.duration_hint)
    if req.vocal_mode == "instrumental_quick":
        lines = None
    fixed = req.fixed.as_dict()
    sep = "、" if lang == "zh" else ", "
    return {
        "theme": req.theme,
        "language": req.language,
        "language_name": _language_name(lang, req.language),
        "rhyme": req.rhyme,
        "style": req.style,
        "vocal_text": None if req.vocal_mode != "sing" else labels["vocal_gender"][req.vocal_gender],
        "vocal_mode_text": labels["vocal_mode"][req.vocal_mode],
        "track_classes": sep.join(req.track_classes) or None,
        "duration_hint": f"{req.duration_hint:g}",
        "target_lines": lines,
        "target_sections": sections,
        "structure_example": " ".join(f"[{s}]" for s in example),
        "fixed_values": ", ".join(f"{k}={v}" for k, v in fixed.items()) or None,
        "additional_instructions": req.additional_instructions,
    }


def expand_messages(req: LyricistRequest) -> Messages:
    """The chat for the theme-expansion call."""
    lang = template_language(req.language)
    values = _common_values(req, lang)
    return [
        {"role": "system", "content": render(load_template(lang, "expand_system"), values)},
        {"role": "user", "content": render(load_template(lang, "expand_user"), values)},
    ]


def plan_messages(req: LyricistRequest, brief: str | None) -> Messages:
    """The chat for the song-plan call; ``brief`` is the expanded theme (None when expansion was skipped)."""
    lang = template_language(req.language)
    values = _common_values(req, lang)
    values["brief"] = brief
    return [
        {"role": "system", "content": render(load_template(lang, "plan_system"), values)},
        {"role": "user", "content": render(load_template(lang, "plan_user"), values)},
    ]
