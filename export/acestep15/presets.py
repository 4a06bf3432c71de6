"""The ``tiny`` ACE-Step 1.5 preset: diffusers' real classes at toy size, random but deterministic, saved with
``AceStepPipeline.save_pretrained`` so that tests, the demo and real deployments share one loading path.

Dimensions follow the real model's constraints (see ``checkpoint.check_dimensions``): the Oobleck latent has
``encoder_hidden_size / 2`` channels, equal to the DiT's ``audio_acoustic_hidden_dim`` and the condition encoder's
``timbre_hidden_dim``; DiT ``in_channels`` = 3 x that (noisy latent + source latent + chunk mask); the VAE's
downsampling ratios multiply to 1920 so 48 kHz audio maps to 25 latent frames per second.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Literal

import torch

logger = logging.getLogger(__name__)

Variant = Literal["turbo", "sft", "base"]
# The DiT's seed offset per variant: three DiTs of their own beside one set of encoders, tokenizer and VAE.
_DIT_SEED = {"turbo": 3, "sft": 4, "base": 8}

# Latent channels of the tiny preset (64 in the real model).
TINY_ACOUSTIC_DIM = 8
TINY_HIDDEN = 32
# Same FSQ levels as the real tokenizer: 8*8*8*5*5*5 = 64000 audio codes, the LM's `<|audio_code_N|>` range.
FSQ_LEVELS = [8, 8, 8, 5, 5, 5]


def build_tiny_tokenizer():
    """A byte-level BPE with no merges: every UTF-8 byte is a token, so any language encodes; built locally."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    byte_tokens = pre_tokenizers.ByteLevel.alphabet()
    vocab = {tok: i for i, tok in enumerate(sorted(byte_tokens))}
    core = Tokenizer(models.BPE(vocab=vocab, merges=[]))
    core.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True)
    core.decoder = decoders.ByteLevel()
    core.add_special_tokens(["<|endoftext|>"])
    return PreTrainedTokenizerFast(
        tokenizer_object=core, eos_token="<|endoftext|>", pad_token="<|endoftext|>", padding_side="right"
    )


def _seeded(seed: int) -> None:
    torch.manual_seed(seed)


def build_tiny_pipeline(*, seed: int = 0, variant: Variant = "turbo"):
    """Construct the tiny pipeline in memory (deterministic in ``seed``)."""
    from diffusers import AceStepPipeline, AutoencoderOobleck, FlowMatchEulerDiscreteScheduler
    from diffusers.models.transformers.ace_step_transformer import AceStepTransformer1DModel
    from diffusers.pipelines.ace_step.modeling_ace_step import (
        AceStepAudioTokenDetokenizer,
        AceStepAudioTokenizer,
        AceStepConditionEncoder,
    )
    from transformers import Qwen3Config, Qwen3Model

    tokenizer = build_tiny_tokenizer()
    attn = dict(num_attention_heads=4, num_key_value_heads=2, head_dim=8, sliding_window=16)

    _seeded(seed)
    text_encoder = Qwen3Model(
        Qwen3Config(
            vocab_size=len(tokenizer),
            hidden_size=TINY_HIDDEN,
            intermediate_size=64,
            num_hidden_layers=2,
            num_attention_heads=4,
            num_key_value_heads=2,
            head_dim=8,
            max_position_embeddings=4096,
            pad_token_id=tokenizer.pad_token_id,
            eos_token_id=tokenizer.eos_token_id,
        )
    ).eval()
    _seeded(seed + 1)
    condition_encoder = AceStepConditionEncoder(
        hidden_size=TINY_HIDDEN,
        intermediate_size=64,
        text_hidden_dim=TINY_HIDDEN,
        timbre_hidden_dim=TINY_ACOUSTIC_DIM,
        num_lyric_encoder_hidden_layers=2,
        num_timbre_encoder_hidden_layers=2,
        **attn,
    ).eval()
    # The real checkpoint carries VAE-encoded silence here; a fresh module holds zeros. Small deterministic values
    # keep the tiny timbre branch from being degenerate.
    gen = torch.Generator().manual_seed(seed + 2)
    condition_encoder.silence_latent.copy_(0.1 * torch.randn(condition_encoder.silence_latent.shape, generator=gen))
    _seeded(seed + _DIT_SEED[variant])
    transformer = AceStepTransformer1DModel(
        hidden_size=TINY_HIDDEN,
        intermediate_size=64,
        num_hidden_layers=2,
        in_channels=3 * TINY_ACOUSTIC_DIM,
        audio_acoustic_hidden_dim=TINY_ACOUSTIC_DIM,
        patch_size=2,
        encoder_hidden_size=TINY_HIDDEN,
        is_turbo=variant == "turbo",
        model_version=variant,
        **attn,
    ).eval()
    _seeded(seed + 5)
    audio_tokenizer = AceStepAudioTokenizer(
        hidden_size=TINY_HIDDEN,
        intermediate_size=64,
        audio_acoustic_hidden_dim=TINY_ACOUSTIC_DIM,
        pool_window_size=5,
        fsq_dim=TINY_HIDDEN,
        fsq_input_levels=FSQ_LEVELS,
        fsq_input_num_quantizers=1,
        num_attention_pooler_hidden_layers=1,
        **attn,
    ).eval()
    _seeded(seed + 6)
    detokenizer = AceStepAudioTokenDetokenizer(
        hidden_size=TINY_HIDDEN,
        intermediate_size=64,
        audio_acoustic_hidden_dim=TINY_ACOUSTIC_DIM,
        pool_window_size=5,
        num_attention_pooler_hidden_layers=1,
        **attn,
    ).eval()
    _seeded(seed + 7)
    vae = AutoencoderOobleck(
        encoder_hidden_size=2 * TINY_ACOUSTIC_DIM,
        # 2*4*4*6*10 = 1920 samples per latent frame: 48000 / 1920 = 25 latent frames per second.
        downsampling_ratios=[2, 4, 4, 6, 10],
        channel_multiples=[1, 2, 2, 2, 2],
        decoder_channels=16,
        decoder_input_channels=TINY_ACOUSTIC_DIM,
        audio_channels=2,
        sampling_rate=48000,
    ).eval()
    scheduler = FlowMatchEulerDiscreteScheduler(num_train_timesteps=1, shift=1.0)
    return AceStepPipeline(
        vae=vae,
        text_encoder=text_encoder,
        tokenizer=tokenizer,
        transformer=transformer,
        condition_encoder=condition_encoder,
        scheduler=scheduler,
        audio_tokenizer=audio_tokenizer,
        audio_token_detokenizer=detokenizer,
    )


def build_tiny(out_dir: Path, *, seed: int = 0, variant: Variant = "turbo") -> Path:
    """Write the tiny pipeline to ``out_dir`` in the diffusers layout; skip if it is already complete."""
    out_dir = Path(out_dir)
    if (out_dir / "model_index.json").exists() and (out_dir / ".complete").exists():
        logger.info("tiny %s preset already at %s", variant, out_dir)
        return out_dir
    pipe = build_tiny_pipeline(seed=seed, variant=variant)
    out_dir.mkdir(parents=True, exist_ok=True)
    pipe.save_pretrained(out_dir)
    (out_dir / ".complete").write_text(f"tiny seed={seed} variant={variant}\n")
    logger.info("wrote tiny %s preset to %s", variant, out_dir)
    return out_dir
