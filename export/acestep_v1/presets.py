"""The ``tiny`` ACE-Step v1 preset: the real classes at toy size, random but deterministic, in the real folder layout.

``build_tiny_v1(out_dir, seed=0)`` writes ``ace_step_transformer/``, ``music_dcae_f8c8/``, ``music_vocoder/`` and
``umt5-base/`` exactly as :mod:`export.acestep_v1.checkpoint` loads the real checkpoint (the transformer file carries
the never-read keys too, as the real one does). Nothing is downloaded: the UMT5 tokenizer is a small Unigram model
built locally. Same seed, same bytes.

Weights are drawn from one ``torch.Generator`` in parameter order: norm weights ``1 + 0.1 z``, norm biases and other
1-D parameters ``0.1 z``, weight-norm gains ``z`` and every other tensor ``z / sqrt(fan_in)``, which keeps
activations O(1) through the stacks (the shared tiny fixtures' recipe, except gains: their ``1.45 z`` drives the
vocoder into tanh saturation where float32 rounding grows to ~1e-4 of the output; ``z`` keeps it ~1e-7).
"""

from __future__ import annotations

import json
import logging
import math
import string
from pathlib import Path
from typing import Any

import torch
from torch import nn

from export.acestep_v1.checkpoint import (
    DCAE_DIR,
    TEXT_ENCODER_DIR,
    TRANSFORMER_DIR,
    VOCODER_DIR,
    WEIGHTS_NAME,
    unused_transformer_shapes,
)
from export.acestep_v1.dcae import build_autoencoder_dc
from export.acestep_v1.lyric_tokenizer import LYRIC_VOCAB_SIZE
from export.acestep_v1.transformer import ACEStepV1Transformer, TransformerConfig
from export.acestep_v1.vocoder import MusicVocoder, VocoderConfig

logger = logging.getLogger(__name__)

PRESET_FILE = "tritone_preset.json"
TINY_TEXT_DIM = 32

TINY_TRANSFORMER: dict[str, Any] = {
    "_class_name": "Transformer2DModel",
    "in_channels": 8,
    "num_layers": 2,
    "inner_dim": 64,
    "attention_head_dim": 32,
    "num_attention_heads": 2,
    "mlp_ratio": 2.5,
    "out_channels": 8,
    "max_position": 32768,
    "rope_theta": 1000000.0,
    "speaker_embedding_dim": 16,
    "text_embedding_dim": TINY_TEXT_DIM,
    "ssl_encoder_depths": [1, 1],
    "ssl_names": ["mert", "m-hubert"],
    "ssl_latent_dims": [12, 10],
    # The real lyric tokenizer's ids (6693) so real lyrics run through the tiny model.
    "lyric_encoder_vocab_size": LYRIC_VOCAB_SIZE,
    "lyric_hidden_size": 32,
    "patch_size": [16, 1],
    "max_height": 16,
    "max_width": 32768,
    "_lyric_encoder_kwargs": {"output_size": 32, "attention_heads": 2, "linear_units": 64, "num_blocks": 2},
    "erg_dit_blocks": [1],
    "erg_lyric_layers": [1],
    "erg_text_layers": [1],
}

TINY_DCAE: dict[str, Any] = {
    "_class_name": "AutoencoderDC",
    "in_channels": 2,
    "latent_channels": 8,
    "attention_head_dim": 32,
    "encoder_block_types": ["ResBlock", "ResBlock", "ResBlock", "EfficientViTBlock"],
    "decoder_block_types": ["ResBlock", "ResBlock", "ResBlock", "EfficientViTBlock"],
    "encoder_block_out_channels": [16, 32, 32, 64],
    "decoder_block_out_channels": [16, 32, 32, 64],
    "encoder_layers_per_block": [1, 1, 1, 1],
    "decoder_layers_per_block": [1, 1, 1, 2],
    "encoder_qkv_multiscales": [[], [], [5], [5]],
    "decoder_qkv_multiscales": [[], [], [5], [5]],
    "upsample_block_type": "interpolate",
    "downsample_block_type": "Conv",
    "decoder_norm_types": "rms_norm",
    "decoder_act_fns": "silu",
    "scaling_factor": 0.41407,
}

# Real upsampling rates, hop and mel parameters; small widths (the last HiFi-GAN stage has 1 channel) and one
# resblock kernel instead of four: the real four (3, 7, 11, 13) make narrow convolutions over millions of samples,
# 8x slower on CPU (30 s of audio: ~20 s instead of ~2.5 s) with nothing to gain for a random model.
TINY_VOCODER: dict[str, Any] = {
    **VocoderConfig().to_dict(),
    "depths": [1, 1, 2, 1],
    "dims": [16, 24, 32, 48],
    "num_mels": 48,
    "upsample_initial_channel": 128,
    "resblock_kernel_sizes": [3],
    "resblock_dilation_sizes": [[1, 3, 5]],
}

TINY_UMT5: dict[str, Any] = {
    "d_model": TINY_TEXT_DIM,
    "d_kv": 8,
    "d_ff": 64,
    "num_layers": 2,
    "num_decoder_layers": 0,
    "num_heads": 4,
    "relative_attention_num_buckets": 8,
    "relative_attention_max_distance": 32,
    "feed_forward_proj": "gated-gelu",
    "dropout_rate": 0.0,
    "pad_token_id": 0,
    "eos_token_id": 1,
    "decoder_start_token_id": 0,
    "tie_word_embeddings": False,
}


