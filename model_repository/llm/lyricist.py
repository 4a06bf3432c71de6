"""The lyricist: a theme becomes a song plan (title, structure-tagged lyrics, caption, bpm, key, time signature,
duration), streamed while it is written.

Stages: themes of at most :data:`EXPAND_MAX_CHARS` characters are first expanded into a short creative brief by
one extra LLM call (events with ``stage: "expand"``; a request's ``expand_theme: false`` skips it); then the plan
is written as JSON (``stage: "plan"``; each
event also carries ``lyrics_so_far``, the lyrics decoded from the partial JSON). The final event is
``{"type": "plan", "plan": {...}, "usage": {...}}``.

Backends: a local Hugging Face model under grammar-constrained decoding (the plan is valid by construction), or an
OpenAI-compatible endpoint (sent the plan's JSON schema; the answer is validated and normalised). With neither the
service still answers, with an error that names the setting to change.
"""

from __future__ import annotations

import json
import logging
import re
import threading
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

from model_repository.llm import music
from model_repository.llm.constraints import (
    duration_range,
    fit_plan_layout,
    plan_grammar,
    plan_json_schema,
    text_grammar,
    validate_plan,
)
from model_repository.llm.engine import Job
from model_repository.llm.local import LocalModel, TextStream
from model_repository.llm.openai_endpoint import EndpointStream, OpenAIEndpoint
from model_repository.llm.prompts import expand_messages, plan_messages
from model_repository.llm.requests import LyricistRequest, RequestError, Sampling, parse_lyricist_request

logger = logging.getLogger(__name__)

# The product page: "Skipped automatically when the theme is already > 60 chars" -- themes shorter than 60
# characters (Unicode code points) get the extra expansion call.
EXPAND_MAX_CHARS = 60  # seed 000: expansion is skipped when the theme is longer than this
# Sections the plan grammar allows beyond the duration's target (room for an extra chorus or interlude).
_EXTRA_SECTIONS = 2
_MAX_LINES_PER_SECTION = 8

Emit = Callable[[dict[str, Any]], None]


class NotConfiguredError(RuntimeError):
    """The model has no weights and no endpoint; the message names the settings."""


class GenerationError(RuntimeError):
    """Generation ran but did not produce a usable result."""


# --------------------------------------------------------------------------------------------------------------------
# Backends
# --------------------------------------------------------------------------------------------------------------------


class ChatRun(Protocol):
    """Text deltas of one chat completion; after iteration ``usage`` describes it."""

    usage: dict[str, Any]

    def __iter__(self) -> Iterator[str]: ...


@dataclass(frozen=True)
class ChatCall:
    """How one chat completion is decoded: its stage (``expand``/``plan``), the grammar a local model decodes
    under, the JSON schema an endpoint is sent, sampling, the token budget and the cancellation flag."""

    stage: str
    grammar: str | None
    json_schema: dict[str, Any] | None
    sampling: Sampling
    max_new_tokens: int
    cancelled: threading.Event | None


class ChatBackend(Protocol):
    kind: str

    def chat(self, messages: Sequence[dict[str, str]], call: ChatCall) -> ChatRun: ...


@dataclass
class _LocalRun:
    stream: TextStream
    prompt_tokens: int
    cancelled: threading.Event | None
    usage: dict[str, Any] = field(default_factory=dict)

    def __iter__(self) -> Iterator[str]:
        for delta in self.stream:
            if self.cancelled is not None and self.cancelled.is_set():
                self.stream.cancel()
            yield delta
        result = self.stream.result
        assert result is not None
        if result.finish_reason == "error":
            raise GenerationError(f"generation failed: {result.error}")
        self.usage = {
            "prompt_tokens": self.prompt_tokens,
            "completion_tokens": len(result.tokens),
            "finish_reason": result.finish_reason,
            "batch_rows_max": result.batch_rows_max,
            "batch_rows_mean": round(result.batch_rows_mean, 3),
            "prefill_rows": result.prefill_rows,
        }


class LocalChatBackend:
    """A local chat model; the plan is decoded under the plan grammar."""

    kind = "local"

    def __init__(self, model: LocalModel) -> None:
        self.model = model

    def chat(self, messages: Sequence[dict[str, str]], call: ChatCall) -> ChatRun:
        # enable_thinking=False: Qwen3 chat templates then skip the reasoning block; other templates ignore it.
        prompt = self.model.render_chat(messages, add_generation_prompt=True, enable_thinking=False)
        ids = self.model.encode(prompt)
        job = Job(
            prompt_ids=ids,
            max_new_tokens=call.max_new_tokens,
            sampling=call.sampling,
            constraint=self.model.constraint(call.grammar) if call.grammar else None,
            stop_ids=self.model.stop_ids,
            label=call.stage,
        )
        return _LocalRun(self.model.generate(job), len(ids), call.cancelled)

    def close(self) -> None:
        self.model.close()


