"""The batch state of the generation engine and the prefill that feeds it.

The batch keeps one KV cache (transformers' ``DynamicCache``) whose rows are left-padded to a common length: a 2-D
attention mask hides the padding and explicit ``position_ids`` keep each row's rotary positions its own. Prompts are
prefilled the same way: several prompts of different lengths go through the model in one forward pass, left-padded
to the longest, with an attention mask and position ids that make every row see exactly what it would see alone.
Only the last position's logits are computed (``logits_to_keep=1``): the LM head over every prompt position was the
largest cost of a prefill with the 5 Hz LM's 65k-token vocabulary. The result is already in the batch's layout, so
joining is a concatenation along the batch dimension (after left-padding the narrower side).

Padded positions of a prefilled cache are zeroed: a padding query attends to nothing, and an attention kernel may
turn that row into NaN; masked or not, a NaN value would poison every real row that multiplies it by weight 0.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import torch

logger = logging.getLogger(__name__)


@dataclass
class Prefilled:
    """``rows`` prompts after one prefill pass: last-position logits [rows, vocab] (float32), their KV cache and
    the attention mask [rows, width] (1 = real token) that goes with it."""

    logits: torch.Tensor
    cache: Any
    mask: torch.Tensor

    @property
    def rows(self) -> int:
        return int(self.mask.shape[0])


def prefill(model: Any, prompts: Sequence[Sequence[int]], device: torch.device) -> Prefilled:
    """Run ``prompts`` (token id lists, any lengths) through ``model`` in one forward pass, left-padded."""
    if not prompts or any(len(p) == 0 for p in prompts):
        raise ValueError(f"prefill needs non-empty prompts, got lengths {[len(p) for p in prompts]}")
    width = max(len(p) for p in prompts)
    if all(len(p) == width for p in prompts):
        input_ids = torch.tensor([list(p) for p in prompts], dtype=torch.long, device=device)
        mask = torch.ones_like(input_ids)
        if len(prompts) == 1:  # exactly the call a lone prompt always had
            out = model(input_ids=input_ids, use_cache=True, logits_to_keep=1)
            return Prefilled(out.logits[:, -1].float(), out.past_key_values, mask)
    else:
        input_ids = torch.zeros((len(prompts), width), dtype=torch.long, device=device)
        mask = torch.zeros((len(prompts), width), dtype=torch.long, device=device)
        for row, ids in enumerate(prompts):
            input_ids[row, width - len(ids) :] = torch.tensor(list(ids), dtype=torch.long, device=device)
            mask[row, width - len(ids) :] = 1
    position_ids = (mask.cumsum(dim=1) - 1).clamp(min=0)
    out = model(input_ids=input_ids, attention_mask=mask, position_ids=position_ids, use_cache=True, logits_to_keep=1)
    cache = out.past_key_values
    if not bool(mask.all()):
        hidden = ~mask.bool()[:, None, :, None]
        for layer in cache.layers:
            layer.keys = layer.keys.masked_fill(hidden, 0)
            layer.values = layer.values.masked_fill(hidden, 0)
    return Prefilled(out.logits[:, -1].float(), cache, mask)


def select_rows(prefilled: Prefilled, rows: Sequence[int]) -> Prefilled:
    """Only ``rows`` of ``prefilled`` (in that order), with columns that are padding in all of them trimmed."""
    if list(rows) == list(range(prefilled.rows)):
        return prefilled
    index = torch.tensor(list(rows), dtype=torch.long, device=prefilled.mask.device)
    for layer in prefilled.cache.layers:
        layer.keys = layer.keys.index_select(0, index)
        layer.values = layer.values.index_select(0, index)
    out = Prefilled(prefilled.logits.index_select(0, index), prefilled.cache, prefilled.mask.index_select(0, index))
    _trim(out.cache, out.mask)
    out.mask = out.mask[:, _first_live(out.mask) :]
    return out


class RowBatch:
    """The running batch: KV cache [rows, heads, T, dim] per layer, attention mask [rows, T], next positions
    [rows] and the token each row is fed next [rows]. Empty until the first :meth:`join`."""

    def __init__(self, device: torch.device) -> None:
        self.device = device
        self.cache: Any = None
        self.mask: torch.Tensor | None = None
        self.pos: torch.Tensor | None = None
        self.last: torch.Tensor | None = None

    @property
    def rows(self) -> int:
        return 0 if self.last is None else int(self.last.shape[0])

    def reset(self) -> None:
        self.cache = self.mask = self.pos = self.last = None

    def join(self, prefilled: Prefilled, tokens: Sequence[int]) -> None:
        """Append the rows of ``prefilled``; ``tokens`` (one per row) are what they are fed next."""
        if len(tokens) != prefilled.rows:
            raise ValueError(f"join: {len(tokens)} next tokens for {prefilled.rows} prefilled rows")
        mask = prefilled.mask
        pos = mask.sum(dim=1)
        last = torch.tensor(list(tokens), dtype=torch.long, device=self.device)
        if self.cache is None:
            self.cache, self.mask, self.pos, self.last = prefilled.cache, mask, pos, last
            return
        assert self.mask is not None and self.pos is not None and self.last is not None
        width = max(self.mask.shape[1], mask.shape[1])
        batch_pad, row_pad = width - self.mask.shape[1], width - mask.shape[1]
        for batch_layer, row_layer in zip(self.cache.layers, prefilled.cache.layers, strict=True):
            batch_layer.keys = torch.cat([left_pad(batch_layer.keys, batch_pad), left_pad(row_layer.keys, row_pad)])
            batch_layer.values = torch.cat(
                [left_pad(batch_layer.values, batch_pad), left_pad(row_layer.values, row_pad)]
            )
        self.mask = torch.cat([left_pad(self.mask, batch_pad, dim=1), left_pad(mask, row_pad, dim=1)])
        self.pos = torch.cat([self.pos, pos])
        self.last = torch.cat([self.last, last])

    def step(self, model: Any) -> torch.Tensor:
        """One decode step for every row; returns the last-position logits [rows, vocab] (float32)."""
        assert self.cache is not None and self.mask is not None and self.pos is not None and self.last is not None
        ones = torch.ones((self.rows, 1), dtype=torch.long, device=self.device)
        self.mask = torch.cat([self.mask, ones], dim=1)
        out = model(
            input_ids=self.last[:, None],
            attention_mask=self.mask,
            position_ids=self.pos[:, None],
            past_key_values=self.cache,
            use_cache=True,
        )
        self.cache = out.past_key_values
        self.pos = self.pos + 1
        return out.logits[:, -1].float()

    def keep(self, rows: Sequence[int], next_tokens: Sequence[int]) -> None:
        """Keep only ``rows`` (ascending), fed ``next_tokens`` next; an empty ``rows`` empties the batch."""
        if not rows:
            self.reset()
            return
        assert self.cache is not None and self.mask is not None and self.pos is not None
        if len(rows) < self.rows:
            index = torch.tensor(list(rows), dtype=torch.long, device=self.device)
            for layer in self.cache.layers:
                layer.keys = layer.keys.index_select(0, index)
                layer.values = layer.values.index_select(0, index)
            self.mask = self.mask.index_select(0, index)
            self.pos = self.pos.index_select(0, index)
            # Columns that are padding in every remaining row are dead weight: trim them.
            _trim(self.cache, self.mask)
            self.mask = self.mask[:, _first_live(self.mask) :]
        self.last = torch.tensor(list(next_tokens), dtype=torch.long, device=self.device)


def _first_live(mask: torch.Tensor) -> int:
    return int(torch.nonzero(mask.any(dim=0))[0])


def _trim(cache: Any, mask: torch.Tensor) -> None:
    first = _first_live(mask)
    if first > 0:
        for layer in cache.layers:
            layer.keys = layer.keys[:, :, first:]
            layer.values = layer.values[:, :, first:]


def left_pad(t: torch.Tensor, n: int, dim: int = 2) -> torch.Tensor:
    """Zero-pad ``n`` positions at the start of ``dim``."""
    if n == 0:
        return t
    shape = list(t.shape)
    shape[dim] = n
    return torch.cat([torch.zeros(shape, dtype=t.dtype, device=t.device), t], dim=dim)
