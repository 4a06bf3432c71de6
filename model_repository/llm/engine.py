"""A continuous-batching generation loop over a Hugging Face causal LM.

One background thread owns the model. Requests (:class:`Job`) arrive from any thread; each is prefilled on its own,
then joins the running batch, whose rows all advance together, one token per forward pass. A sequence leaves the
batch the moment it finishes and a waiting one takes its place, so concurrent requests share every decode step.

The batch keeps one KV cache (transformers' ``DynamicCache``) whose rows are left-padded to a common length: a
2-D attention mask hides the padding and explicit ``position_ids`` keep each row's rotary positions its own. When a
sequence joins, its prefill cache is left-padded (or the batch's is) and concatenated along the batch dimension; when
one leaves, its row is dropped and all-padding columns are trimmed.

Classifier-free guidance takes two rows per sequence (the prompt and the negative prompt): both receive the same
sampled token, and the logits are combined before sampling (:func:`sampling.cfg_combine`).

Every job reports how many rows shared each of its steps (``batch_rows_mean`` / ``batch_rows_max``): concurrent
requests really sharing forward passes is measured, not assumed.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from collections import deque
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import torch

from model_repository.llm.constraints import Constraint
from model_repository.llm.requests import Sampling
from model_repository.llm.sampling import cfg_combine, select_token

logger = logging.getLogger(__name__)


@dataclass
class Job:
    """One generation: a tokenized prompt, limits, sampling, an optional constraint and an optional negative
    prompt for CFG (used when ``cfg_scale`` > 1)."""

    prompt_ids: list[int]
    max_new_tokens: int
    sampling: Sampling
    constraint: Constraint | None = None
    stop_ids: frozenset[int] = frozenset()
    uncond_prompt_ids: list[int] | None = None
    cfg_scale: float = 1.0
    label: str = ""

    @property
    def uses_cfg(self) -> bool:
        return self.uncond_prompt_ids is not None and self.cfg_scale > 1.0


@dataclass
class Result:
    tokens: list[int]
    finish_reason: str  # "stop" (end token), "grammar" (constraint complete), "length", "cancelled", "error"
    prompt_tokens: int
    steps: int = 0  # forward passes this sequence took part in (its prefill included)
    batch_rows_sum: int = 0  # sum, over those decode steps, of the rows in the batch
    batch_rows_max: int = 0
    error: str | None = None

    @property
    def batch_rows_mean(self) -> float:
        decode_steps = max(0, self.steps - 1)
        return self.batch_rows_sum / decode_steps if decode_steps else 0.0


class Stream:
    """Handle of a submitted job: iterate it for token ids as they are produced; :meth:`result` waits for the end."""

    def __init__(self, job: Job) -> None:
        self.job = job
        self._queue: queue.Queue[int | Result] = queue.Queue()
        self._result: Result | None = None
        self.cancelled = threading.Event()

    def __iter__(self) -> Iterator[int]:
        while True:
            item = self._queue.get()
            if isinstance(item, Result):
                self._result = item
                return
            yield item

    def chunks(self) -> Iterator[list[int]]:
        """Like iterating, but each item is every token that arrived since the last one: a consumer that falls
        behind catches up in one go instead of waking once per token."""
        while True:
            items = [self._queue.get()]
            while True:
                try:
                    items.append(self._queue.get_nowait())
                except queue.Empty:
                    break
            tokens = [t for t in items if not isinstance(t, Result)]
            if tokens:
                yield tokens
            if len(tokens) < len(items):
                self._result = next(t for t in items if isinstance(t, Result))
                return

    def result(self) -> Result:
        if self._result is None:
            for _ in self:
                pass
        assert self._result is not None
        return self._result

    def cancel(self) -> None:
        self.cancelled.set()

    # engine side
    def _put(self, item: int | Result) -> None:
        self._queue.put(item)


@dataclass
class _Seq:
    stream: Stream
    generator: torch.Generator
    rows: int  # 1, or 2 with CFG (cond row first)
    tokens: list[int] = field(default_factory=list)
    seen: torch.Tensor | None = None  # bool mask over the vocabulary, for the repetition penalty
    result: Result | None = None

    @property
    def job(self) -> Job:
        return self.stream.job


class Engine:
    """Owns a causal LM and runs every submitted :class:`Job` in one continuously batched loop."""

    def __init__(self, model: Any, *, max_rows: int = 16, name: str = "llm") -> None:
        self.model = model
        self.device = next(model.parameters()).device
        self.vocab_size = int(model.config.vocab_size)
        self.max_rows = max_rows
        self.name = name
        self._pending: deque[Stream] = deque()
        self._cv = threading.Condition()
        self._closed = False
        self._active: list[_Seq] = []
        # Batch state: KV cache [rows, heads, T, dim] per layer, attention mask [rows, T], next positions [rows],
        # last sampled token [rows].
        self._cache: Any = None
        self._mask: torch.Tensor | None = None
        self._pos: torch.Tensor | None = None
        self._last: torch.Tensor | None = None
        self.stats = {"decode_steps": 0, "decode_rows": 0, "max_rows": 0, "prefills": 0, "jobs": 0}
        self._thread = threading.Thread(target=self._loop, name=f"{name}-engine", daemon=True)
        self._thread.start()

    # ---------------------------------------------------------------- public
    def submit(self, job: Job) -> Stream:
        if job.max_new_tokens < 1:
            raise ValueError(f"max_new_tokens must be >= 1, got {job.max_new_tokens}")
        if not job.prompt_ids:
            raise ValueError("the prompt is empty")
        rows = 2 if job.uses_cfg else 1
        if rows > self.max_rows:
            raise ValueError(f"a CFG job needs 2 batch rows but the engine allows {self.max_rows}")
        stream = Stream(job)
        with self._cv:
            if self._closed:
                raise RuntimeError(f"{self.name}: the generation engine is closed")
            self._pending.append(stream)
            self._cv.notify()
        return stream

    def close(self, timeout: float = 10.0) -> None:
        with self._cv:
            self._closed = True
            self._cv.notify()
        self._thread.join(timeout)

    # ---------------------------------------------------------------- loop
    def _loop(self) -> None:
        torch.set_grad_enabled(False)
        while True:
            with self._cv:
                while not self._closed and not self._pending and not self._active:
                    self._cv.wait()
                if self._closed:
                    break
                admitted = []
                rows = sum(s.rows for s in self._active)
                while self._pending:
                    need = 2 if self._pending[0].job.uses_cfg else 1
                    if rows + need > self.max_rows:
                        break
                    admitted.append(self._pending.popleft())
                    rows += need
            for stream in admitted:
                try:
                    with torch.inference_mode():
                        self._admit(stream)
                except Exception as exc:  # a prompt that cannot be prefilled fails its own job only
                    logger.exception("%s: prefill failed", self.name)
                    stream._put(Result([], "error", len(stream.job.prompt_ids), error=f"{type(exc).__name__}: {exc}"))
            try:
                with torch.inference_mode():
                    if self._active:
                        self._decode_step()
            except Exception as exc:  # a failed forward pass fails the batch, not the server
                logger.exception("%s: generation step failed", self.name)
                for seq in self._active:
                    self._finish(seq, "error", error=f"{type(exc).__name__}: {exc}")
                self._active = []
                self._reset_batch()
        for seq in self._active:
            self._finish(seq, "cancelled", error="the engine was closed")
        for stream in self._pending:
            stream._put(Result([], "cancelled", len(stream.job.prompt_ids), error="the engine was closed"))

    def _reset_batch(self) -> None:
        self._cache = self._mask = self._pos = self._last = None

    # ---------------------------------------------------------------- prefill and joining the batch
    def _admit(self, stream: Stream) -> None:
        job = stream.job
        generator = torch.Generator(device=self.device)
        generator.manual_seed(job.sampling.seed if job.sampling.seed is not None else int(time.time_ns() % 2**63))
        seq = _Seq(stream=stream, generator=generator, rows=2 if job.uses_cfg else 1)
        if job.sampling.repetition_penalty != 1.0:
            seq.seen = torch.zeros(self.vocab_size, dtype=torch.bool)
            seq.seen[torch.tensor(job.prompt_ids, dtype=torch.long).clamp(0, self.vocab_size - 1)] = True
        self.stats["jobs"] += 1
        prompts = [job.prompt_ids] + ([job.uncond_prompt_ids] if job.uses_cfg and job.uncond_prompt_ids else [])
        logits_rows = []
        caches = []
        for ids in prompts:
            input_ids = torch.tensor([ids], dtype=torch.long, device=self.device)
            out = self.model(input_ids=input_ids, use_cache=True)
            logits_rows.append(out.logits[0, -1].float())
            caches.append((out.past_key_values, len(ids)))
            self.stats["prefills"] += 1
        seq_result = Result([], "", prompt_tokens=len(job.prompt_ids), steps=1)
        seq.result = seq_result
        token = self._choose(seq, logits_rows)
        if token is None:
            return
        for cache, length in caches:
            self._join(cache, length, token)
        self._active.append(seq)

    def _join(self, cache: Any, length: int, token: int) -> None:
        """Append one prefilled row (its cache covers ``length`` tokens) to the batch; ``token`` is fed next."""
        mask = torch.ones((1, length), dtype=torch.long, device=self.device)
        pos = torch.tensor([length], dtype=torch.long, device=self.device)
        last = torch.tensor([token], dtype=torch.long, device=self.device)
        if self._cache is None:
            self._cache, self._mask, self._pos, self._last = cache, mask, pos, last
            return
        assert self._mask is not None and self._pos is not None and self._last is not None
        width = max(self._mask.shape[1], length)
        batch_pad, row_pad = width - self._mask.shape[1], width - length
        for batch_layer, row_layer in zip(self._cache.layers, cache.layers, strict=True):
            batch_layer.keys = torch.cat([_left_pad(batch_layer.keys, batch_pad), _left_pad(row_layer.keys, row_pad)])
            batch_layer.values = torch.cat(
                [_left_pad(batch_layer.values, batch_pad), _left_pad(row_layer.values, row_pad)]
            )
        self._mask = torch.cat([_left_pad(self._mask, batch_pad, dim=1), _left_pad(mask, row_pad, dim=1)])
        self._pos = torch.cat([self._pos, pos])
        self._last = torch.cat([self._last, last])

    # ---------------------------------------------------------------- one decode step for every active row
    def _decode_step(self) -> None:
        assert self._cache is not None and self._mask is not None and self._pos is not None and self._last is not None
        rows = int(self._last.shape[0])
        self._mask = torch.cat([self._mask, torch.ones((rows, 1), dtype=torch.long, device=self.device)], dim=1)
        out = self.model(
            input_ids=self._last[:, None],
            attention_mask=self._mask,
            position_ids=self._pos[:, None],
            past_key_values=self._cache,
            use_cache=True,
        )
        self._cache = out.past_key_values
        self._pos = self._pos + 1
        # Sampling stays on the model's device: on a GPU, a 150k-token sort per row on the CPU would dominate.
        logits = out.logits[:, -1].float()
        self.stats["decode_steps"] += 1
        self.stats["decode_rows"] += rows
        self.stats["max_rows"] = max(self.stats["max_rows"], rows)
        keep: list[int] = []
        still_active: list[_Seq] = []
        next_tokens: list[int] = []
        row = 0
        for seq in self._active:
            assert seq.result is not None
            seq.result.steps += 1
            seq.result.batch_rows_sum += rows
            seq.result.batch_rows_max = max(seq.result.batch_rows_max, rows)
            token = self._choose(seq, [logits[row + i] for i in range(seq.rows)])
            if token is not None:
                keep.extend(range(row, row + seq.rows))
                still_active.append(seq)
                next_tokens.extend([token] * seq.rows)
            row += seq.rows
        self._active = still_active
        if not keep:
            self._reset_batch()
            return
        if len(keep) < rows:
            index = torch.tensor(keep, dtype=torch.long, device=self.device)
            for layer in self._cache.layers:
                layer.keys = layer.keys.index_select(0, index)
                layer.values = layer.values.index_select(0, index)
            self._mask = self._mask.index_select(0, index)
            self._pos = self._pos.index_select(0, index)
            # Columns that are padding in every remaining row are dead weight: trim them.
            first = int(torch.nonzero(self._mask.any(dim=0))[0])
            if first > 0:
                for layer in self._cache.layers:
                    layer.keys = layer.keys[:, :, first:]
                    layer.values = layer.values[:, :, first:]
                self._mask = self._mask[:, first:]
        self._last = torch.tensor(next_tokens, dtype=torch.long, device=self.device)

    # ---------------------------------------------------------------- per-sequence token choice
    def _choose(self, seq: _Seq, logits_rows: list[torch.Tensor]) -> int | None:
        """Pick the next token for ``seq``; None when the sequence finished (it is then reported)."""
        job = seq.job
        assert seq.result is not None
        if seq.stream.cancelled.is_set():
            self._finish(seq, "cancelled")
            return None
        try:
            logits = cfg_combine(logits_rows[0], logits_rows[1], job.cfg_scale) if seq.rows == 2 else logits_rows[0]
            allowed = job.constraint.allowed() if job.constraint is not None else None
            if allowed is not None and not bool(allowed.any()):
                self._finish(seq, "error", error="the constraint allows no token (grammar dead end)")
                return None
            seen = torch.nonzero(seq.seen).flatten() if seq.seen is not None else None
            token = select_token(logits, job.sampling, seq.generator, allowed=allowed, seen=seen)
            if token in job.stop_ids and (job.constraint is None or job.constraint.accepting):
                self._finish(seq, "stop")
                return None
            if job.constraint is not None:
                job.constraint.advance(token)
        except Exception as exc:
            logger.exception("%s: token selection failed", self.name)
            self._finish(seq, "error", error=f"{type(exc).__name__}: {exc}")
            return None
        seq.tokens.append(token)
        if seq.seen is not None and token < self.vocab_size:
            seq.seen[token] = True
        seq.stream._put(token)
        if job.constraint is not None and job.constraint.finished:
            self._finish(seq, "grammar")
            return None
        if len(seq.tokens) >= job.max_new_tokens:
            self._finish(seq, "length")
            return None
        return token

    def _finish(self, seq: _Seq, reason: str, error: str | None = None) -> None:
        assert seq.result is not None
        seq.result.tokens = list(seq.tokens)
        seq.result.finish_reason = reason
        seq.result.error = error
        seq.stream._put(seq.result)


def _left_pad(t: torch.Tensor, n: int, dim: int = 2) -> torch.Tensor:
    """Zero-pad ``n`` positions at the start of ``dim``."""
    if n == 0:
        return t
    shape = list(t.shape)
    shape[dim] = n
    return torch.cat([torch.zeros(shape, dtype=t.dtype, device=t.device), t], dim=dim)
