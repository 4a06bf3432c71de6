"""Next-token selection for one sequence: CFG with a negative prompt, constraint masks, repetition penalty, top-k,
top-p, temperature, then a draw from the sequence's own seeded generator.

The order follows ACE-Step 1.5's own PyTorch loop (``acestep/llm_inference.py``, ``_generate_with_cfg_custom``):
``cfg = uncond + scale * (cond - uncond)`` on fp32 logits, the constraint mask first, then repetition penalty,
top-k, top-p, and the temperature last, just before sampling.
"""

from __future__ import annotations

import torch

from model_repository.llm.requests import Sampling


def cfg_combine(cond: torch.Tensor, uncond: torch.Tensor, scale: float) -> torch.Tensor:
    """Classifier-free guidance on logits: ``uncond + scale * (cond - uncond)`` in fp32."""
    cond, uncond = cond.float(), uncond.float()
    return uncond + scale * (cond - uncond)


def apply_repetition_penalty(logits: torch.Tensor, seen: torch.Tensor, penalty: float) -> torch.Tensor:
    """CTRL-style penalty (as transformers' ``RepetitionPenaltyLogitsProcessor``): the logits of tokens already seen
    are divided by ``penalty`` when positive and multiplied by it when negative."""
    if penalty == 1.0 or seen.numel() == 0:
        return logits
    picked = logits[seen]
    logits[seen] = torch.where(picked > 0, picked / penalty, picked * penalty)
    return logits


def apply_top_k(logits: torch.Tensor, k: int) -> torch.Tensor:
    if 0 < k < logits.shape[-1]:
        kth = torch.topk(logits, k).values[-1]
        logits[logits < kth] = float("-inf")
    return logits


def apply_top_p(logits: torch.Tensor, p: float) -> torch.Tensor:
    """Nucleus filter: keep the smallest set of most likely tokens whose probability reaches ``p`` (the top token
    always). A trained model's nucleus is usually small, so the top 64 are tried first; only a flat distribution
    (a random tiny model) pays for a full sort."""
    if not 0.0 < p < 1.0:
        return logits
    probs = torch.softmax(logits, dim=-1)
    k = min(64, logits.shape[-1])
    top_probs, top_ids = torch.topk(probs, k)
    cumulative = torch.cumsum(top_probs, dim=-1)
    if k == logits.shape[-1] or bool(cumulative[-1] > p):
        drop = cumulative > p
        drop[1:] = drop[:-1].clone()
        drop[0] = False
        keep = top_ids[~drop]
        filtered = torch.full_like(logits, float("-inf"))
        filtered[keep] = logits[keep]
        logits.copy_(filtered)
        return logits
    sorted_probs, order = torch.sort(probs, descending=True)
    cumulative = torch.cumsum(sorted_probs, dim=-1)
    drop = cumulative > p
    drop[1:] = drop[:-1].clone()
    drop[0] = False
    logits[order[drop]] = float("-inf")
    return logits


def select_token(
    logits: torch.Tensor,
    sampling: Sampling,
    generator: torch.Generator,
    *,
    allowed: torch.Tensor | None = None,
    seen: torch.Tensor | None = None,
) -> int:
    """Choose the next token from one row of fp32 logits (modified in place)."""
    if allowed is not None:
        allowed = allowed.to(logits.device, non_blocking=True)
        logits.masked_fill_(~allowed[: logits.shape[-1]], float("-inf"))
        if allowed.shape[-1] < logits.shape[-1]:
            logits[allowed.shape[-1] :] = float("-inf")
    if seen is not None:
        logits = apply_repetition_penalty(logits, seen.to(logits.device), sampling.repetition_penalty)
    logits = apply_top_k(logits, sampling.top_k)
    logits = apply_top_p(logits, sampling.top_p)
    if sampling.temperature <= 0.0:
        return int(torch.argmax(logits))
    probs = torch.softmax(logits / sampling.temperature, dim=-1)
    if not bool(torch.isfinite(probs).all()) or float(probs.sum()) <= 0.0:
        # Every candidate was filtered out numerically (e.g. -inf everywhere but one): fall back to the best logit.
        return int(torch.argmax(logits))
    return int(torch.multinomial(probs, 1, generator=generator))