def _is_norm(module: nn.Module) -> bool:
    return "norm" in type(module).__name__.lower()


@torch.no_grad()
def deterministic_init(model: nn.Module, generator: torch.Generator) -> None:
    """Fill every parameter from ``generator`` (see the module docstring); buffers keep their values."""
    owners = {name: mod for name, mod in model.named_modules()}
    for name, param in model.named_parameters():
        owner = owners.get(name.rpartition(".")[0])
        z = torch.randn(param.shape, generator=generator, dtype=torch.float32)
        leaf = name.rpartition(".")[2]
        if owner is not None and _is_norm(owner) and leaf == "weight":
            value = 1 + 0.1 * z
        elif leaf == "weight_g":
            value = z
        elif param.dim() <= 1:
            value = 0.1 * z
        else:
            value = z / math.sqrt(param.numel() / param.shape[0])
        param.copy_(value.to(param.dtype))


def _save(folder: Path, config: dict[str, Any], state: dict[str, torch.Tensor]) -> None:
    from safetensors.torch import save_file

    folder.mkdir(parents=True, exist_ok=True)
    (folder / "config.json").write_text(json.dumps(config, indent=2, sort_keys=True) + "\n")
    save_file({k: v.contiguous() for k, v in state.items()}, str(folder / WEIGHTS_NAME))


def _tiny_text_tokenizer() -> Any:
    """A small Unigram tokenizer (T5-style: <pad>=0, </s>=1, <unk>=2, ``▁`` word marker, </s> appended)."""
    from tokenizers import Tokenizer, decoders, models, normalizers, pre_tokenizers, processors
    from transformers import PreTrainedTokenizerFast

    words = ["pop", "rock", "jazz", "piano", "guitar", "drums", "bass", "synth", "vocal", "female", "male", "song",
             "beat", "happy", "sad", "love", "night", "dance", "electronic", "acoustic", "slow", "fast", "bpm"]
    chars = string.ascii_lowercase + string.ascii_uppercase + string.digits + string.punctuation
    vocab: list[tuple[str, float]] = [("<pad>", 0.0), ("</s>", 0.0), ("<unk>", 0.0), ("▁", -2.0)]
    vocab += [(f"▁{w}", -1.0 - 0.01 * i) for i, w in enumerate(words)]
    vocab += [(f"▁{c}", -4.0) for c in string.ascii_lowercase]
    vocab += [(c, -5.0) for c in chars]
    tok = Tokenizer(models.Unigram(vocab, unk_id=2, byte_fallback=False))
    tok.normalizer = normalizers.NFKC()
    tok.pre_tokenizer = pre_tokenizers.Metaspace(replacement="▁", prepend_scheme="always")
    tok.decoder = decoders.Metaspace(replacement="▁", prepend_scheme="always")
    tok.post_processor = processors.TemplateProcessing(single="$A </s>", pair="$A </s> $B </s>",
                                                       special_tokens=[("</s>", 1)])
    return PreTrainedTokenizerFast(tokenizer_object=tok, pad_token="<pad>", eos_token="</s>", unk_token="<unk>",
                                   model_max_length=512)


def build_tiny_v1(out_dir: str | Path, seed: int = 0) -> Path:
    """Write the tiny v1 checkpoint under ``out_dir`` and return it."""
    from transformers import UMT5Config, UMT5EncoderModel

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    gen = torch.Generator().manual_seed(seed)

    cfg = TransformerConfig.from_dict(TINY_TRANSFORMER)
    dit = ACEStepV1Transformer(cfg)
    deterministic_init(dit, gen)
    state = dict(dit.state_dict())
    for key, shape in unused_transformer_shapes(cfg).items():  # the real file carries these too
        state[key] = 0.02 * torch.randn(shape, generator=gen)
    _save(out / TRANSFORMER_DIR, TINY_TRANSFORMER, state)

    dcae = build_autoencoder_dc(TINY_DCAE)
    deterministic_init(dcae, gen)
    _save(out / DCAE_DIR, TINY_DCAE, dict(dcae.state_dict()))

    vocoder = MusicVocoder(VocoderConfig.from_dict(TINY_VOCODER))
    deterministic_init(vocoder, gen)
    _save(out / VOCODER_DIR, TINY_VOCODER, dict(vocoder.state_dict()))

    tokenizer = _tiny_text_tokenizer()
    umt5 = UMT5EncoderModel(UMT5Config(vocab_size=len(tokenizer), **TINY_UMT5))
    deterministic_init(umt5, gen)
    text_dir = out / TEXT_ENCODER_DIR
    umt5.save_pretrained(str(text_dir))
    tokenizer.save_pretrained(str(text_dir))

    (out / PRESET_FILE).write_text(
        json.dumps({"family": "acestep-v1", "preset": "tiny", "seed": seed}, indent=2) + "\n"
    )
    logger.info("wrote the tiny ACE-Step v1 preset (seed %d) to %s", seed, out)
    return out
