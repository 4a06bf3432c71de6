"""``dit_align``: one DiT evaluation that returns the cross-attention probabilities of chosen heads over the lyrics.

Upstream ACE-Step 1.5 times lyrics (its UI's LRC button) by re-running the DiT once on the final latent at a small
noise level and reading the cross-attention of a handful of heads that learned to follow the sung words; the sampler
turns those maps into timestamps (``model_repository/acestep15/alignment.py``). This module is the network side:

* :class:`AttentionProbsProcessor` — diffusers' ``AceStepAttnProcessor2_0`` (it returns no probabilities) plus
  ``softmax(q k^T * scale + mask)`` for the chosen heads, kept on the processor; its output is the stock one.
* :class:`AlignDiT` — :class:`~export.acestep15.networks.MaskedDiT` over the layers up to the last chosen one (the
  later layers cannot change those maps), with the recording processors swapped in for the call only, returning
  ``[B, heads, patches, lyric]``: each chosen head's attention of every latent patch (2 frames) over the lyric
  positions the sampler names (``lyric_positions``: indices into the packed condition sequence).

Which heads: per checkpoint (:func:`resolve_heads`). A checkpoint folder may hold ``alignment_heads.json``
(``{"layer": [head, ...]}``); otherwise upstream's published choice for the real 1.5 DiT, :data:`UPSTREAM_HEADS`,
when the transformer has those layers and heads; otherwise (small or re-shaped DiTs such as the tiny preset) every
head of every layer. Export writes the choice into the sampler manifest (``dims.align_heads``).
"""

from __future__ import annotations

import copy
import json
import logging
from pathlib import Path
from typing import Any

import torch
from diffusers.models.transformers.ace_step_transformer import AceStepAttnProcessor2_0
from torch import nn

from export.acestep15.networks import ENCODER_BUCKETS, FRAME_BUCKETS, LYRIC_BUCKETS, MaskedDiT, dit_inputs
from export.contracts import Axis, NetworkContract, TensorSpec

logger = logging.getLogger(__name__)

# ACE-Step 1.5's handler (``custom_layers_config``): layer -> heads whose cross-attention tracks the lyrics.
UPSTREAM_HEADS: dict[int, tuple[int, ...]] = {2: (6,), 3: (10, 11), 4: (3,), 5: (8, 9), 6: (8,)}
HEADS_FILE = "alignment_heads.json"
# Upper bound of the output's head axis (the contract's range; real choices hold 5-10 heads).
MAX_ALIGN_HEADS = 64

Heads = list[tuple[int, int]]


def _fits(heads: Heads, layers: int, n_heads: int) -> bool:
    return all(0 <= layer < layers and 0 <= head < n_heads for layer, head in heads)


def _flatten(config: dict[Any, Any]) -> Heads:
    return sorted((int(layer), int(head)) for layer, hs in config.items() for head in hs)


def resolve_heads(transformer: nn.Module, folder: Path | None = None) -> Heads:
    """The (layer, head) pairs ``dit_align`` returns for this checkpoint (see the module docstring)."""
    layers, n_heads = len(transformer.layers), int(transformer.layers[0].cross_attn.heads)
    file = Path(folder) / HEADS_FILE if folder is not None else None
    if file is not None and file.is_file():
        try:
            heads = _flatten(json.loads(file.read_text()))
        except (ValueError, TypeError, AttributeError) as exc:
            raise ValueError(
                f"{file}: expected a JSON object mapping layer index to a list of head indices, e.g. "
                f'{{"2": [6], "3": [10, 11]}} ({exc})'
            ) from None
        if not heads or not _fits(heads, layers, n_heads) or len(heads) > MAX_ALIGN_HEADS:
            raise ValueError(
                f"{file}: heads {heads} must be 1..{MAX_ALIGN_HEADS} (layer, head) pairs with layer < {layers} and "
                f"head < {n_heads} (this DiT's sizes); fix the file or delete it for the default"
            )
        return heads
    upstream = _flatten(dict(UPSTREAM_HEADS))
    if _fits(upstream, layers, n_heads):
        return upstream
    heads = [(layer, head) for layer in range(layers) for head in range(n_heads)][:MAX_ALIGN_HEADS]
    logger.info(
        "dit_align: DiT has %d layers x %d heads, too small for upstream's heads %s; using %d heads (%s chooses)",
        layers, n_heads, upstream, len(heads), HEADS_FILE,
    )
    return heads


