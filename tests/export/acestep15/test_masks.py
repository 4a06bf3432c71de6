"""Padding masks: a song padded to a length bucket gets, on its valid region, what the unpadded song gets."""

from __future__ import annotations

import pytest
import torch

from export.acestep15.networks import ConditionEncoderNet, MaskedDiT, TextEncoderNet
from export.acestep15.presets import build_tiny_pipeline
from export.onnx_export import relative_error

TOL = 1e-5


@pytest.fixture(scope="module")
def pipe():
    torch.manual_seed(0)
    return build_tiny_pipeline(seed=0, variant="sft")


def _stock(pipe, x, t, enc, ctx):
    return pipe.transformer(
        hidden_states=x, timestep=t, timestep_r=t, encoder_hidden_states=enc, context_latents=ctx, return_dict=False
    )[0]


def test_masked_dit_equals_stock_when_nothing_is_padded(pipe):
    g = torch.Generator().manual_seed(1)
    x, ctx = torch.randn(2, 40, 8, generator=g), torch.randn(2, 40, 16, generator=g)
    enc, t = torch.randn(2, 13, 32, generator=g), torch.tensor([0.9, 0.3])
    with torch.no_grad():
        want = _stock(pipe, x, t, enc, ctx)
        got = MaskedDiT(pipe.transformer)(
            x,
            t[:, None],
            t[:, None],
            enc,
            torch.ones(2, 13, dtype=torch.int64),
            ctx,
            torch.ones(2, 40, dtype=torch.int64),
        )
    assert relative_error(got.numpy(), want.numpy()) <= TOL


def test_padded_batch_mixing_lengths_and_timesteps_matches_unpadded(pipe):
    """Three songs (even and odd lengths, different encoder lengths, different timesteps) in one padded batch."""
    g = torch.Generator().manual_seed(2)
    frames, enc_lens, ts = [64, 37, 50], [20, 9, 14], [0.95, 0.5, 0.05]
    bucket, enc_bucket = 64, 24
    xs = [torch.randn(1, n, 8, generator=g) for n in frames]
    ctxs = [torch.randn(1, n, 16, generator=g) for n in frames]
    encs = [torch.randn(1, n, 32, generator=g) for n in enc_lens]
    x = torch.zeros(3, bucket, 8)
    ctx = torch.zeros(3, bucket, 16)
    enc = torch.zeros(3, enc_bucket, 32)
    lmask = torch.zeros(3, bucket, dtype=torch.int64)
    emask = torch.zeros(3, enc_bucket, dtype=torch.int64)
    for i, (n, m) in enumerate(zip(frames, enc_lens, strict=True)):
        x[i, :n], ctx[i, :n], enc[i, :m] = xs[i][0], ctxs[i][0], encs[i][0]
        lmask[i, :n], emask[i, :m] = 1, 1
        enc[i, m:] = 7.0  # garbage in the padding must not leak into valid positions
    t = torch.tensor(ts)[:, None]
    with torch.no_grad():
        got = MaskedDiT(pipe.transformer)(x, t, t, enc, emask, ctx, lmask)
        for i, n in enumerate(frames):
            want = _stock(pipe, xs[i], torch.tensor([ts[i]]), encs[i], ctxs[i])
            assert relative_error(got[i : i + 1, :n].numpy(), want.numpy()) <= TOL, f"song {i}"
            assert torch.all(got[i, n:] == 0)


def test_padding_changes_the_stock_dit_output(pipe):
    """The reason masks exist: without them, padding leaks into the valid frames."""
    g = torch.Generator().manual_seed(3)
    x, ctx, enc = (
        torch.randn(1, 30, 8, generator=g),
        torch.randn(1, 30, 16, generator=g),
        torch.randn(1, 9, 32, generator=g),
    )
    t = torch.tensor([0.7])
    with torch.no_grad():
        want = _stock(pipe, x, t, enc, ctx)
        padded = _stock(
            pipe, torch.nn.functional.pad(x, (0, 0, 0, 34)), t, enc, torch.nn.functional.pad(ctx, (0, 0, 0, 34))
        )
    assert relative_error(padded[:, :30].numpy(), want.numpy()) > 1e-3


def test_condition_encoder_padded_matches_diffusers_unpadded(pipe):
    g = torch.Generator().manual_seed(4)
    text, lyric = torch.randn(1, 11, 32, generator=g), torch.randn(1, 17, 32, generator=g)
    refer = torch.randn(1, 750, 8, generator=g)
    with torch.no_grad():
        want, want_mask = pipe.condition_encoder(
            text_hidden_states=text,
            text_attention_mask=torch.ones(1, 11, dtype=torch.bool),
            lyric_hidden_states=lyric,
            lyric_attention_mask=torch.ones(1, 17, dtype=torch.bool),
            refer_audio_acoustic_hidden_states_packed=refer,
            refer_audio_order_mask=torch.zeros(1, dtype=torch.long),
        )
        text_p = torch.cat([text, torch.randn(1, 5, 32, generator=g)], 1)
        lyric_p = torch.cat([lyric, torch.randn(1, 15, 32, generator=g)], 1)
        tmask = torch.tensor([[1] * 11 + [0] * 5])
        lmask = torch.tensor([[1] * 17 + [0] * 15])
        got, mask = ConditionEncoderNet(pipe.condition_encoder)(text_p, tmask, lyric_p, lmask, refer)
    n = want.shape[1]
    assert int(mask.sum()) == n == 11 + 17 + 1 and bool(mask[0, :n].all()) and not bool(mask[0, n:].any())
    assert relative_error(got[:, :n].numpy(), want.numpy()) <= TOL


def test_text_encoder_right_padding_does_not_change_valid_positions(pipe):
    ids = pipe.tokenizer("# Caption\nsunny pop 周末", return_tensors="pt").input_ids
    pad = torch.full((1, 9), pipe.tokenizer.pad_token_id)
    net = TextEncoderNet(pipe.text_encoder)
    with torch.no_grad():
        want, _ = net(ids, ids)
        got, emb = net(torch.cat([ids, pad], 1), ids)
    assert relative_error(got[:, : ids.shape[1]].numpy(), want.numpy()) <= TOL
    assert torch.equal(emb, pipe.text_encoder.get_input_embeddings()(ids))
