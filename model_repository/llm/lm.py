"""The ACE-Step 1.5 "5 Hz LM": metadata completion, thinking (metadata, then audio codes for the DiT) and inspire
(a description becomes caption + lyrics + metadata). Prompt format and token protocol: ``docs/lm-protocol.md``.

Modes (request field ``mode``):

- ``metadata``: the chain of thought ``<think>\\nbpm: ..\\ncaption: ..\\nduration: ..\\nkeyscale: ..\\nlanguage: ..
  \\ntimesignature: ..\\n</think>`` is decoded under a grammar; values the user gave are written verbatim (they
  always win), the others are generated inside their ranges. When bpm, key, time signature and duration are all
  given, nothing is generated.
- ``thinking``: the same chain of thought, then a second prompt with it in the assistant turn, from which exactly
  ``5 x duration`` ``<|audio_code_N|>`` tokens are decoded (only code tokens are allowed).
- ``inspire``: the chain of thought followed by structure-tagged lyrics, from a free-form description.

CFG (``cfg_scale`` > 1) runs the negative prompt as a second row of the batch in the metadata and code phases, as
upstream does; inspire mode does not use it (upstream neither).
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch

from model_repository.llm import music
from model_repository.llm.constraints import (
    CodesConstraint,
    audio_code_token_ids,
    cot_grammar,
    cot_worst_case_tokens,
    fit_plan_layout,
    format_cot,
    inspire_grammar,
    inspire_worst_case_tokens,
    parse_cot,
)
from model_repository.llm.engine import Job
from model_repository.llm.local import LocalModel
from model_repository.llm.lyricist import GenerationError, NotConfiguredError, PartialJsonString
from model_repository.llm.requests import LMRequest, RequestError, parse_lm_request

logger = logging.getLogger(__name__)

Emit = Callable[[dict[str, Any]], None]

# Instructions of the 5 Hz LM's system turn (acestep/constants.py upstream).
LM_INSTRUCTION = "Generate audio semantic tokens based on the given conditions:"
LM_INSPIRE_INSTRUCTION = "Expand the user's input into a more detailed and specific musical description:"
DEFAULT_NEGATIVE_PROMPT = "NO USER INPUT"
# Codes are streamed in chunks of this many (one event per second of audio).
CODES_PER_EVENT = music.CODES_PER_SECOND
_CAPTION_TOKENS = 96


@dataclass
class LMSettings:
    max_new_tokens: int = 2048  # default budget of the text phases (chain of thought, inspire lyrics)
    not_configured: str = ""


def _meaningful(negative_prompt: str) -> bool:
    return bool(negative_prompt.strip()) and negative_prompt.strip() != DEFAULT_NEGATIVE_PROMPT


class LMService:
    def __init__(self, model: LocalModel | None, settings: LMSettings | None = None) -> None:
        self.model = model
        self.settings = settings or LMSettings()
        self._code_mask: torch.Tensor | None = None
        self._code_text: dict[int, str] = {}
        if model is not None:
            codes = audio_code_token_ids(model.tokenizer)
            if codes:
                self._code_mask = torch.zeros(model.n_vocab, dtype=torch.bool)
                self._code_mask[torch.tensor(sorted(codes))] = True
                self._code_text = {tid: f"<|audio_code_{code}|>" for tid, code in codes.items()}

    # ---------------------------------------------------------------- prompts (upstream's format)
    def _system(self, instruction: str) -> dict[str, str]:
        return {"role": "system", "content": f"# Instruction\n{instruction}\n\n"}

    def cot_prompt(self, caption: str, lyrics: str) -> str:
        assert self.model is not None
        return self.model.render_chat(
            [self._system(LM_INSTRUCTION), {"role": "user", "content": f"# Caption\n{caption}\n\n# Lyric\n{lyrics}\n"}],
            add_generation_prompt=True,
        )

    def cot_uncond_prompt(self, lyrics: str, negative_prompt: str) -> str:
        assert self.model is not None
        if _meaningful(negative_prompt):
            user = f"# Caption\n{negative_prompt}\n\n# Lyric\n{lyrics}\n"
        else:
            user = f"# Lyric\n{lyrics}\n"
        return self.model.render_chat(
            [self._system(LM_INSTRUCTION), {"role": "user", "content": user}], add_generation_prompt=True
        )

    def codes_prompt(self, caption: str, lyrics: str, cot: str) -> str:
        assert self.model is not None
        text = self.model.render_chat(
            [
                self._system(LM_INSTRUCTION),
                {"role": "user", "content": f"# Caption\n{caption}\n\n# Lyric\n{lyrics}\n"},
                {"role": "assistant", "content": cot},
            ],
            add_generation_prompt=False,
        )
        return text if text.endswith("\n") else text + "\n"

    def inspire_prompt(self, description: str, instrumental: bool) -> str:
        assert self.model is not None
        user = f"{description}\n\ninstrumental: {'true' if instrumental else 'false'}"
        return self.model.render_chat(
            [self._system(LM_INSPIRE_INSTRUCTION), {"role": "user", "content": user}], add_generation_prompt=True
        )

    # ---------------------------------------------------------------- entry point
    def run(self, payload: str | bytes | dict[str, Any], emit: Emit, cancelled: threading.Event | None = None) -> None:
        req = parse_lm_request(payload)
        if self.model is None:
            raise NotConfiguredError(f"lm: not configured: {self.settings.not_configured}")
        usage: dict[str, Any] = {"prompt_tokens": 0, "completion_tokens": 0, "phases": {}}
        if req.mode == "inspire":
            self._inspire(req, emit, usage, cancelled)
            return
        metadata = self._metadata(
            req, emit, usage, cancelled, stage="metadata" if req.mode == "metadata" else "thinking"
        )
        event: dict[str, Any] = {"type": "result", "mode": req.mode, "metadata": metadata}
        if req.mode == "thinking":
            codes = self._codes(req, metadata, emit, usage, cancelled)
            event["audio_codes"] = codes
            event["codes_count"] = codes.count("<|audio_code_")
        event["usage"] = usage
        emit(event)

    # ---------------------------------------------------------------- phases
    def _fixed_cot(self, req: LMRequest) -> dict[str, Any]:
        fixed = req.fixed
        return {
            "bpm": fixed.bpm,
            "caption": " ".join(req.caption.split()) or None,
            "duration": fixed.duration,
            "keyscale": fixed.key_scale,
            "language": req.vocal_language,
            "timesignature": fixed.time_signature,
        }

    def _budget(self, req: LMRequest) -> int:
        return req.max_new_tokens or self.settings.max_new_tokens

    def _run_phase(
        self,
        phase: str,
        job: Job,
        emit: Emit,
        usage: dict[str, Any],
        cancelled: threading.Event | None,
        stage: Callable[[str], str],
        lyrics_tracker: PartialJsonString | None = None,
    ) -> str:
        assert self.model is not None
        stream = self.model.generate(job)
        text = ""
        for delta in stream:
            if cancelled is not None and cancelled.is_set():
                stream.cancel()
            text += delta
            emit({"type": "delta", "stage": stage(text), "text": delta})
        result = stream.result
        assert result is not None
        if result.finish_reason == "error":
            raise GenerationError(f"lm: {phase} generation failed: {result.error}")
        if result.finish_reason not in ("grammar", "stop") and not (cancelled is not None and cancelled.is_set()):
            raise GenerationError(f"lm: {phase} ended early ({result.finish_reason}); raise max_new_tokens")
        usage["phases"][phase] = {
            "prompt_tokens": len(job.prompt_ids),
            "completion_tokens": len(result.tokens),
            "batch_rows_max": result.batch_rows_max,
            "batch_rows_mean": round(result.batch_rows_mean, 3),
            "prefill_rows": result.prefill_rows,
            "cfg": job.uses_cfg,
        }
        usage["prompt_tokens"] += len(job.prompt_ids)
        usage["completion_tokens"] += len(result.tokens)
        usage["batch_rows_max"] = max(usage.get("batch_rows_max", 0), result.batch_rows_max)
        return text

    def _metadata(
        self, req: LMRequest, emit: Emit, usage: dict[str, Any], cancelled: threading.Event | None, stage: str
    ) -> dict[str, Any]:
        assert self.model is not None
        fixed = self._fixed_cot(req)
        if req.fixed.complete():
            values = {k: v for k, v in fixed.items() if v is not None}
        else:
            budget = self._budget(req)
            caption_tokens = min(_CAPTION_TOKENS, budget - cot_worst_case_tokens(fixed, 0))
            if caption_tokens < 1:
                need = cot_worst_case_tokens(fixed, 1)
                raise RequestError("lm", "max_new_tokens", f"must be at least {need} for the metadata (got {budget})")
            grammar = cot_grammar(fixed, caption_tokens=caption_tokens, has_think_tokens=self.model.has_think_tokens)
            prompt = self.model.encode(self.cot_prompt(req.caption, req.lyrics))
            uncond = self.model.encode(self.cot_uncond_prompt(req.lyrics, req.negative_prompt))
            job = Job(
                prompt_ids=prompt,
                max_new_tokens=budget,
                sampling=req.sampling,
                constraint=self.model.constraint(grammar),
                stop_ids=self.model.stop_ids,
                uncond_prompt_ids=uncond,
                cfg_scale=req.cfg_scale,
                label="cot",
            )
            text = self._run_phase("metadata", job, emit, usage, cancelled, lambda _t: stage)
            values = parse_cot(text)
            values.update({k: v for k, v in fixed.items() if v is not None})
        return _metadata_dict(values)

    def _codes(
        self,
        req: LMRequest,
        metadata: dict[str, Any],
        emit: Emit,
        usage: dict[str, Any],
        cancelled: threading.Event | None,
    ) -> str:
        assert self.model is not None
        if self._code_mask is None:
            raise GenerationError(
                "lm: this model's vocabulary has no <|audio_code_N|> tokens; thinking mode needs the "
                "ACE-Step 5 Hz LM (acestep-5Hz-lm-*)"
            )
        count = music.codes_for_duration(metadata["duration"])
        cot = format_cot(_cot_values(metadata))
        prompt = self.model.encode(self.codes_prompt(req.caption, req.lyrics, cot))
        negative_caption = req.negative_prompt if _meaningful(req.negative_prompt) else req.caption
        uncond = self.model.encode(self.codes_prompt(negative_caption, req.lyrics, "<think>\n</think>"))
        job = Job(
            prompt_ids=prompt,
            max_new_tokens=count,
            sampling=req.sampling,
            constraint=CodesConstraint(self._code_mask, count),
            stop_ids=frozenset(),
            uncond_prompt_ids=uncond,
            cfg_scale=req.cfg_scale,
            label="codes",
        )
        stream = self.model.engine.submit(job)
        codes: list[str] = []
        pending: list[str] = []
        for tokens in stream.chunks():
            if cancelled is not None and cancelled.is_set():
                stream.cancel()
            pending += [self._code_text[token] for token in tokens]
            if len(pending) >= CODES_PER_EVENT:
                emit({"type": "delta", "stage": "codes", "text": "".join(pending)})
                codes += pending
                pending = []
        if pending:
            emit({"type": "delta", "stage": "codes", "text": "".join(pending)})
            codes += pending
        result = stream.result()
        if result.finish_reason == "error":
            raise GenerationError(f"lm: code generation failed: {result.error}")
        usage["phases"]["codes"] = {
            "prompt_tokens": len(prompt),
            "completion_tokens": len(result.tokens),
            "batch_rows_max": result.batch_rows_max,
            "batch_rows_mean": round(result.batch_rows_mean, 3),
            "prefill_rows": result.prefill_rows,
            "cfg": job.uses_cfg,
        }
        usage["prompt_tokens"] += len(prompt)
        usage["completion_tokens"] += len(result.tokens)
        usage["batch_rows_max"] = max(usage.get("batch_rows_max", 0), result.batch_rows_max)
        return "".join(codes)

    def _inspire(self, req: LMRequest, emit: Emit, usage: dict[str, Any], cancelled: threading.Event | None) -> None:
        assert self.model is not None
        fixed = self._fixed_cot(req)
        fixed["caption"] = None  # inspire writes its own caption
        budget = self._budget(req)
        try:
            layout = fit_plan_layout(
                budget,
                10,
                8,
                instrumental=req.instrumental,
                cost=lambda candidate: inspire_worst_case_tokens(fixed, candidate),
            )
        except ValueError as exc:
            raise RequestError(
                "lm", "max_new_tokens", f"is too small for mode 'inspire': {exc} (got {budget})"
            ) from None
        grammar = inspire_grammar(fixed, has_think_tokens=self.model.has_think_tokens, layout=layout)
        job = Job(
            prompt_ids=self.model.encode(self.inspire_prompt(req.description, req.instrumental)),
            max_new_tokens=budget,
            sampling=req.sampling,
            constraint=self.model.constraint(grammar),
            stop_ids=self.model.stop_ids,
            label="inspire",
        )
        text = self._run_phase(
            "inspire", job, emit, usage, cancelled, lambda t: "plan" if "</think>" in t else "thinking"
        )
        values = parse_cot(text)
        values.update({k: v for k, v in fixed.items() if v is not None})
        metadata = _metadata_dict(values)
        lyrics = text.split("</think>", 1)[1].strip() if "</think>" in text else ""
        if lyrics.lower().startswith("# lyric"):
            lyrics = lyrics.split("\n", 1)[1].strip() if "\n" in lyrics else ""
        caption = metadata.get("caption", "")
        first_line = next((ln for ln in lyrics.splitlines() if ln.strip() and not ln.startswith("[")), "")
        plan = {
            "title": (first_line or req.description)[:40].strip(),
            "lyrics": lyrics or "[Instrumental]",
            "caption": caption,
            "bpm": metadata["bpm"],
            "key_scale": metadata["key_scale"],
            "time_signature": metadata["time_signature"],
            "duration": metadata["duration"],
            "language": metadata.get("language") or req.vocal_language or "unknown",
        }
        emit(
            {
                "type": "result",
                "mode": "inspire",
                "metadata": metadata,
                "caption": caption,
                "lyrics": plan["lyrics"],
                "plan": plan,
                "usage": usage,
            }
        )


def _metadata_dict(values: dict[str, Any]) -> dict[str, Any]:
    """Chain-of-thought values → the API's metadata names and types."""
    out: dict[str, Any] = {}
    if values.get("bpm") not in (None, ""):
        out["bpm"] = int(values["bpm"])
    if values.get("keyscale") not in (None, ""):
        out["key_scale"] = music.normalize_key_scale(str(values["keyscale"])) or str(values["keyscale"])
    if values.get("timesignature") not in (None, ""):
        out["time_signature"] = music.normalize_time_signature(values["timesignature"])
    if values.get("duration") not in (None, ""):
        out["duration"] = int(values["duration"])
    for key in ("caption", "language", "genres"):
        if values.get(key) not in (None, ""):
            out[key] = str(values[key])
    return out


def _cot_values(metadata: dict[str, Any]) -> dict[str, Any]:
    return {
        "bpm": metadata.get("bpm"),
        "caption": metadata.get("caption"),
        "duration": metadata.get("duration"),
        "keyscale": metadata.get("key_scale"),
        "language": metadata.get("language"),
        "timesignature": metadata.get("time_signature"),
    }