@dataclass
class _EndpointRun:
    stream: EndpointStream
    usage: dict[str, Any] = field(default_factory=dict)

    def __iter__(self) -> Iterator[str]:
        chars = 0
        for delta in self.stream:
            chars += len(delta)
            yield delta
        self.usage = {
            "prompt_tokens": self.stream.usage.get("prompt_tokens", 0),
            "completion_tokens": self.stream.usage.get("completion_tokens", 0),
            "attempts": self.stream.attempts,
            "completion_chars": chars,
        }


class EndpointChatBackend:
    kind = "endpoint"

    def __init__(self, endpoint: OpenAIEndpoint) -> None:
        self.endpoint = endpoint

    def chat(self, messages: Sequence[dict[str, str]], call: ChatCall) -> ChatRun:
        return _EndpointRun(
            self.endpoint.stream_chat(
                messages,
                sampling=call.sampling,
                max_new_tokens=call.max_new_tokens,
                json_schema=call.json_schema,
                cancelled=call.cancelled,
            )
        )

    def close(self) -> None:
        self.endpoint.close()


# --------------------------------------------------------------------------------------------------------------------
# Partial lyrics from a partial JSON document
# --------------------------------------------------------------------------------------------------------------------

_ESCAPES = {"n": "\n", "t": "\t", "r": "\r", "b": "\b", "f": "\f", '"': '"', "\\": "\\", "/": "/"}


class PartialJsonString:
    """Follows a JSON text as it streams in and decodes the string value of one key as far as it has arrived."""

    def __init__(self, key: str) -> None:
        self._pattern = re.compile(r'"' + re.escape(key) + r'"\s*:\s*"')
        self._tail = ""
        self._pending = ""
        self.state = "seek"  # seek -> inside -> done
        self.value = ""

    def feed(self, text: str) -> str:
        if self.state == "seek":
            self._tail += text
            m = self._pattern.search(self._tail)
            if not m:
                self._tail = self._tail[-64:]
                return self.value
            text, self.state, self._tail = self._tail[m.end() :], "inside", ""
        if self.state == "inside":
            s, self._pending = self._pending + text, ""
            out: list[str] = []
            i = 0
            while i < len(s):
                c = s[i]
                if c == '"':
                    self.state = "done"
                    break
                if c != "\\":
                    out.append(c)
                    i += 1
                    continue
                if i + 1 >= len(s) or (s[i + 1] == "u" and i + 6 > len(s)):
                    self._pending = s[i:]  # an escape split across deltas
                    break
                if s[i + 1] == "u":
                    try:
                        out.append(chr(int(s[i + 2 : i + 6], 16)))
                    except ValueError:
                        pass
                    i += 6
                else:
                    out.append(_ESCAPES.get(s[i + 1], s[i + 1]))
                    i += 2
            self.value += "".join(out)
        return self.value


# --------------------------------------------------------------------------------------------------------------------
# The service
# --------------------------------------------------------------------------------------------------------------------


@dataclass
class LyricistSettings:
    max_new_tokens: int = 4096  # default plan budget
    expand_max_new_tokens: int = 320
    not_configured: str = ""  # why there is no backend (shown in errors)


class LyricistService:
    def __init__(self, backend: ChatBackend | None, settings: LyricistSettings | None = None) -> None:
        self.backend = backend
        self.settings = settings or LyricistSettings()

    def close(self) -> None:
        close = getattr(self.backend, "close", None)
        if close is not None:
            close()

    def run(self, payload: str | bytes | dict[str, Any], emit: Emit, cancelled: threading.Event | None = None) -> None:
        """Validate ``payload``, stream delta events through ``emit`` and finish with the plan event. Raises
        :class:`RequestError` (client mistakes), :class:`NotConfiguredError`, :class:`GenerationError`."""
        req = parse_lyricist_request(payload)
        if self.backend is None:
            raise NotConfiguredError(f"lyricist: not configured: {self.settings.not_configured}")
        budget = req.max_new_tokens or self.settings.max_new_tokens
        _, target_sections, _ = music.song_shape(req.duration_hint)
        try:
            layout = fit_plan_layout(
                budget,
                min(14, target_sections + _EXTRA_SECTIONS),
                _MAX_LINES_PER_SECTION,
                instrumental=req.vocal_mode == "instrumental_quick",
            )
        except ValueError as exc:
            raise RequestError("lyricist", "max_new_tokens", f"is too small: {exc} (got {budget})") from None
        usage: dict[str, Any] = {"prompt_tokens": 0, "completion_tokens": 0, "backend": self.backend.kind}
        stages: dict[str, Any] = {}

        brief: str | None = None
        usage["expanded"] = req.expand_theme and len(req.theme) <= EXPAND_MAX_CHARS
        if usage["expanded"]:
            run = self.backend.chat(
                expand_messages(req),
                ChatCall(
                    stage="expand",
                    grammar=text_grammar(self.settings.expand_max_new_tokens),
                    json_schema=None,
                    sampling=req.sampling,
                    max_new_tokens=self.settings.expand_max_new_tokens,
                    cancelled=cancelled,
                ),
            )
            parts = []
            for delta in run:
                parts.append(delta)
                emit({"type": "delta", "stage": "expand", "text": delta})
            brief = " ".join("".join(parts).split()) or None
            stages["expand"] = run.usage

        run = self.backend.chat(
            plan_messages(req, brief),
            ChatCall(
                stage="plan",
                grammar=plan_grammar(layout, duration_hint=req.duration_hint, fixed=req.fixed.as_dict()),
                json_schema=plan_json_schema(req.duration_hint),
                sampling=req.sampling,
                max_new_tokens=budget,
                cancelled=cancelled,
            ),
        )
        lyrics = PartialJsonString("lyrics")
        parts = []
        for delta in run:
            parts.append(delta)
            emit({"type": "delta", "stage": "plan", "text": delta, "lyrics_so_far": lyrics.feed(delta)})
        stages["plan"] = run.usage
        if cancelled is not None and cancelled.is_set():
            return
        plan = finalize_plan("".join(parts), req)
        for stage in stages.values():
            usage["prompt_tokens"] += int(stage.get("prompt_tokens", 0))
            usage["completion_tokens"] += int(stage.get("completion_tokens", 0))
        usage["stages"] = stages
        if "batch_rows_max" in stages["plan"]:
            usage["batch_rows_max"] = stages["plan"]["batch_rows_max"]
            usage["batch_rows_mean"] = stages["plan"]["batch_rows_mean"]
            usage["prefill_rows"] = stages["plan"].get("prefill_rows", 0)
        usage["layout"] = {"sections": layout.sections, "lines": layout.lines, "line_tokens": layout.line_tokens}
        event: dict[str, Any] = {"type": "plan", "plan": plan, "usage": usage}
        if brief is not None:
            event["brief"] = brief
        emit(event)


