"""Each v1 module built with the *real* config (on the meta device) has exactly the real checkpoint's keys/shapes."""

from __future__ import annotations

import torch

from export.acestep_v1.checkpoint import is_unused_transformer_key, unused_transformer_shapes
from export.acestep_v1.dcae import build_autoencoder_dc
from export.acestep_v1.transformer import ACEStepV1Transformer, TransformerConfig
from export.acestep_v1.vocoder import MusicVocoder, VocoderConfig

from .conftest import read_json, read_keys


def _shapes(module: torch.nn.Module) -> dict[str, tuple[int, ...]]:
    return {k: tuple(v.shape) for k, v in module.state_dict().items()}


def test_transformer_keys_are_the_real_ones_minus_the_never_read(ref):
    cfg = TransformerConfig.from_file(ref / "configs" / "transformer.json")
    assert cfg.lyric_encoder.num_blocks == 6 and cfg.lyric_encoder.attention_heads == 16
    with torch.device("meta"):
        model = ACEStepV1Transformer(cfg)
    real = read_keys(ref / "keys" / "transformer.tsv")
    unused = read_keys(ref / "keys" / "transformer_unused.tsv")
    assert len(real) == 874 and len(unused) == 204
    mine = _shapes(model)
    assert mine == {k: v for k, v in real.items() if k not in unused}
    assert sum(torch.Size(s).numel() for s in real.values()) == 3_305_659_264
    # The loader's notion of "never read" is exactly the 204 names, with their shapes.
    assert unused_transformer_shapes(cfg) == unused
    assert {k for k in real if is_unused_transformer_key(k)} == set(unused)


def test_dcae_keys(ref):
    with torch.device("meta"):
        dcae = build_autoencoder_dc(read_json(ref / "configs" / "dcae.json"))
    assert _shapes(dcae) == read_keys(ref / "keys" / "dcae.tsv")


def test_vocoder_keys_old_style_weight_norm(ref):
    with torch.device("meta"):
        vocoder = MusicVocoder(VocoderConfig.from_file(ref / "configs" / "vocoder.json"))
    mine = _shapes(vocoder)
    assert mine == read_keys(ref / "keys" / "vocoder.tsv")
    assert mine["head.ups.0.weight_g"] == (1024, 1, 1)  # ConvTranspose1d: dim 0 is in_channels
    assert mine["mel_transform.mel_scale.fb"] == (1025, 128)
