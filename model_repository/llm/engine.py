"""A continuous-batching generation loop over a Hugging Face causal LM.

One background thread owns the model. Requests (:class:`Job`) arrive from any thread; the ones waiting when the
loop comes round are prefilled together (one forward pass over their left-padded prompts, up to
``max_prefill_tokens`` padded tokens per pass), then join the running batch, whose rows all advance together, one
token per forward pass. A sequence leaves the batch the moment it finishes and a waiting one takes its place, so
concurrent requests share every decode step and every prefill. ``batch_prefill=False`` prefills one prompt per pass
(the engine before batched prefill; kept for measurement).

The batch keeps one KV cache whose rows are left-padded to a common length (:mod:`~model_repository.llm.batch_cache`):
a 2-D attention mask hides the padding and explicit ``position_ids`` keep each row's rotary positions its own. When
sequences join, their prefill cache is left-padded (or the batch's is) and concatenated along the batch dimension;
when one leaves, its row is dropped and all-padding columns are trimmed.

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

from model_repository.llm.batch_cache import RowBatch, prefill, select_rows
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
    prefill_rows: int = 0  # prompt rows prefilled in the same forward pass as this job's (its own included)
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

    def __init__(
        self,
        model: Any,
        *,
        max_rows: int = 16,
        name: str = "llm",
        batch_prefill: bool = True,
        max_prefill_tokens: int = 8192,
    ) -> None:
        if max_prefill_tokens < 1:
            raise ValueError(
                f"max_prefill_tokens={max_prefill_tokens}; it caps padded prompt tokens per prefill pass: give >= 1"
            )
        self.model = model
        self.device = next(model.parameters()).device
        self.vocab_size = int(model.config.vocab_size)
        self.max_rows = max_rows
        self.name = name
        self.batch_prefill = batch_prefill
        self.max_prefill_tokens = max_prefill_tokens
        self._pending: deque[Stream] = deque()
        self._cv = threading.Condition()
        self._closed = False
        self._active: list[_Seq] = []
        self._batch = RowBatch(self.device)
        # prefills: prompts prefilled (a CFG job has two); prefill_passes: forward passes that did it.
        self.stats = {"decode_steps": 0, "decode_rows": 0, "max_rows": 0, "prefills": 0, "prefill_passes": 0, "jobs": 0}
        self._thread = threading.Thread(target=self._loop, name=f"{name}-engine", daemon=True)
        self._thread.start()

    # ---------------------------------------------------------------- public
    def submit(self, job: Job) -> Stream:
        if job.max_new_tokens < 1:
            raise ValueError(f"max_new_tokens must be >= 1, got {job.max_new_tokens}")
        if not job.prompt_ids:
            raise ValueError("the prompt is empty")
        if job.uses_cfg and not job.uncond_prompt_ids:
            raise ValueError(
                f"cfg_scale={job.cfg_scale} with an empty negative prompt: give uncond_prompt_ids or cfg_scale <= 1"
            )
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
            for group in self._prefill_groups(admitted):
                self._admit_group(group)
            try:
                with torch.inference_mode():
                    if self._active:
                        self._decode_step()
            except Exception as exc:  # a failed forward pass fails the batch, not the server
                logger.exception("%s: generation step failed", self.name)
                for seq in self._active:
                    self._finish(seq, "error", error=f"{type(exc).__name__}: {exc}")
                self._active = []
                self._batch.reset()
        for seq in self._active:
            self._finish(seq, "cancelled", error="the engine was closed")
        for stream in self._pending:
            stream._put(Result([], "cancelled", len(stream.job.prompt_ids), error="the engine was closed"))

    # ---------------------------------------------------------------- prefill and joining the batch
    @staticmethod
    def _prompts(job: Job) -> list[list[int]]:
        uncond = job.uncond_prompt_ids if job.uses_cfg else None
        return [job.prompt_ids] if uncond is None else [job.prompt_ids, uncond]

    def _prefill_groups(self, streams: list[Stream]) -> list[list[Stream]]:
        """Prefill passes, in arrival order: rows x longest prompt <= ``max_prefill_tokens`` (or a lone job)."""
        if not self.batch_prefill:
            return [[s] for s in streams]
        groups: list[list[Stream]] = []
        rows = width = 0
        for stream in streams:
            prompts = self._prompts(stream.job)
            new_rows, new_width = rows + len(prompts), max(width, *(len(p) for p in prompts))
            if groups and new_rows * new_width > self.max_prefill_tokens:
                groups.append([])
                new_rows, new_width = len(prompts), max(len(p) for p in prompts)
            elif not groups:
                groups.append([])
            groups[-1].append(stream)
            rows, width = new_rows, new_width
        return groups

    def _admit_group(self, streams: list[Stream]) -> None:
        """Prefill ``streams`` in one pass and join them to the batch. If the pass fails, each is retried alone, so
        a prompt that cannot be prefilled fails its own job only."""
        try:
            with torch.inference_mode():
                self._admit(streams)
            return
        except Exception as exc:
            if len(streams) == 1:
                logger.exception("%s: prefill failed", self.name)
                job = streams[0].job
                streams[0]._put(Result([], "error", len(job.prompt_ids), error=f"{type(exc).__name__}: {exc}"))
                return
            logger.warning("%s: joint prefill of %d prompts failed (%s); one by one", self.name, len(streams), exc)
        for stream in streams:
            self._admit_group([stream])

    def _admit(self, streams: list[Stream]) -> None:
        prompts = [p for stream in streams for p in self._prompts(stream.job)]
        if self.batch_prefill:
            parts = [prefill(self.model, prompts, self.device)]
        else:  # one forward pass per prompt, a CFG pair's two included
            parts = [prefill(self.model, [p], self.device) for p in prompts]
        logits = parts[0].logits if len(parts) == 1 else torch.cat([part.logits for part in parts])
        self.stats["prefills"] += len(prompts)
        self.stats["prefill_passes"] += len(parts)
        row = 0
        keep: list[int] = []
        tokens: list[int] = []
        joining: list[_Seq] = []
        for stream in streams:
            seq = self._new_seq(stream)
            assert seq.result is not None
            seq.result.prefill_rows = len(prompts) if len(parts) == 1 else 1
            token = self._choose(seq, [logits[row + i] for i in range(seq.rows)])
            if token is not None:
                keep.extend(range(row, row + seq.rows))
                tokens.extend([token] * seq.rows)
                joining.append(seq)
            row += seq.rows
        if not keep:
            return
        # From here on tokens have been streamed: a failure ends these jobs instead of retrying their prefill.
        try:
            if len(parts) == 1:
                self._batch.join(select_rows(parts[0], keep), tokens)
            else:
                for r, token in zip(keep, tokens, strict=True):
                    self._batch.join(parts[r], [token])
        except Exception as exc:
            logger.exception("%s: joining the batch failed", self.name)
            broken = self._batch.rows != sum(seq.rows for seq in self._active)  # batch and sequences disagree
            for seq in joining + (self._active if broken else []):
                self._finish(seq, "error", error=f"{type(exc).__name__}: {exc}")
            if broken:
                self._active = []
                self._batch.reset()
            return
        self._active.extend(joining)

    def _new_seq(self, stream: Stream) -> _Seq:
        job = stream.job
        generator = torch.Generator(device=self.device)
        generator.manual_seed(job.sampling.seed if job.sampling.seed is not None else int(time.time_ns() % 2**63))
        seq = _Seq(stream=stream, generator=generator, rows=2 if job.uses_cfg else 1)
        if job.sampling.repetition_penalty != 1.0:
            seq.seen = torch.zeros(self.vocab_size, dtype=torch.bool)
            seq.seen[torch.tensor(job.prompt_ids, dtype=torch.long).clamp(0, self.vocab_size - 1)] = True
        self.stats["jobs"] += 1
        seq.result = Result([], "", prompt_tokens=len(job.prompt_ids), steps=1)
        return seq

    # ---------------------------------------------------------------- one decode step for every active row
    def _decode_step(self) -> None:
        rows = self._batch.rows
        # Sampling stays on the model's device: on a GPU, a 150k-token sort per row on the CPU would dominate.
        logits = self._batch.step(self.model)
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
        self._batch.keep(keep, next_tokens)

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