def _json_object(text: str) -> Any:
    text = text.strip()
    fence = re.match(r"^```(?:json)?\s*(.*?)\s*```$", text, re.DOTALL)
    if fence:
        text = fence.group(1)
    try:
        return json.loads(text)
    except json.JSONDecodeError:
        start, end = text.find("{"), text.rfind("}")
        if 0 <= start < end:
            try:
                return json.loads(text[start : end + 1])
            except json.JSONDecodeError:
                pass
    raise GenerationError(f"lyricist: the model's answer is not a JSON object: {text[:200]!r}")


def finalize_plan(text: str, req: LyricistRequest) -> dict[str, Any]:
    """Parse, normalise and validate the generated plan; add ``language`` and ``vocal_mode``; user-fixed values win;
    the caption gets the featured tracks and the vocal setting as hints when it does not mention them yet."""
    raw = _json_object(text)
    if not isinstance(raw, dict):
        raise GenerationError(f"lyricist: the plan must be a JSON object, got {type(raw).__name__}")
    plan: dict[str, Any] = {k: raw.get(k) for k in ("title", "lyrics", "caption", "bpm", "key_scale")}
    plan["time_signature"] = music.normalize_time_signature(raw.get("time_signature"))
    plan["duration"] = raw.get("duration")
    if isinstance(plan["key_scale"], str):
        plan["key_scale"] = music.normalize_key_scale(plan["key_scale"]) or plan["key_scale"]
    for key in ("title", "lyrics", "caption"):
        if isinstance(plan[key], str):
            plan[key] = plan[key].strip()
    # Numbers from a backend without a grammar (an endpoint) are pulled into range rather than rejected.
    if isinstance(plan["bpm"], int | float) and not isinstance(plan["bpm"], bool):
        plan["bpm"] = min(music.BPM_MAX, max(music.BPM_MIN, int(round(plan["bpm"]))))
    if isinstance(plan["duration"], int | float) and not isinstance(plan["duration"], bool):
        lo, hi = duration_range(req.duration_hint)
        plan["duration"] = min(hi, max(lo, int(round(plan["duration"]))))
    plan.update(req.fixed.as_dict())
    problems = validate_plan(plan, duration_hint=None if "duration" in req.fixed.as_dict() else req.duration_hint)
    if problems:
        raise GenerationError(f"lyricist: the generated plan is invalid: {'; '.join(problems)}")
    plan["caption"] = _caption_with_hints(plan["caption"], req)
    plan["language"] = req.language
    plan["vocal_mode"] = req.vocal_mode
    return plan


def _caption_with_hints(caption: str, req: LyricistRequest) -> str:
    lower = caption.lower()
    hints = [t.replace("_", " ") for t in req.track_classes if t.replace("_", " ") not in lower]
    if req.vocal_mode == "sing" and req.vocal_gender != "any" and req.vocal_gender not in re.findall(r"[a-z]+", lower):
        hints.append(f"{req.vocal_gender} vocal")
    if req.vocal_mode != "sing" and "instrumental" not in lower:
        hints.append("instrumental")
    return caption.rstrip(" ,.") + (", " + ", ".join(hints) if hints else "")
