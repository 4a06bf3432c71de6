"""The ACE-Step v1 DiT and its Conformer lyric encoder, written to the real checkpoint's key names and shapes.

``ACEStepV1Transformer`` loads the ``ace_step_transformer/`` state dict of ``ACE-Step/ACE-Step-v1-3.5B`` minus the
204 keys inference never reads (see :mod:`export.acestep_v1.checkpoint`). The math follows the original model:

* **encode** builds the cross-attention memory ``[speaker(1) | genre_embedder(text) | lyric encoder(ids)]`` and its
  float mask ``[1 | text_mask | lyric_mask]``.
* **decode** is one velocity evaluation: patch embedding (a (16, 1) conv over the 8x16 latent, 2048-channel
  GroupNorm, 1x1 conv), ``num_layers`` blocks of adaLN-single + ReLU linear self-attention with RoPE + softmax
  cross-attention with RoPE on both sides + GLUMBConv feed-forward, then the adaLN final layer and un-patchify.
* **RoPE** pairs *adjacent* channels (2k, 2k+1) while the cos/sin tables are ``cat(freqs, freqs)``, so the two
  channels of a pair use different frequencies; this is the trained behaviour and is kept.
* **ERG** (the attention-weakening unconditional branch) multiplies the query projections of some layers by 0.01:
  DiT blocks 15..19 (self and cross ``to_q``) and lyric layers 4..5 (``linear_q``) in the real model. Here it is a
  per-row scale, so conditional and ERG-unconditional rows can share one batch.
* **Masks**: a padded latent frame (``attention_mask`` 0) is zeroed in q/k/v of the linear attention and gets a zero
  cross-attention result (what torch >= 2.5's SDPA returns for a fully masked row), so no NaN can appear.
"""

from __future__ import annotations

import json
import logging
import math
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from diffusers.models.embeddings import TimestepEmbedding, Timesteps
from torch import nn

logger = logging.getLogger(__name__)

# ERG multiplies the chosen query projections by this factor (the pipeline's "temperature" tau).
ERG_QUERY_SCALE = 0.01


@dataclass
class LyricEncoderConfig:
    """The Conformer lyric encoder. Upstream hard-codes everything but ``input_size``; these are its defaults."""

    input_size: int = 1024
    output_size: int = 1024
    attention_heads: int = 16
    linear_units: int = 4096
    num_blocks: int = 6


@dataclass
class TransformerConfig:
    """``ace_step_transformer/config.json`` (unknown keys such as ``_class_name`` are ignored)."""

    in_channels: int = 8
    num_layers: int = 24
    inner_dim: int = 2560
    attention_head_dim: int = 128
    num_attention_heads: int = 20
    mlp_ratio: float = 2.5
    out_channels: int = 8
    max_position: int = 32768
    rope_theta: float = 1000000.0
    speaker_embedding_dim: int = 512
    text_embedding_dim: int = 768
    ssl_encoder_depths: list[int] = field(default_factory=lambda: [8, 8])
    ssl_names: list[str] = field(default_factory=lambda: ["mert", "m-hubert"])
    ssl_latent_dims: list[int] = field(default_factory=lambda: [1024, 768])
    lyric_encoder_vocab_size: int = 6693
    lyric_hidden_size: int = 1024
    patch_size: list[int] = field(default_factory=lambda: [16, 1])
    max_height: int = 16
    max_width: int = 32768
    lyric_encoder: LyricEncoderConfig = field(default_factory=LyricEncoderConfig)
    # Layers whose queries ERG weakens (the pipeline's l_min..l_max ranges for the real model).
    erg_dit_blocks: list[int] = field(default_factory=lambda: [15, 16, 17, 18, 19])
    erg_lyric_layers: list[int] = field(default_factory=lambda: [4, 5])
    # ... and the UMT5 text encoder blocks whose self-attention queries it weakens (``SelfAttention.q``).
    erg_text_layers: list[int] = field(default_factory=lambda: [8, 9])

    @property
    def head_count(self) -> int:
        return self.num_attention_heads

    @property
    def model_dim(self) -> int:
        # The model ignores ``inner_dim`` and uses heads * head_dim (they agree in the real config).
        return self.num_attention_heads * self.attention_head_dim

    @classmethod
    def from_dict(cls, raw: Mapping[str, Any]) -> TransformerConfig:
        known = {f.name for f in fields(cls)}
        kwargs = {k: v for k, v in raw.items() if k in known and k != "lyric_encoder"}
        cfg = cls(**kwargs)
        # The lyric encoder's size: explicit "lyric_encoder" / "_lyric_encoder_kwargs" (the tiny fixtures' name),
        # else the upstream defaults with input_size = lyric_hidden_size.
        lyric_raw = dict(raw.get("lyric_encoder") or raw.get("_lyric_encoder_kwargs") or {})
        lyric_known = {f.name for f in fields(LyricEncoderConfig)}
        lyric = LyricEncoderConfig(**{k: v for k, v in lyric_raw.items() if k in lyric_known})
        lyric.input_size = cfg.lyric_hidden_size
        cfg.lyric_encoder = lyric
        if lyric.output_size != cfg.lyric_hidden_size:
            raise ValueError(
                f"lyric encoder output_size {lyric.output_size} must equal lyric_hidden_size {cfg.lyric_hidden_size}"
            )
        for name, layers, limit in (
            ("erg_dit_blocks", cfg.erg_dit_blocks, cfg.num_layers),
            ("erg_lyric_layers", cfg.erg_lyric_layers, lyric.num_blocks),
            ("erg_text_layers", cfg.erg_text_layers, 1 << 30),  # checked against the text encoder at export
        ):
            bad = [i for i in layers if not 0 <= i < limit]
            if bad:
                raise ValueError(f"{name}={list(layers)}: indices {bad} are outside 0..{limit - 1}")
        return cfg

    @classmethod
    def from_file(cls, path: str | Path) -> TransformerConfig:
        return cls.from_dict(json.loads(Path(path).read_text()))

    def to_dict(self) -> dict[str, Any]:
        out = asdict(self)
        out["_class_name"] = "Transformer2DModel"
        return out