class AttentionProbsProcessor(AceStepAttnProcessor2_0):
    """The stock processor that also keeps the attention probabilities of ``heads`` (``probs``: [B, h, Q, K])."""

    def __init__(self, heads: list[int]) -> None:
        super().__init__()
        self.heads = heads
        self.probs: torch.Tensor | None = None

    def __call__(
        self,
        attn: Any,
        hidden_states: torch.Tensor,
        encoder_hidden_states: torch.Tensor | None = None,
        attention_mask: torch.Tensor | None = None,
        image_rotary_emb: tuple[torch.Tensor, torch.Tensor] | None = None,
    ) -> torch.Tensor:
        assert encoder_hidden_states is not None, "AttentionProbsProcessor is for cross-attention"
        query = attn.norm_q(attn.to_q(hidden_states).unflatten(-1, (attn.heads, attn.head_dim)))
        key = attn.norm_k(attn.to_k(encoder_hidden_states).unflatten(-1, (attn.kv_heads, attn.head_dim)))
        group = attn.heads // attn.kv_heads  # GQA: query head h reads key head h // group (SDPA's enable_gqa)
        q = torch.stack([query[:, :, h] for h in self.heads], dim=1)  # [B, h, Q, D]
        k = torch.stack([key[:, :, h // group] for h in self.heads], dim=1)  # [B, h, K, D]
        logits = torch.matmul(q, k.transpose(-1, -2)) * attn.scaling
        if attention_mask is not None:
            logits = logits + attention_mask
        self.probs = logits.softmax(dim=-1)
        return super().__call__(attn, hidden_states, encoder_hidden_states, attention_mask, image_rotary_emb)


def _truncated(transformer: nn.Module, layers: int) -> nn.Module:
    """A shallow view of ``transformer`` with its first ``layers`` blocks (weights shared, original untouched)."""
    view = copy.copy(transformer)
    view._modules = dict(transformer._modules)
    view.layers = nn.ModuleList(list(transformer.layers)[:layers])
    view.layer_types = list(transformer.layer_types)[:layers]
    return view


class AlignDiT(nn.Module):
    """``dit``'s inputs plus ``lyric_positions`` -> the chosen heads' cross-attention [B, heads, patches, lyric]."""

    def __init__(self, transformer: nn.Module, heads: Heads) -> None:
        super().__init__()
        self.heads = list(heads)
        self.layer_ids = sorted({layer for layer, _ in self.heads})
        self.dit = MaskedDiT(_truncated(transformer, self.layer_ids[-1] + 1))

    def forward(
        self,
        hidden_states: torch.Tensor,
        timestep: torch.Tensor,
        timestep_r: torch.Tensor,
        encoder_hidden_states: torch.Tensor,
        encoder_attention_mask: torch.Tensor,
        context_latents: torch.Tensor,
        latent_mask: torch.Tensor,
        lyric_positions: torch.Tensor,
    ) -> torch.Tensor:
        blocks = self.dit.dit.layers
        recorders = {i: AttentionProbsProcessor([h for layer, h in self.heads if layer == i]) for i in self.layer_ids}
        stock = {i: blocks[i].cross_attn.processor for i in self.layer_ids}
        try:
            for i, recorder in recorders.items():
                blocks[i].cross_attn.processor = recorder
            self.dit(
                hidden_states, timestep, timestep_r, encoder_hidden_states, encoder_attention_mask,
                context_latents, latent_mask,
            )
        finally:
            for i, processor in stock.items():
                blocks[i].cross_attn.processor = processor
        probs = torch.cat([recorders[i].probs for i in self.layer_ids], dim=1)  # type: ignore[misc]
        index = lyric_positions[:, None, None, :].expand(-1, probs.shape[1], probs.shape[2], -1)
        return torch.gather(probs, 3, index)


def align_contract(condition_hidden: int, acoustic_dim: int, *, max_batch_size: int = 8) -> NetworkContract:
    """The ``dit_align`` contract: ``dit``'s inputs and buckets plus the lyric positions to return."""
    c, b = acoustic_dim, "batch"
    return NetworkContract(
        name="dit_align",
        description="one DiT evaluation returning chosen heads' cross-attention over the lyrics (lyric timing)",
        inputs=(
            *dit_inputs(c, condition_hidden),
            # Indices into the packed condition sequence (lyrics come first in it); padding repeats index 0.
            TensorSpec("lyric_positions", "int64", (b, "lyric"), fill="ids", high=2),
        ),
        outputs=(TensorSpec("cross_attention", "float32", (b, "heads", "patches", "lyric")),),
        axes=(
            Axis("frames", FRAME_BUCKETS[0], 1500, FRAME_BUCKETS[-1], FRAME_BUCKETS),
            Axis("encoder", 2, 512, ENCODER_BUCKETS[-1], ENCODER_BUCKETS),
            Axis("lyric", 1, 512, LYRIC_BUCKETS[-1], LYRIC_BUCKETS),
            Axis("heads", 1, 8, MAX_ALIGN_HEADS),
            Axis("patches", FRAME_BUCKETS[0] // 2, 750, FRAME_BUCKETS[-1] // 2),
        ),
        max_batch_size=max_batch_size,
        precision="bf16",
        preferred_batch_sizes=(),
        max_queue_delay_us=1000,
    )
