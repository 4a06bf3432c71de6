"""The v1 DiT and lyric encoder against the original implementation's tiny fixtures (atol 5e-5, README)."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from export.acestep_v1.checkpoint import is_unused_transformer_key
from export.acestep_v1.transformer import ACEStepV1Transformer, TransformerConfig

from .conftest import load_tensors, max_err, read_json

ATOL = 5e-5


@pytest.fixture(scope="module")
def model(tiny_ref: Path) -> ACEStepV1Transformer:
    raw = read_json(tiny_ref / "transformer_config.json")
    # The fixtures' ERG hooks DiT block 1 and lyric layer 1 of the 2-layer model.
    cfg = TransformerConfig.from_dict({**raw, "erg_dit_blocks": [1], "erg_lyric_layers": [1]})
    m = ACEStepV1Transformer(cfg).eval()
    state = load_tensors(tiny_ref / "transformer_weights.safetensors")
    kept = {k: v for k, v in state.items() if not is_unused_transformer_key(k)}
    assert len(state) - len(kept) == 2 * 8 + 12  # 2 blocks x 4 unused projections x (w, b) + 2 REPA heads x 6
    m.load_state_dict(kept, strict=True)
    return m


@pytest.fixture(scope="module")
def io(tiny_ref: Path) -> dict[str, torch.Tensor]:
    return load_tensors(tiny_ref / "transformer_io.safetensors")


def _cond(io):
    return [io["in.encoder_text_hidden_states"], io["in.text_attention_mask"], io["in.speaker_embeds"],
            io["in.lyric_token_idx"], io["in.lyric_mask"]]


@torch.no_grad()
def test_lyric_encoder_and_encode(model, io):
    out = model.forward_lyric_encoder(io["in.lyric_token_idx"], io["in.lyric_mask"])
    assert max_err(out, io["out.lyric_encoder"]) <= ATOL
    states, mask = model.encode(*_cond(io))
    assert max_err(states, io["out.encoder_hidden_states"]) <= ATOL
    assert torch.equal(mask, io["out.encoder_hidden_mask"]) and mask.dtype == torch.float32


@torch.no_grad()
def test_null_and_erg_conditions(model, io):
    text, tmask, spk, ids, lmask = _cond(io)
    null, _ = model.encode(torch.zeros_like(text), tmask, torch.zeros_like(spk), torch.zeros_like(ids), lmask)
    assert max_err(null, io["out.encoder_hidden_states_null"]) <= ATOL
    erg, _ = model.encode(torch.zeros_like(text), tmask, torch.zeros_like(spk), ids, lmask, erg=True)
    assert max_err(erg, io["out.encode_erg_null"]) <= ATOL
    # ERG really changes the lyric part (the fixture would not catch a no-op otherwise).
    plain, _ = model.encode(torch.zeros_like(text), tmask, torch.zeros_like(spk), ids, lmask)
    assert max_err(plain, erg) > 1e-3


@torch.no_grad()
def test_decode_matches_with_taps(model, io):
    states, mask = model.encode(*_cond(io))
    taps: dict[str, torch.Tensor] = {}
    hooks = [model.proj_in.register_forward_hook(lambda m, i, o: taps.__setitem__("proj_in", o)),
             model.timestep_embedder.register_forward_hook(lambda m, i, o: taps.__setitem__("embedded_timestep", o)),
             model.t_block.register_forward_hook(lambda m, i, o: taps.__setitem__("temb", o))]
    for b, block in enumerate(model.transformer_blocks):
        hooks.append(block.register_forward_hook(lambda m, i, o, k=f"block{b}": taps.__setitem__(k, o)))
        for part in ("attn", "cross_attn", "ff"):
            hooks.append(getattr(block, part).register_forward_hook(
                lambda m, i, o, k=f"block{b}.{part}": taps.__setitem__(k, o)))
    try:
        out = model.decode(io["in.hidden_states"], io["in.attention_mask"], states, mask, io["in.timestep"],
                           output_length=37)
    finally:
        for h in hooks:
            h.remove()
    assert max_err(out, io["out.decode"]) <= ATOL
    assert len(taps) == 3 + 2 * 4
    for name, value in taps.items():
        assert max_err(value, io[f"taps.{name}"]) <= ATOL, name


@torch.no_grad()
def test_decode_padded_null_erg_and_forward(model, io):
    states, mask = model.encode(*_cond(io))
    x, t = io["in.hidden_states"], io["in.timestep"]
    padded = model.decode(x, io["in.attention_mask_padded"], states, mask, t)
    assert torch.isfinite(padded).all()
    assert max_err(padded, io["out.decode_padded"]) <= ATOL
    null = io["out.encoder_hidden_states_null"]
    assert max_err(model.decode(x, io["in.attention_mask"], null, mask, t), io["out.decode_null"]) <= ATOL
    erg = model.decode(x, io["in.attention_mask"], null, mask, t, erg=True)
    assert max_err(erg, io["out.decode_erg_null"]) <= ATOL
    fwd = model(x, io["in.attention_mask"], *_cond(io), t)
    assert max_err(fwd, io["out.forward"]) <= ATOL


@torch.no_grad()
def test_erg_flag_per_row_batches_cond_and_uncond(model, io):
    """Row-wise ERG flags: one batch [cond, erg-uncond] equals the two separate calls (what the exported DiT needs)."""
    states, mask = model.encode(*_cond(io))
    null = io["out.encoder_hidden_states_null"]
    x, t, am = io["in.hidden_states"][:1], io["in.timestep"][:1], io["in.attention_mask"][:1]
    both = model.decode(torch.cat([x, x]), torch.cat([am, am]), torch.cat([states[:1], null[:1]]),
                        torch.cat([mask[:1], mask[:1]]), torch.cat([t, t]), erg=torch.tensor([0.0, 1.0]))
    cond = model.decode(x, am, states[:1], mask[:1], t)
    uncond = model.decode(x, am, null[:1], mask[:1], t, erg=True)
    assert max_err(both[:1], cond) <= 1e-5 and max_err(both[1:], uncond) <= 1e-5


def test_config_validation():
    with pytest.raises(ValueError, match="erg_dit_blocks"):
        TransformerConfig.from_dict({"num_layers": 2, "erg_dit_blocks": [5]})
    with pytest.raises(ValueError, match="lyric_hidden_size"):
        TransformerConfig.from_dict({"lyric_hidden_size": 32, "_lyric_encoder_kwargs": {"output_size": 16}})
