"""Constrained decoding: llguidance grammars for the song plan and the 5 Hz LM's chain of thought, and a plain mask
for the audio-code vocabulary.

Why a grammar rather than "ask nicely and parse": any model, even a random tiny one, must produce a valid plan. The
grammars are written in llguidance's Lark dialect (numbers through inline ``%json`` JSON-schema fragments) and every
free-text piece carries a ``max_tokens`` bound, so the worst-case length of a whole plan is known before decoding
starts. :func:`fit_plan_layout` shrinks the layout until that worst case fits the request's ``max_new_tokens``: the
generation can never be cut off mid-JSON.

The plan's JSON schema (:func:`plan_json_schema`) is the contract: the grammar only produces documents that satisfy
it, the OpenAI-compatible backend sends it as ``response_format``, and :func:`validate_plan` checks results against it.
"""

from __future__ import annotations

import copy
import json
import logging
import re
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Any, TypeGuard

import llguidance
import numpy as np
import torch

from model_repository.llm import music

logger = logging.getLogger(__name__)

AUDIO_CODE_RE = re.compile(r"^<\|audio_code_(\d+)\|>$")

# --------------------------------------------------------------------------------------------------------------------
# Tokenizer bridge
# --------------------------------------------------------------------------------------------------------------------


def llg_tokenizer(hf_tokenizer: Any, n_vocab: int) -> llguidance.LLTokenizer:
    """An llguidance tokenizer for a Hugging Face fast tokenizer whose logits have ``n_vocab`` columns.

    The 64,000 ``<|audio_code_N|>`` added tokens of the 5 Hz LM are left out of the copy llguidance sees (with them
    it takes ~15 s to build; without, ~0.2 s). Token ids left out are never allowed by a grammar, which is what every
    text grammar here wants; the code phase uses :class:`CodesConstraint` instead.
    """
    backend = copy.copy(hf_tokenizer.backend_tokenizer)
    backend.no_padding()
    backend.no_truncation()
    data = json.loads(backend.to_str())
    data["added_tokens"] = [t for t in data.get("added_tokens", []) if not AUDIO_CODE_RE.match(t["content"])]
    return llguidance.LLTokenizer(json.dumps(data), n_vocab=n_vocab, eos_token=hf_tokenizer.eos_token_id)


def audio_code_token_ids(hf_tokenizer: Any) -> dict[int, int]:
    """``{token_id: code}`` for every ``<|audio_code_N|>`` token with N inside the codebook."""
    out: dict[int, int] = {}
    for text, token_id in hf_tokenizer.get_vocab().items():
        m = AUDIO_CODE_RE.match(text)
        if m and int(m.group(1)) < music.AUDIO_CODEBOOK_SIZE:
            out[int(token_id)] = int(m.group(1))
    return out


# --------------------------------------------------------------------------------------------------------------------
# Constraint objects the engine drives: allowed() before sampling, advance() after
# --------------------------------------------------------------------------------------------------------------------


class Constraint:
    """Interface: which tokens may come next, and bookkeeping once one was chosen."""

    def allowed(self) -> torch.Tensor | None:
        """A bool tensor over the vocabulary (True = allowed), or None for no constraint."""
        raise NotImplementedError

    def advance(self, token_id: int) -> None:
        raise NotImplementedError

    @property
    def finished(self) -> bool:
        """True once nothing more may be generated (the grammar is complete)."""
        raise NotImplementedError

    @property
    def accepting(self) -> bool:
        """True when stopping now leaves a complete document."""
        raise NotImplementedError


