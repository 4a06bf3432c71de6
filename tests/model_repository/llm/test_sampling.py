"""Logits processing against straightforward reference implementations."""

from __future__ import annotations

import pytest
import torch

from model_repository.llm.requests import Sampling
from model_repository.llm.sampling import (
    apply_repetition_penalty,
    apply_top_k,
    apply_top_p,
    cfg_combine,
    select_token,
)


def reference_top_p(logits: torch.Tensor, p: float) -> torch.Tensor:
    sorted_logits, order = torch.sort(logits, descending=True)
    cumulative = torch.cumsum(torch.softmax(sorted_logits, -1), -1)
    drop = cumulative > p
    drop[1:] = drop[:-1].clone()
    drop[0] = False
    out = logits.clone()
    out[order[drop]] = float("-inf")
    return out


@pytest.mark.parametrize("scale", [0.1, 1.0, 8.0])  # flat (full sort path) to peaked (top-64 shortcut)
@pytest.mark.parametrize("p", [0.3, 0.9, 0.99])
def test_top_p_matches_the_sorted_cumulative_definition(scale: float, p: float) -> None:
    generator = torch.Generator().manual_seed(int(scale * 10))
    logits = torch.randn(5000, generator=generator) * scale
    logits[:1000] = float("-inf")  # a constraint mask
    got = apply_top_p(logits.clone(), p)
    assert torch.equal(torch.isinf(got), torch.isinf(reference_top_p(logits, p)))
    assert torch.isfinite(got).any()


def test_top_k_cfg_and_repetition_penalty() -> None:
    logits = torch.tensor([1.0, 3.0, -2.0, 2.0])
    assert torch.isinf(apply_top_k(logits.clone(), 2)).tolist() == [True, False, True, False]
    assert torch.equal(apply_top_k(logits.clone(), 0), logits)
    assert torch.allclose(cfg_combine(torch.tensor([2.0]), torch.tensor([1.0]), 3.0), torch.tensor([4.0]))
    penalised = apply_repetition_penalty(logits.clone(), torch.tensor([1, 2]), 2.0)
    assert penalised.tolist() == [1.0, 1.5, -4.0, 2.0]


def test_select_token_respects_the_mask_and_greedy() -> None:
    logits = torch.tensor([5.0, 1.0, 0.0, 4.0])
    allowed = torch.tensor([False, True, True, True])
    assert select_token(logits.clone(), Sampling(temperature=0.0), torch.Generator(), allowed=allowed) == 3
    generator = torch.Generator().manual_seed(0)
    draws = {select_token(logits.clone(), Sampling(temperature=1.5), generator, allowed=allowed) for _ in range(200)}
    assert draws <= {1, 2, 3} and len(draws) == 3