# ----------------------------------------------------------------------------------------------------------------------
# Small shared pieces


def rms_norm(x: torch.Tensor, eps: float = 1e-6) -> torch.Tensor:
    """RMSNorm without affine weights, computed in float32 and returned in the input dtype."""
    var = x.float().pow(2).mean(-1, keepdim=True)
    return (x.float() * torch.rsqrt(var + eps)).to(x.dtype)


def rope_tables(length: int, head_dim: int, theta: float, device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
    """cos/sin tables [length, head_dim] laid out as ``cat(freqs, freqs)`` (the trained layout)."""
    inv_freq = 1.0 / (theta ** (torch.arange(0, head_dim, 2, dtype=torch.int64, device=device).float() / head_dim))
    pos = torch.arange(length, device=device, dtype=torch.int64).float()
    freqs = torch.outer(pos, inv_freq)
    emb = torch.cat((freqs, freqs), dim=-1)
    return emb.cos(), emb.sin()


def apply_rope(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    """Rotate adjacent pairs (2k, 2k+1) of ``x`` [B, H, S, D] with the tables [S, D]."""
    pairs = x.reshape(*x.shape[:-1], -1, 2)
    real, imag = pairs[..., 0], pairs[..., 1]
    rotated = torch.stack([-imag, real], dim=-1).flatten(-2)
    return (x.float() * cos + rotated.float() * sin).to(x.dtype)


def _row_scale(scale: torch.Tensor | None, x: torch.Tensor) -> torch.Tensor:
    """Multiply the rows of ``x`` [B, ...] by ``scale`` [B] (no-op for ``None``)."""
    if scale is None:
        return x
    return x * scale.to(x.dtype).view(-1, *([1] * (x.dim() - 1)))


# ----------------------------------------------------------------------------------------------------------------------
# DiT


class _Projections(nn.Module):
    """q/k/v/out projections with the diffusers ``Attention`` key names (``to_out.0``)."""

    def __init__(self, dim: int, kv_dim: int) -> None:
        super().__init__()
        self.to_q = nn.Linear(dim, dim, bias=True)
        self.to_k = nn.Linear(kv_dim, dim, bias=True)
        self.to_v = nn.Linear(kv_dim, dim, bias=True)
        self.to_out = nn.ModuleList([nn.Linear(dim, dim, bias=True)])


class LinearSelfAttention(_Projections):
    """ReLU linear attention (Sana's LiteLA) with RoPE on q and k; the latent mask zeroes q, k and v rows."""

    eps = 1e-15

    def __init__(self, dim: int, heads: int) -> None:
        super().__init__(dim, dim)
        self.heads = heads

    def forward(
        self, x: torch.Tensor, mask: torch.Tensor, rope: tuple[torch.Tensor, torch.Tensor],
        q_scale: torch.Tensor | None = None,
    ) -> torch.Tensor:
        b, s, c = x.shape
        d = c // self.heads
        q = _row_scale(q_scale, self.to_q(x))
        k, v = self.to_k(x), self.to_v(x)
        q, k, v = (t.view(b, s, self.heads, d).transpose(1, 2) for t in (q, k, v))  # [B, H, S, D]
        q, k = apply_rope(q, *rope), apply_rope(k, *rope)
        m = mask[:, None, :, None].to(q.dtype)
        q, k, v = F.relu(q * m).float(), F.relu(k * m).float(), (v * m).float()
        kv = torch.matmul(k.transpose(-1, -2), v)  # [B, H, D, D]
        num = torch.matmul(q, kv)  # [B, H, S, D]
        den = torch.matmul(q, k.sum(dim=2, keepdim=True).transpose(-1, -2))  # [B, H, S, 1]
        # The original divides by (den + 1e-15); clamping gives the same float32 values (den is 0 or >> 1e-15) and,
        # unlike the add, survives ONNX graph optimisation (a masked row then gives 0/eps = 0, not 0/0).
        out = (num / den.clamp_min(self.eps)).transpose(1, 2).reshape(b, s, c).to(x.dtype)
        return self.to_out[0](out)


class CrossAttention(_Projections):
    """Softmax cross-attention from latent frames to the condition memory, RoPE on both (positions from 0)."""

    def __init__(self, dim: int, heads: int) -> None:
        super().__init__(dim, dim)
        self.heads = heads

    def forward(
        self, x: torch.Tensor, mask: torch.Tensor, memory: torch.Tensor, memory_mask: torch.Tensor,
        rope: tuple[torch.Tensor, torch.Tensor], rope_memory: tuple[torch.Tensor, torch.Tensor],
        q_scale: torch.Tensor | None = None,
    ) -> torch.Tensor:
        b, s, c = x.shape
        d = c // self.heads
        q = _row_scale(q_scale, self.to_q(x)).view(b, s, self.heads, d).transpose(1, 2)
        k = self.to_k(memory).view(b, -1, self.heads, d).transpose(1, 2)
        v = self.to_v(memory).view(b, -1, self.heads, d).transpose(1, 2)
        q, k = apply_rope(q, *rope), apply_rope(k, *rope_memory)
        # Key padding only; rows of padded latent frames are zeroed afterwards (a fully masked row's result).
        key_ok = (memory_mask > 0.5)[:, None, None, :]
        bias = torch.zeros(key_ok.shape, dtype=q.dtype, device=q.device).masked_fill(~key_ok, -1e9)
        out = F.scaled_dot_product_attention(q, k, v, attn_mask=bias)
        out = torch.where((mask > 0.5)[:, None, :, None], out, torch.zeros_like(out))
        return self.to_out[0](out.transpose(1, 2).reshape(b, s, c))


class _ConvLayer(nn.Module):
    """A Conv1d under ``.conv`` (the GLUMBConv key layout)."""

    def __init__(self, cin: int, cout: int, kernel: int, groups: int = 1, bias: bool = True) -> None:
        super().__init__()
        self.conv = nn.Conv1d(cin, cout, kernel, padding=kernel // 2, groups=groups, bias=bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv(x)


class GLUMBConv(nn.Module):
    """Feed-forward: 1x1 conv + SiLU, depthwise k=3 conv, SiLU-gated GLU, 1x1 conv (no bias)."""

    def __init__(self, dim: int, hidden: int) -> None:
        super().__init__()
        self.inverted_conv = _ConvLayer(dim, hidden * 2, 1)
        self.depth_conv = _ConvLayer(hidden * 2, hidden * 2, 3, groups=hidden * 2)
        self.point_conv = _ConvLayer(hidden, dim, 1, bias=False)

    def forward(self, x: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
        h = F.silu(self.inverted_conv(x.transpose(1, 2)))
        if mask is not None:  # padded frames must not leak into valid neighbours through the k=3 conv
            h = h * mask[:, None, :].to(h.dtype)
        h, gate = self.depth_conv(h).chunk(2, dim=1)
        return self.point_conv(h * F.silu(gate)).transpose(1, 2)


class DiTBlock(nn.Module):
    """adaLN-single block: gated linear self-attention, ungated cross-attention, gated GLUMBConv."""

    def __init__(self, dim: int, heads: int, mlp_ratio: float) -> None:
        super().__init__()
        self.attn = LinearSelfAttention(dim, heads)
        self.cross_attn = CrossAttention(dim, heads)
        self.ff = GLUMBConv(dim, int(dim * mlp_ratio))
        self.scale_shift_table = nn.Parameter(torch.randn(6, dim) / dim**0.5)

    def forward(
        self, x: torch.Tensor, mask: torch.Tensor, memory: torch.Tensor, memory_mask: torch.Tensor,
        temb: torch.Tensor, rope: tuple[torch.Tensor, torch.Tensor], rope_memory: tuple[torch.Tensor, torch.Tensor],
        q_scale: torch.Tensor | None = None, ff_mask: torch.Tensor | None = None,
    ) -> torch.Tensor:
        mod = self.scale_shift_table[None] + temb.reshape(x.shape[0], 6, -1)
        shift_msa, scale_msa, gate_msa, shift_mlp, scale_mlp, gate_mlp = mod.chunk(6, dim=1)
        h = rms_norm(x) * (1 + scale_msa) + shift_msa
        x = x + gate_msa * self.attn(h, mask, rope, q_scale)
        x = x + self.cross_attn(x, mask, memory, memory_mask, rope, rope_memory, q_scale)
        h = rms_norm(x) * (1 + scale_mlp) + shift_mlp
        return x + gate_mlp * self.ff(h, ff_mask)


class PatchEmbed(nn.Module):
    """(16, 1) patches of the [B, 8, 16, W] latent -> [B, W, dim]."""

    def __init__(self, in_channels: int, dim: int, patch_size: Sequence[int]) -> None:
        super().__init__()
        mid = in_channels * 256
        patch = (int(patch_size[0]), int(patch_size[1]))
        self.early_conv_layers = nn.Sequential(
            nn.Conv2d(in_channels, mid, kernel_size=patch, stride=patch),
            nn.GroupNorm(32, mid, eps=1e-6, affine=True),
            nn.Conv2d(mid, dim, kernel_size=1),
        )

    def forward(self, latent: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
        conv, norm, proj = self.early_conv_layers
        assert isinstance(norm, nn.GroupNorm)
        h = conv(latent)  # [B, C, 1, W]
        if mask is None:
            h = norm(h)
        else:  # GroupNorm statistics over the valid frames only
            b, c, _, w = h.shape
            g = h.reshape(b, norm.num_groups, -1, w)
            m = mask.to(h.dtype)[:, None, None, :]
            count = (m.sum(dim=-1, keepdim=True) * g.shape[2]).clamp_min(1.0)
            mean = (g * m).sum(dim=(2, 3), keepdim=True) / count
            var = (((g - mean) * m) ** 2).sum(dim=(2, 3), keepdim=True) / count
            h = ((g - mean) / torch.sqrt(var + norm.eps)).reshape(b, c, 1, w)
            h = h * norm.weight[None, :, None, None] + norm.bias[None, :, None, None]
        return proj(h).flatten(2).transpose(1, 2)


class FinalLayer(nn.Module):
    """adaLN (shift, scale from the embedded timestep), linear to patch pixels, un-patchify to [B, C, 16, W]."""

    def __init__(self, dim: int, patch_size: Sequence[int], out_channels: int) -> None:
        super().__init__()
        self.patch_size = (int(patch_size[0]), int(patch_size[1]))
        self.out_channels = out_channels
        self.linear = nn.Linear(dim, self.patch_size[0] * self.patch_size[1] * out_channels)
        self.scale_shift_table = nn.Parameter(torch.randn(2, dim) / dim**0.5)

    def forward(self, x: torch.Tensor, t: torch.Tensor, output_length: int) -> torch.Tensor:
        shift, scale = (self.scale_shift_table[None] + t[:, None]).chunk(2, dim=1)
        x = self.linear(rms_norm(x) * (1 + scale) + shift)
        b, w = x.shape[0], x.shape[1]
        p, q = self.patch_size
        x = x.reshape(b, 1, w, p, q, self.out_channels)
        out = torch.einsum("nhwpqc->nchpwq", x).reshape(b, self.out_channels, p, w * q)
        if output_length > out.shape[-1]:
            out = F.pad(out, (0, output_length - out.shape[-1]))
        return out[..., :output_length]


# ----------------------------------------------------------------------------------------------------------------------
# Conformer lyric encoder


def rel_positions(length: int, dim: int, device: torch.device) -> torch.Tensor:
    """ESPnet relative sinusoids [1, 2L-1, dim] for relative positions L-1, ..., 0, ..., -(L-1)."""
    pos = torch.arange(0, length, dtype=torch.float32, device=device).unsqueeze(1)
    div = torch.exp(torch.arange(0, dim, 2, dtype=torch.float32, device=device) * -(math.log(10000.0) / dim))
    pos_part = torch.stack([torch.sin(pos * div), torch.cos(pos * div)], dim=-1).reshape(length, dim)
    neg_part = torch.stack([torch.sin(-1 * pos * div), torch.cos(-1 * pos * div)], dim=-1).reshape(length, dim)
    return torch.cat([torch.flip(pos_part, [0]), neg_part[1:]], dim=0).unsqueeze(0)


class RelPositionAttention(nn.Module):
    """Transformer-XL style attention with learned biases u, v and a linear position projection."""

    def __init__(self, heads: int, dim: int) -> None:
        super().__init__()
        self.h, self.d_k = heads, dim // heads
        self.linear_q = nn.Linear(dim, dim)
        self.linear_k = nn.Linear(dim, dim)
        self.linear_v = nn.Linear(dim, dim)
        self.linear_out = nn.Linear(dim, dim)
        self.linear_pos = nn.Linear(dim, dim, bias=False)
        self.pos_bias_u = nn.Parameter(torch.zeros(heads, self.d_k))
        self.pos_bias_v = nn.Parameter(torch.zeros(heads, self.d_k))

    def forward(
        self, x: torch.Tensor, key_mask: torch.Tensor, pos_emb: torch.Tensor, q_scale: torch.Tensor | None = None
    ) -> torch.Tensor:
        b, t, _ = x.shape
        q = _row_scale(q_scale, self.linear_q(x)).view(b, t, self.h, self.d_k)
        k = self.linear_k(x).view(b, t, self.h, self.d_k).transpose(1, 2)
        v = self.linear_v(x).view(b, t, self.h, self.d_k).transpose(1, 2)
        p = self.linear_pos(pos_emb).view(1, -1, self.h, self.d_k).transpose(1, 2)  # [1, H, 2T-1, D]
        ac = torch.matmul((q + self.pos_bias_u).transpose(1, 2), k.transpose(-2, -1))  # [B, H, T, T]
        bd = torch.matmul((q + self.pos_bias_v).transpose(1, 2), p.transpose(-2, -1))  # [B, H, T, 2T-1]
        # Relative shift: score[i, j] uses relative position i - j, i.e. column (T-1) - i + j of bd.
        ar = torch.arange(t, device=x.device)
        idx = (t - 1) - ar[:, None] + ar[None, :]
        bd = torch.gather(bd, -1, idx.expand(b, self.h, t, t))
        scores = (ac + bd) / math.sqrt(self.d_k)
        blocked = ~key_mask[:, None, None, :]
        attn = torch.softmax(scores.masked_fill(blocked, torch.finfo(scores.dtype).min), dim=-1)
        attn = attn.masked_fill(blocked, 0.0)
        out = torch.matmul(attn, v).transpose(1, 2).reshape(b, t, self.h * self.d_k)
        return self.linear_out(out)


class PositionwiseFeedForward(nn.Module):
    def __init__(self, dim: int, hidden: int) -> None:
        super().__init__()
        self.w_1 = nn.Linear(dim, hidden)
        self.w_2 = nn.Linear(hidden, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.w_2(F.silu(self.w_1(x)))


class ConformerLayer(nn.Module):
    """Pre-norm self-attention + feed-forward (no macaron, no conv module: the upstream defaults)."""

    def __init__(self, dim: int, heads: int, hidden: int) -> None:
        super().__init__()
        self.self_attn = RelPositionAttention(heads, dim)
        self.feed_forward = PositionwiseFeedForward(dim, hidden)
        self.norm_ff = nn.LayerNorm(dim, eps=1e-5)
        self.norm_mha = nn.LayerNorm(dim, eps=1e-5)

    def forward(
        self, x: torch.Tensor, key_mask: torch.Tensor, pos_emb: torch.Tensor, q_scale: torch.Tensor | None = None
    ) -> torch.Tensor:
        x = x + self.self_attn(self.norm_mha(x), key_mask, pos_emb, q_scale)
        return x + self.feed_forward(self.norm_ff(x))


class _LinearEmbed(nn.Module):
    def __init__(self, idim: int, odim: int) -> None:
        super().__init__()
        self.out = nn.Sequential(nn.Linear(idim, odim), nn.LayerNorm(odim, eps=1e-5))


class LyricEncoder(nn.Module):
    """The Conformer lyric encoder (full-context attention; padding masked as keys only)."""

    def __init__(self, cfg: LyricEncoderConfig) -> None:
        super().__init__()
        self.dim = cfg.output_size
        self.embed = _LinearEmbed(cfg.input_size, cfg.output_size)
        self.encoders = nn.ModuleList(
            [ConformerLayer(cfg.output_size, cfg.attention_heads, cfg.linear_units) for _ in range(cfg.num_blocks)]
        )
        self.after_norm = nn.LayerNorm(cfg.output_size, eps=1e-5)

    def forward(
        self, x: torch.Tensor, mask: torch.Tensor, q_scale: torch.Tensor | None = None,
        weakened: Sequence[int] = (),
    ) -> torch.Tensor:
        key_mask = mask > 0
        x = self.embed.out(x) * math.sqrt(self.dim)
        pos_emb = rel_positions(x.shape[1], self.dim, x.device).to(x.dtype)
        for i, layer in enumerate(self.encoders):
            x = layer(x, key_mask, pos_emb, q_scale if i in weakened else None)
        return self.after_norm(x)


# ----------------------------------------------------------------------------------------------------------------------
# The model


class ACEStepV1Transformer(nn.Module):
    """The v1 DiT with condition encoding (:meth:`encode`) and one velocity evaluation (:meth:`decode`)."""

    def __init__(self, config: TransformerConfig) -> None:
        super().__init__()
        self.config = config
        dim = config.model_dim
        self.transformer_blocks = nn.ModuleList(
            [DiTBlock(dim, config.num_attention_heads, config.mlp_ratio) for _ in range(config.num_layers)]
        )
        self.time_proj = Timesteps(num_channels=256, flip_sin_to_cos=True, downscale_freq_shift=0)
        self.timestep_embedder = TimestepEmbedding(in_channels=256, time_embed_dim=dim)
        self.t_block = nn.Sequential(nn.SiLU(), nn.Linear(dim, 6 * dim, bias=True))
        self.speaker_embedder = nn.Linear(config.speaker_embedding_dim, dim)
        self.genre_embedder = nn.Linear(config.text_embedding_dim, dim)
        self.lyric_embs = nn.Embedding(config.lyric_encoder_vocab_size, config.lyric_hidden_size)
        self.lyric_encoder = LyricEncoder(config.lyric_encoder)
        self.lyric_proj = nn.Linear(config.lyric_hidden_size, dim)
        self.proj_in = PatchEmbed(config.in_channels, dim, config.patch_size)
        self.final_layer = FinalLayer(dim, config.patch_size, config.out_channels)

    @staticmethod
    def _erg_scale(erg: torch.Tensor | bool | None, batch: int, ref: torch.Tensor) -> torch.Tensor | None:
        """Per-row query scale: 0.01 where ``erg`` is set, 1.0 elsewhere; ``None`` when ERG is off for all rows."""
        if erg is None or erg is False:
            return None
        if erg is True:
            return torch.full((batch,), ERG_QUERY_SCALE, dtype=ref.dtype, device=ref.device)
        flags = erg.reshape(batch).to(device=ref.device)
        one = torch.ones((), dtype=ref.dtype, device=ref.device)
        return torch.where(flags > 0.5, one * ERG_QUERY_SCALE, one)

    def forward_lyric_encoder(
        self, lyric_token_idx: torch.Tensor, lyric_mask: torch.Tensor, erg: torch.Tensor | bool | None = None
    ) -> torch.Tensor:
        emb = self.lyric_embs(lyric_token_idx)
        scale = self._erg_scale(erg, emb.shape[0], emb)
        out = self.lyric_encoder(emb, lyric_mask, scale, self.config.erg_lyric_layers)
        return self.lyric_proj(out)

    def encode(
        self,
        encoder_text_hidden_states: torch.Tensor,
        text_attention_mask: torch.Tensor,
        speaker_embeds: torch.Tensor,
        lyric_token_idx: torch.Tensor,
        lyric_mask: torch.Tensor,
        erg: torch.Tensor | bool | None = None,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """The cross-attention memory [B, 1 + S_text + S_lyric, dim] and its float mask."""
        b = encoder_text_hidden_states.shape[0]
        speaker = self.speaker_embedder(speaker_embeds).unsqueeze(1)
        text = self.genre_embedder(encoder_text_hidden_states)
        lyric = self.forward_lyric_encoder(lyric_token_idx, lyric_mask, erg)
        states = torch.cat([speaker, text, lyric], dim=1)
        ones = torch.ones(b, 1, dtype=torch.float32, device=states.device)
        mask = torch.cat([ones, text_attention_mask.to(torch.float32), lyric_mask.to(torch.float32)], dim=1)
        return states, mask

    def decode(
        self,
        hidden_states: torch.Tensor,
        attention_mask: torch.Tensor,
        encoder_hidden_states: torch.Tensor,
        encoder_hidden_mask: torch.Tensor,
        timestep: torch.Tensor,
        output_length: int | None = None,
        erg: torch.Tensor | bool | None = None,
        mask_padding: bool = False,
    ) -> torch.Tensor:
        """Velocity [B, 8, 16, W] for the latent [B, 8, 16, W] (``output_length`` defaults to W).

        ``mask_padding=False`` is the original computation, where padded frames (``attention_mask`` 0) still shift the
        patch GroupNorm statistics and the feed-forward's k=3 conv of their neighbours. ``True`` makes a padded bucket
        give its valid frames the unpadded song's velocity (GroupNorm over valid frames, padded frames zeroed before
        each depthwise conv) and returns zero velocity on padding: what batching songs of different lengths needs.
        """
        width = hidden_states.shape[-1] if output_length is None else output_length
        embedded_timestep = self.timestep_embedder(self.time_proj(timestep).to(dtype=hidden_states.dtype))
        temb = self.t_block(embedded_timestep)
        ff_mask = attention_mask if mask_padding else None
        x = self.proj_in(hidden_states, ff_mask)
        head_dim = self.config.attention_head_dim
        rope = rope_tables(x.shape[1], head_dim, self.config.rope_theta, x.device)
        rope_memory = rope_tables(encoder_hidden_states.shape[1], head_dim, self.config.rope_theta, x.device)
        scale = self._erg_scale(erg, x.shape[0], x)
        weakened = set(self.config.erg_dit_blocks)
        for i, block in enumerate(self.transformer_blocks):
            x = block(
                x, attention_mask, encoder_hidden_states, encoder_hidden_mask, temb, rope, rope_memory,
                scale if i in weakened else None, ff_mask,
            )
        out = self.final_layer(x, embedded_timestep, width)
        if ff_mask is not None:
            out = out * ff_mask.to(out.dtype)[:, None, None, :]
        return out

    def forward(
        self,
        hidden_states: torch.Tensor,
        attention_mask: torch.Tensor,
        encoder_text_hidden_states: torch.Tensor,
        text_attention_mask: torch.Tensor,
        speaker_embeds: torch.Tensor,
        lyric_token_idx: torch.Tensor,
        lyric_mask: torch.Tensor,
        timestep: torch.Tensor,
    ) -> torch.Tensor:
        states, mask = self.encode(
            encoder_text_hidden_states, text_attention_mask, speaker_embeds, lyric_token_idx, lyric_mask
        )
        return self.decode(hidden_states, attention_mask, states, mask, timestep)