class GrammarConstraint(Constraint):
    """An llguidance matcher over one grammar."""

    def __init__(self, tokenizer: llguidance.LLTokenizer, grammar: str, n_vocab: int) -> None:
        self._matcher = llguidance.LLMatcher(tokenizer, grammar, log_level=1)
        if self._matcher.is_error():
            raise ValueError(f"invalid grammar: {self._matcher.get_error()}")
        self._n_vocab = n_vocab
        self._bitmask = np.full(((n_vocab + 31) // 32,), -1, dtype=np.int32)

    def allowed(self) -> torch.Tensor:
        self._matcher.unsafe_compute_mask_ptr(self._bitmask.ctypes.data, self._bitmask.nbytes)
        bits = np.unpackbits(self._bitmask.view(np.uint8), bitorder="little")[: self._n_vocab]
        return torch.from_numpy(bits.astype(np.bool_))

    def advance(self, token_id: int) -> None:
        if not self._matcher.consume_token(token_id):
            raise RuntimeError(f"grammar rejected token {token_id}: {self._matcher.get_error()}")

    @property
    def finished(self) -> bool:
        return bool(self._matcher.is_stopped())

    @property
    def accepting(self) -> bool:
        return bool(self._matcher.is_accepting())


class CodesConstraint(Constraint):
    """Exactly ``count`` audio-code tokens, nothing else (the 5 Hz LM's code phase)."""

    def __init__(self, code_mask: torch.Tensor, count: int) -> None:
        self._mask = code_mask
        self.count = count
        self.produced = 0

    def allowed(self) -> torch.Tensor:
        return self._mask

    def advance(self, token_id: int) -> None:
        if not bool(self._mask[token_id]):
            raise RuntimeError(f"token {token_id} is not an audio code")
        self.produced += 1

    @property
    def finished(self) -> bool:
        return self.produced >= self.count

    @property
    def accepting(self) -> bool:
        return self.finished


# --------------------------------------------------------------------------------------------------------------------
# Grammar pieces
# --------------------------------------------------------------------------------------------------------------------

# Characters allowed inside generated JSON strings: anything but the quote, the backslash and control characters, so
# that the raw text is already valid JSON without escapes. Lyric lines also exclude brackets (reserved for tags).
_JSON_TEXT = r'[^"\\\x00-\x1F\x7F]'
_LYRIC_TEXT = r'[^"\\\x00-\x1F\x7F\[\]<>]'
# Free text in the LM's chain of thought: one line, no angle brackets (keeps special tokens out).
_COT_TEXT = r"[^\n\r<>\x00-\x08\x0B-\x1F\x7F]"


def _lark_str(text: str) -> str:
    """A Lark string literal for ``text``."""
    return json.dumps(text, ensure_ascii=False)


def _alternatives(values: Iterable[str]) -> str:
    return "(" + " | ".join(_lark_str(v) for v in values) + ")"


def _int_range(lo: int, hi: int) -> str:
    return "%json " + json.dumps({"type": "integer", "minimum": lo, "maximum": hi})


@dataclass(frozen=True)
class PlanLayout:
    """Shape and token bounds of a song plan. ``sections`` x ``lines`` bounds the lyrics; ``*_tokens`` bound each
    free-text piece; ``lines == 0`` writes structure tags only (instrumental)."""

    sections: int
    lines: int
    line_tokens: int
    title_tokens: int = 16
    caption_tokens: int = 64

    def worst_case_tokens(self) -> int:
        """An upper bound of the tokens a plan with this layout can take (every token covers >= 1 byte)."""
        # Literal JSON skeleton and the longest enum/number values, in bytes.
        skeleton = len(
            '{"title": "", "lyrics": "", "caption": "", "bpm": 300, "key_scale": "C# minor", '
            '"time_signature": 6, "duration": 600}'
        )
        tag = 2 + max(len(t.encode()) for t in music.STRUCTURE_TAGS) + 2  # "[" tag "]\n"
        line = self.line_tokens + 2  # text + "\n" (backslash, n)
        return skeleton + self.title_tokens + self.caption_tokens + self.sections * (tag + self.lines * line)


_MIN_LAYOUT = PlanLayout(sections=1, lines=1, line_tokens=2, title_tokens=2, caption_tokens=4)


def fit_plan_layout(
    budget: int,
    sections: int,
    lines: int,
    *,
    instrumental: bool = False,
    cost: Callable[[PlanLayout], int] = PlanLayout.worst_case_tokens,
) -> PlanLayout:
    """The most generous layout (up to ``sections`` sections of ``lines`` lines) whose worst case ``cost`` fits
    ``budget`` tokens. Raises ``ValueError`` when even the smallest one does not fit."""
    layout = PlanLayout(sections=sections, lines=0 if instrumental else lines, line_tokens=32)
    floor = replace(_MIN_LAYOUT, lines=0) if instrumental else _MIN_LAYOUT
    if cost(floor) > budget:
        raise ValueError(f"at least {cost(floor)} tokens are needed for the smallest song")
    # Shrink step by step, cheapest loss first: shorter lines, fewer lines, fewer sections, shorter texts.
    steps = (
        ("line_tokens", 12),
        ("lines", 4),
        ("sections", 2),
        ("caption_tokens", 16),
        ("title_tokens", 6),
        ("line_tokens", 4),
        ("lines", 1),
        ("sections", 1),
        ("caption_tokens", floor.caption_tokens),
        ("title_tokens", floor.title_tokens),
        ("line_tokens", floor.line_tokens),
    )
    for name, lowest in steps:
        while cost(layout) > budget and getattr(layout, name) > max(lowest, 0):
            if name == "lines" and layout.lines == 0:
                break
            layout = replace(layout, **{name: getattr(layout, name) - 1})
        if cost(layout) <= budget:
            return layout
    return layout


def duration_range(duration_hint: float) -> tuple[int, int]:
    """A plan's duration stays within 20 % of the requested one (and inside 10..600 s)."""
    lo = max(music.DURATION_MIN, int(round(duration_hint * 0.8)))
    hi = min(music.DURATION_MAX, int(round(duration_hint * 1.2)))
    return lo, max(lo, hi)


def plan_grammar(layout: PlanLayout, *, duration_hint: float, fixed: Mapping[str, Any] | None = None) -> str:
    """The Lark grammar of a song plan: one JSON object with the keys of :func:`plan_json_schema`, in order.
    ``fixed`` values (bpm, key_scale, time_signature, duration) are written verbatim."""
    fixed = dict(fixed or {})
    lo, hi = duration_range(duration_hint)
    section_body = f" line{{1,{layout.lines}}}" if layout.lines else ""
    rules = [
        'start: "{\\"title\\": \\"" title "\\", \\"lyrics\\": \\"" lyrics "\\", \\"caption\\": \\"" caption '
        '"\\", \\"bpm\\": " bpm ", \\"key_scale\\": " key_scale ", \\"time_signature\\": " time_signature '
        '", \\"duration\\": " duration "}"',
        f"title[max_tokens={layout.title_tokens}]: /{_JSON_TEXT}{{1,80}}/",
        f"caption[max_tokens={layout.caption_tokens}]: /{_JSON_TEXT}{{1,600}}/",
        f"lyrics: section{{1,{layout.sections}}}",
        f'section: "[" TAG "]\\\\n"{section_body}',
        'line: line_text "\\\\n"',
        f"line_text[max_tokens={layout.line_tokens}]: /{_LYRIC_TEXT}{{1,200}}/",
        f"TAG: {_alternatives(music.STRUCTURE_TAGS)}",
        "bpm: " + (_lark_str(str(fixed["bpm"])) if "bpm" in fixed else _int_range(music.BPM_MIN, music.BPM_MAX)),
        "key_scale: "
        + (
            _lark_str(json.dumps(fixed["key_scale"]))
            if "key_scale" in fixed
            else _alternatives(json.dumps(k) for k in music.KEY_SCALES)
        ),
        "time_signature: "
        + (
            _lark_str(str(fixed["time_signature"]))
            if "time_signature" in fixed
            else _alternatives(str(t) for t in music.TIME_SIGNATURES)
        ),
        "duration: " + (_lark_str(str(fixed["duration"])) if "duration" in fixed else _int_range(lo, hi)),
    ]
    return "\n".join(rules) + "\n"


def text_grammar(max_tokens: int) -> str:
    """Free text (one or more lines, no control characters or angle brackets) of at most ``max_tokens`` tokens,
    ended by the model's end-of-sequence token or by the bound."""
    return f"start: body\nbody[max_tokens={max_tokens}]: /[^<>\\x00-\\x08\\x0B-\\x1F\\x7F]+/\n"


# --------------------------------------------------------------------------------------------------------------------
# The 5 Hz LM's chain of thought
# --------------------------------------------------------------------------------------------------------------------

# Field order of the chain of thought: alphabetical, as upstream writes it with yaml.dump(sort_keys=True).
COT_FIELDS: tuple[str, ...] = ("bpm", "caption", "duration", "keyscale", "language", "timesignature")


def _think_tokens(has_think_tokens: bool) -> tuple[str, str]:
    # The real tokenizer has <think> and </think> as single added tokens: reference them as tokens, not text.
    return ("<think>", "</think>") if has_think_tokens else (_lark_str("<think>"), _lark_str("</think>"))


def cot_rules(
    fixed: Mapping[str, Any],
    *,
    caption_tokens: int,
    has_think_tokens: bool,
    durations: tuple[int, int] = (music.DURATION_MIN, music.DURATION_MAX),
) -> list[str]:
    """Lark rules for ``cot`` = ``<think>\\nbpm: ..\\ncaption: ..\\n...timesignature: ..\\n</think>``. Fields in
    ``fixed`` (keys of :data:`COT_FIELDS`) are written verbatim: user values always win."""
    open_tag, close_tag = _think_tokens(has_think_tokens)
    generated = {
        "bpm": _int_range(music.BPM_MIN, music.BPM_MAX),
        "caption": "cot_caption_text",
        "duration": _int_range(*durations),
        "keyscale": _alternatives(music.KEY_SCALES),
        "language": _alternatives(music.VOCAL_LANGUAGES),
        "timesignature": _alternatives(str(t) for t in music.TIME_SIGNATURES),
    }
    rules = [f'cot: {open_tag} "\\n" ' + " ".join(f"cot_{name}" for name in COT_FIELDS) + f" {close_tag}"]
    for name in COT_FIELDS:
        value = _lark_str(_cot_value(fixed[name])) if fixed.get(name) not in (None, "") else generated[name]
        rules.append(f'cot_{name}: "{name}: " {value} "\\n"')
    rules.append(f"cot_caption_text[max_tokens={caption_tokens}]: /{_COT_TEXT}{{1,1000}}/")
    return rules


def _cot_value(value: Any) -> str:
    return " ".join(str(value).split())


def cot_grammar(
    fixed: Mapping[str, Any],
    *,
    caption_tokens: int,
    has_think_tokens: bool,
    durations: tuple[int, int] = (music.DURATION_MIN, music.DURATION_MAX),
) -> str:
    """The chain of thought alone (metadata completion and the first phase of thinking)."""
    rules = cot_rules(fixed, caption_tokens=caption_tokens, has_think_tokens=has_think_tokens, durations=durations)
    return "start: cot\n" + "\n".join(rules) + "\n"


def cot_worst_case_tokens(fixed: Mapping[str, Any], caption_tokens: int) -> int:
    longest = {
        "bpm": 3,
        "caption": caption_tokens,
        "duration": 3,
        "keyscale": 8,
        "language": 7,
        "timesignature": 1,
    }
    total = len("<think>\n</think>")
    for name in COT_FIELDS:
        total += len(name) + 3
        total += len(_cot_value(fixed[name]).encode()) if fixed.get(name) not in (None, "") else longest[name]
    return total


def inspire_grammar(fixed: Mapping[str, Any], *, has_think_tokens: bool, layout: PlanLayout) -> str:
    """Chain of thought, then the lyrics: structure-tagged sections of lines (upstream's "inspire"/sample mode)."""
    body = f" lyric_line{{1,{layout.lines}}}" if layout.lines else ""
    rules = [
        'start: cot "\\n" "\\n"? lyric_section{1,' + str(layout.sections) + "}",
        f'lyric_section: "[" LYRIC_TAG "]\\n"{body}',
        'lyric_line: lyric_text "\\n"',
        f"lyric_text[max_tokens={layout.line_tokens}]: /[^\\n\\r\\[\\]<>\\x00-\\x08\\x0B-\\x1F\\x7F]{{1,200}}/",
        f"LYRIC_TAG: {_alternatives(music.STRUCTURE_TAGS)}",
    ]
    rules += cot_rules(fixed, caption_tokens=layout.caption_tokens, has_think_tokens=has_think_tokens)
    return "\n".join(rules) + "\n"


def inspire_worst_case_tokens(fixed: Mapping[str, Any], layout: PlanLayout) -> int:
    tag = 2 + max(len(t.encode()) for t in music.STRUCTURE_TAGS) + 1
    return (
        cot_worst_case_tokens(fixed, layout.caption_tokens)
        + 2
        + layout.sections * (tag + layout.lines * (layout.line_tokens + 1))
    )


def parse_cot(text: str) -> dict[str, str]:
    """``{"bpm": "120", "caption": "...", ...}`` from a chain of thought (text between ``<think>`` and
    ``</think>``, or the whole text when the tags are missing)."""
    m = re.search(r"<think>(.*?)</think>", text, re.DOTALL)
    body = m.group(1) if m else text
    out: dict[str, str] = {}
    for line in body.splitlines():
        if ":" in line and not line.startswith((" ", "\t")):
            key, value = line.split(":", 1)
            if key.strip() in COT_FIELDS or key.strip() == "genres":
                out[key.strip()] = value.strip()
    return out


def format_cot(values: Mapping[str, Any]) -> str:
    """The chain of thought text for the given values, in :data:`COT_FIELDS` order (what phase 2 of thinking puts
    in the assistant turn)."""
    lines = [f"{k}: {_cot_value(values[k])}" for k in COT_FIELDS if values.get(k) not in (None, "")]
    return "<think>\n" + "\n".join(lines) + "\n</think>"


# --------------------------------------------------------------------------------------------------------------------
# The plan's JSON schema (the contract) and a validator
# --------------------------------------------------------------------------------------------------------------------

PLAN_KEYS: tuple[str, ...] = ("title", "lyrics", "caption", "bpm", "key_scale", "time_signature", "duration")
_TAG_LINE = re.compile(r"^\[(" + "|".join(re.escape(t) for t in music.STRUCTURE_TAGS) + r")\]$")


def plan_json_schema(duration_hint: float = 220.0) -> dict[str, Any]:
    """The JSON schema a generated plan satisfies (before the server adds ``language``)."""
    lo, hi = duration_range(duration_hint)
    tag = "|".join(re.escape(t) for t in music.STRUCTURE_TAGS)
    return {
        "type": "object",
        "properties": {
            "title": {"type": "string", "minLength": 1},
            "lyrics": {"type": "string", "pattern": rf"^\[({tag})\]\n"},
            "caption": {"type": "string", "minLength": 1},
            "bpm": {"type": "integer", "minimum": music.BPM_MIN, "maximum": music.BPM_MAX},
            "key_scale": {"enum": list(music.KEY_SCALES)},
            "time_signature": {"enum": list(music.TIME_SIGNATURES)},
            "duration": {"type": "integer", "minimum": lo, "maximum": hi},
        },
        "required": list(PLAN_KEYS),
        "additionalProperties": False,
    }


def validate_plan(plan: Any, *, duration_hint: float | None = None) -> list[str]:
    """Problems with ``plan`` (empty when it satisfies the schema); each names the field."""
    if not isinstance(plan, dict):
        return [f"plan must be a JSON object, got {type(plan).__name__}"]
    problems = [f"missing field {k!r}" for k in PLAN_KEYS if k not in plan]
    for key in ("title", "lyrics", "caption"):
        if key in plan and (not isinstance(plan[key], str) or not plan[key].strip()):
            problems.append(f"field {key!r} must be a non-empty string")
    lyrics = plan.get("lyrics")
    if isinstance(lyrics, str) and lyrics.strip():
        first = lyrics.strip().splitlines()[0].strip()
        if not _TAG_LINE.match(first):
            problems.append(f"field 'lyrics' must start with a structure tag such as [Verse 1], got {first[:30]!r}")
    bpm = plan.get("bpm")
    if "bpm" in plan and (not _is_int(bpm) or not music.BPM_MIN <= bpm <= music.BPM_MAX):
        problems.append(f"field 'bpm' must be an integer in [{music.BPM_MIN}, {music.BPM_MAX}], got {bpm!r}")
    if "key_scale" in plan and plan["key_scale"] not in music.KEY_SCALES:
        problems.append(f"field 'key_scale' must be a key such as 'C major', got {plan['key_scale']!r}")
    if "time_signature" in plan and plan["time_signature"] not in music.TIME_SIGNATURES:
        problems.append(f"field 'time_signature' must be one of 2, 3, 4, 6, got {plan['time_signature']!r}")
    duration = plan.get("duration")
    lo, hi = duration_range(duration_hint) if duration_hint else (music.DURATION_MIN, music.DURATION_MAX)
    if "duration" in plan and (not _is_number(duration) or not lo <= duration <= hi):
        problems.append(f"field 'duration' must be a number in [{lo}, {hi}], got {duration!r}")
    return problems


def _is_int(v: Any) -> TypeGuard[int]:
    return isinstance(v, int) and not isinstance(v, bool)


def _is_number(v: Any) -> TypeGuard[float]:
    return isinstance(v, int | float) and not isinstance(v, bool)


def stop_token_ids(hf_tokenizer: Any, extra: Sequence[str] = ("<|im_end|>", "<|endoftext|>")) -> frozenset[int]:
    """Token ids that end a generation: eos, pad, and the chat-format end markers present in the vocabulary."""
    ids = {hf_tokenizer.eos_token_id, hf_tokenizer.pad_token_id}
    vocab = hf_tokenizer.get_vocab()
    ids.update(vocab[t] for t in extra if t in vocab)
    return frozenset(int(i) for i in ids if i is not None)
