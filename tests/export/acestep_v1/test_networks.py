"""v1 export wrappers and contracts: padding invariance and ERG batching in torch, then ONNX export of all six
networks (torch's dynamo exporter, the shared ``export.onnx_export`` helpers) with ONNX Runtime parity <= 1e-4 at
two lengths."""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import pytest
import torch

from export.acestep_v1.networks import (
    FRAME_BUCKETS,
    MAX_FRAMES,
    NETWORKS,
    TRACE_SIZES,
    load_for_export,
)
from export.onnx_export import check_parity, export_onnx, onnx_session

PARITY = 1e-4
SIZES = (
    {"batch": 1, "text": 7, "lyric": 9, "encoder": 17, "frames": 11, "mel_frames": 40, "samples": 40 * 512,
     "audio_samples": 11 * 4096},
    {"batch": 3, "text": 30, "lyric": 50, "encoder": 81, "frames": 40, "mel_frames": 96, "samples": 96 * 512,
     "audio_samples": 40 * 4096},
)


@pytest.fixture(scope="module")
def exported(tiny_preset: Path):
    contracts, factories = load_for_export(tiny_preset)
    return contracts, factories


def test_contracts_cover_the_trained_length(exported):
    contracts, _ = exported
    assert set(contracts) == set(NETWORKS)
    assert MAX_FRAMES >= int(240 * 44100 / 512 / 8) == 2583
    assert contracts["v1_dit"].axis("frames").buckets == FRAME_BUCKETS
    assert contracts["v1_dcae_decoder"].precision == "fp32" and contracts["v1_vocoder"].precision == "fp32"
    dit = contracts["v1_dit"]
    assert dit.input_names == ["hidden_states", "timestep", "latent_mask", "encoder_hidden_states",
                               "encoder_attention_mask", "erg"]
    assert "max_batch_size: 16" in dit.triton_config(platform="gpu")


def test_tensorrt_profiles_reach_240_seconds(exported):
    from export.tensorrt import length_profiles

    contracts, _ = exported
    for name in ("v1_dit", "v1_dcae_decoder"):
        profiles = length_profiles(contracts[name])
        assert len(profiles) == 3
        assert profiles[0]["frames"][0] == 1 and profiles[-1]["frames"][2] == MAX_FRAMES == 2584
        # contiguous ranges: every length 1..2584 falls in exactly one profile
        for lo, hi in zip(profiles, profiles[1:], strict=False):
            assert hi["frames"][0] == lo["frames"][2] + 1
    mel = contracts["v1_vocoder"].trt_profile()["mel"]
    assert mel[2] == (4, 128, 8 * MAX_FRAMES)


@torch.no_grad()
def test_dit_padded_bucket_matches_the_unpadded_song(exported):
    contracts, factories = exported
    dit = factories["v1_dit"]()
    sample = contracts["v1_dit"].sample_inputs({"batch": 1, "encoder": 20, "frames": 30}, seed=3)
    x = torch.from_numpy(sample["hidden_states"])
    t = torch.tensor([[700.0]])
    mem = torch.from_numpy(sample["encoder_hidden_states"])
    mem_mask = torch.from_numpy(sample["encoder_attention_mask"])
    valid = 19
    full = torch.ones(1, valid, dtype=torch.int64)
    erg = torch.zeros(1, 1, dtype=torch.int64)
    alone = dit(x[..., :valid], t, full, mem, mem_mask, erg)
    mask = torch.zeros(1, 30, dtype=torch.int64)
    mask[:, :valid] = 1
    padded = dit(x, t, mask, mem, mem_mask, erg)
    assert (padded[..., :valid] - alone).abs().max().item() <= 1e-5 * alone.abs().max().item()
    assert torch.count_nonzero(padded[..., valid:]) == 0
    # The original computation (no padding masks in GroupNorm / depthwise conv) is not invariant: the wrapper matters.
    raw = dit.dit.decode(x, mask.float(), mem, mem_mask.float(), t.reshape(-1))
    assert (raw[..., :valid] - alone).abs().max().item() > 1e-4


@torch.no_grad()
def test_text_encoder_erg_rows(exported):
    contracts, factories = exported
    net = factories["v1_text_encoder"]()
    ids = torch.tensor([[5, 9, 13, 1], [5, 9, 13, 1]])
    mask = torch.ones_like(ids)
    out = net(ids, mask, torch.tensor([[0], [1]]))
    plain = net(ids[:1], mask[:1], torch.tensor([[0]]))
    weak = net(ids[:1], mask[:1], torch.tensor([[1]]))
    assert torch.allclose(out[:1], plain, atol=1e-6) and torch.allclose(out[1:], weak, atol=1e-6)
    assert (plain - weak).abs().max() > 1e-4


@torch.no_grad()
def test_dcae_encoder_net_is_music_dcae_encode(exported, tiny_preset):
    from export.acestep_v1.checkpoint import load_music_dcae
    from export.acestep_v1.dcae import VOCODER_SAMPLE_RATE

    _, factories = exported
    wave = 0.3 * torch.randn(1, 2, 9 * 4096, generator=torch.Generator().manual_seed(4))
    expected, _ = load_music_dcae(tiny_preset).encode(wave, sample_rate=VOCODER_SAMPLE_RATE)
    got = factories["v1_dcae_encoder"]()(wave)
    assert got.shape == expected.shape == (1, 8, 16, 9)
    assert (got - expected).abs().max().item() <= 1e-5 * expected.abs().max().item()


@pytest.mark.slow
@pytest.mark.parametrize("name", NETWORKS)
def test_onnx_export_and_parity(exported, name, tmp_path):
    logging.getLogger("onnx_ir").setLevel(logging.WARNING)
    logging.getLogger("onnxscript").setLevel(logging.WARNING)
    contracts, factories = exported
    contract, module = contracts[name], factories[name]()
    path = export_onnx(module, contract, tmp_path / name / "model.onnx", sizes=TRACE_SIZES)
    for sizes in SIZES:
        errors = check_parity(module, contract, path, sizes=sizes)
        assert max(errors.values()) <= PARITY, (sizes, errors)
    if name == "v1_dit":
        # Padded rows come out as exact zeros from ONNX Runtime too (no NaN from fully masked rows).
        inputs = contract.sample_inputs(SIZES[1], seed=5)
        (velocity,) = onnx_session(path).run(None, inputs)
        assert np.isfinite(velocity).all()
        pad = inputs["latent_mask"] == 0
        assert pad.any() and np.all(velocity.transpose(0, 3, 1, 2)[pad] == 0)
