"""Export wrappers and tensor contracts for the ACE-Step 1.5 networks.

The wrappers hold diffusers' modules and only re-route their forward passes; they add no architecture. Two of them
add what cross-request batching needs and the stock modules lack:

* ``MaskedDiT`` takes a latent key mask and an encoder mask. The stock ``AceStepTransformer1DModel.forward`` builds
  no padding mask (full-attention layers and cross-attention see every position), so songs padded to a common length
  bucket would attend to their padding. With the masks, a padded song's valid frames get the same velocity as the
  unpadded song (tests check fp32 relative error <= 1e-5).
* ``ConditionEncoderNet`` runs the timbre branch for exactly one reference clip per batch row (what the sampler
  sends), which replaces diffusers' data-dependent unpacking (``.item()``/``bincount``) with static shapes, and packs
  the sequences with a sort key that needs no stable sort.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from diffusers.models.transformers.ace_step_transformer import _ace_step_rotary_freqs, _create_4d_mask
from torch import nn

from export.acestep15.checkpoint import PipelineDims
from export.contracts import Axis, CpuServing, NetworkContract, TensorSpec
from model_repository.facts.families import MAX_BATCH, TRACK_CLASSES

# Length buckets in latent frames (25 per second): 10 s ... 600 s. Every bucket is even (the DiT patch size is 2) and a
# multiple of 5 (the audio tokenizer pools 5 frames into one 5 Hz code).
FRAME_BUCKETS = (250, 500, 750, 1000, 1500, 2000, 3000, 4500, 6000, 7500, 9000, 12000, 15000)
TEXT_BUCKETS = (32, 64, 128, 256)
LYRIC_BUCKETS = (64, 128, 256, 512, 1024, 2048)
# The packed condition sequence is lyric + 1 timbre token + text; the DiT pads it to one of these.
ENCODER_BUCKETS = (128, 256, 512, 1024, 2048, 2560)
# The timbre encoder reads 30 s of reference latents (750 frames).
TIMBRE_FRAMES = 750
# Captions and lyrics are truncated to the largest bucket (the runner reads these from the manifest).
MAX_TEXT_TOKENS = TEXT_BUCKETS[-1]
MAX_LYRIC_TOKENS = LYRIC_BUCKETS[-1]


def _additive_key_mask(mask: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
    """[B, S] 0/1 key mask -> [B, 1, 1, S] additive mask (0 kept, dtype-min masked)."""
    keep = mask.to(torch.bool)[:, None, None, :]
    return torch.zeros(keep.shape, dtype=dtype, device=mask.device).masked_fill(~keep, torch.finfo(dtype).min)


def pack_valid_first(
    first: torch.Tensor, second: torch.Tensor, mask1: torch.Tensor, mask2: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """Concatenate two masked sequences and move each row's valid tokens to the front, order preserved.

    Same result as diffusers' ``_pack_sequences`` (a stable descending sort of the mask); the sort key
    ``(1 - mask) * L + position`` is unique, so a plain ascending argsort gives that order without needing a stable
    sort (which ONNX lacks).
    """
    hidden = torch.cat([first, second], dim=1)
    mask = torch.cat([mask1.to(torch.int64), mask2.to(torch.int64)], dim=1)
    length = mask.shape[1]
    positions = torch.arange(length, device=mask.device, dtype=torch.int64).unsqueeze(0)
    order = torch.argsort((1 - mask) * length + positions, dim=1)
    hidden = torch.gather(hidden, 1, order.unsqueeze(-1).expand(-1, -1, hidden.shape[-1]))
    valid = mask.sum(dim=1, keepdim=True)
    return hidden, (positions < valid).to(torch.int64)


class TextEncoderNet(nn.Module):
    """Caption ids -> Qwen3 hidden states; lyric ids -> the same model's token embeddings (a lookup: the lyric
    encoder inside the condition encoder contextualises them). One network, so the shared embedding table is held once.
    The text encoder is causal and requests are right-padded, so padding never changes a valid position's output."""

    def __init__(self, text_encoder: nn.Module) -> None:
        super().__init__()
        self.text_encoder = text_encoder

    def forward(self, text_input_ids: torch.Tensor, lyric_input_ids: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        hidden = self.text_encoder(input_ids=text_input_ids, use_cache=False).last_hidden_state
        lyrics = self.text_encoder.get_input_embeddings()(lyric_input_ids)
        return hidden, lyrics


class ConditionEncoderNet(nn.Module):
    """diffusers' ``AceStepConditionEncoder`` with one reference clip per row (static shapes)."""

    def __init__(self, condition_encoder: nn.Module) -> None:
        super().__init__()
        self.encoder = condition_encoder

    def _timbre(self, refer: torch.Tensor) -> torch.Tensor:
        timbre = self.encoder.timbre_encoder
        hidden = timbre.embed_tokens(refer)
        seq_len = hidden.shape[1]
        rope = _ace_step_rotary_freqs(seq_len, timbre.head_dim, timbre.rope_theta, hidden.device, hidden.dtype)
        sliding = _create_4d_mask(
            seq_len=seq_len,
            dtype=hidden.dtype,
            device=hidden.device,
            sliding_window=timbre.sliding_window,
            is_sliding_window=True,
            is_causal=False,
        )
        for layer_type, layer in zip(timbre._layer_types, timbre.layers, strict=True):
            mask = sliding if layer_type == "sliding_attention" else None
            hidden = layer(hidden_states=hidden, position_embeddings=rope, attention_mask=mask)
        return timbre.norm(hidden)[:, 0, :]

    def forward(
        self,
        text_hidden_states: torch.Tensor,
        text_attention_mask: torch.Tensor,
        lyric_hidden_states: torch.Tensor,
        lyric_attention_mask: torch.Tensor,
        refer_audio_latents: torch.Tensor,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        text = self.encoder.text_projector(text_hidden_states)
        lyrics = self.encoder.lyric_encoder(inputs_embeds=lyric_hidden_states, attention_mask=lyric_attention_mask)
        timbre = self._timbre(refer_audio_latents).unsqueeze(1)
        timbre_mask = torch.ones(timbre.shape[:2], dtype=torch.int64, device=timbre.device)
        hidden, mask = pack_valid_first(lyrics, timbre, lyric_attention_mask, timbre_mask)
        return pack_valid_first(hidden, text, mask, text_attention_mask)


class MaskedDiT(nn.Module):
    """One velocity evaluation of ``AceStepTransformer1DModel`` with padding masks (see module docstring)."""

    def __init__(self, transformer: nn.Module) -> None:
        super().__init__()
        self.dit = transformer

    def forward(
        self,
        hidden_states: torch.Tensor,
        timestep: torch.Tensor,
        timestep_r: torch.Tensor,
        encoder_hidden_states: torch.Tensor,
        encoder_attention_mask: torch.Tensor,
        context_latents: torch.Tensor,
        latent_mask: torch.Tensor,
    ) -> torch.Tensor:
        dit = self.dit
        patch = dit.patch_size
        timestep, timestep_r = timestep.reshape(-1), timestep_r.reshape(-1)
        temb_t, proj_t = dit.time_embed(timestep)
        temb_r, proj_r = dit.time_embed_r(timestep - timestep_r)
        temb, timestep_proj = temb_t + temb_r, proj_t + proj_r

        x = torch.cat([context_latents, hidden_states], dim=-1)
        x = dit.proj_in_conv(x.transpose(1, 2)).transpose(1, 2)
        encoder = dit.condition_embedder(encoder_hidden_states)
        batch, patches = x.shape[0], x.shape[1]
        # A patch is valid when any of its frames is (an odd valid length ends in a half-padded patch, exactly as the
        # stock forward's zero padding to the patch boundary).
        patch_mask = latent_mask.reshape(batch, patches, patch).amax(dim=-1)
        rope = _ace_step_rotary_freqs(patches, dit.head_dim, dit.rope_theta, x.device, x.dtype)
        full = _create_4d_mask(patches, x.dtype, x.device, attention_mask=patch_mask, is_causal=False)
        sliding = _create_4d_mask(
            patches,
            x.dtype,
            x.device,
            attention_mask=patch_mask,
            sliding_window=dit.config.sliding_window,
            is_sliding_window=True,
            is_causal=False,
        )
        cross = _additive_key_mask(encoder_attention_mask, x.dtype)
        for layer_type, layer in zip(dit.layer_types, dit.layers, strict=True):
            x = layer(
                hidden_states=x,
                position_embeddings=rope,
                temb=timestep_proj,
                attention_mask=sliding if layer_type == "sliding_attention" else full,
                encoder_hidden_states=encoder,
                encoder_attention_mask=cross,
            )
        shift, scale = (dit.scale_shift_table + temb.unsqueeze(1)).chunk(2, dim=1)
        x = (dit.norm_out(x) * (1 + scale) + shift).type_as(x)
        velocity = dit.proj_out_conv(x.transpose(1, 2)).transpose(1, 2)
        # Zero velocity on padding keeps padded frames at exactly zero through every Euler step.
        return velocity * latent_mask.unsqueeze(-1).to(velocity.dtype)


class VaeDecoderNet(nn.Module):
    """Latents [B, T, C] (the DiT's layout) -> 48 kHz stereo waveform [B, 2, T * 1920]."""

    def __init__(self, vae: nn.Module) -> None:
        super().__init__()
        self.vae = vae

    def forward(self, latents: torch.Tensor) -> torch.Tensor:
        return self.vae.decode(latents.transpose(1, 2)).sample


class VaeEncoderNet(nn.Module):
    """48 kHz stereo waveform -> the posterior's mean and std in the DiT's layout [B, T, C]. Sampling
    (``mean + std * noise``) happens in the sampler with the request's seed, so the graph stays deterministic."""

    def __init__(self, vae: nn.Module) -> None:
        super().__init__()
        self.vae = vae

    def forward(self, audio: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        dist = self.vae.encode(audio).latent_dist
        return dist.mean.transpose(1, 2), dist.std.transpose(1, 2)


class AudioTokenizerNet(nn.Module):
    """25 Hz latents grouped in windows of 5 frames [B, P, 5, C] -> 5 Hz audio codes [B, P] (FSQ indices)."""

    def __init__(self, audio_tokenizer: nn.Module) -> None:
        super().__init__()
        self.tokenizer = audio_tokenizer

    def forward(self, latents: torch.Tensor) -> torch.Tensor:
        _, indices = self.tokenizer(latents)
        return indices[..., 0]


class AudioDetokenizerNet(nn.Module):
    """5 Hz audio codes [B, P] -> 25 Hz acoustic conditioning [B, 5 * P, C] (FSQ lookup + the detokenizer)."""

    def __init__(self, audio_tokenizer: nn.Module, detokenizer: nn.Module) -> None:
        super().__init__()
        self.quantizer = audio_tokenizer.quantizer
        self.detokenizer = detokenizer

    def forward(self, audio_codes: torch.Tensor) -> torch.Tensor:
        quantized = self.quantizer.get_output_from_indices(audio_codes.unsqueeze(-1))
        return self.detokenizer(quantized)


def dit_inputs(acoustic_dim: int, condition_hidden: int) -> tuple[TensorSpec, ...]:
    """One DiT evaluation's inputs, shared by ``dit`` and ``dit_align`` (which adds the lyric positions)."""
    c, b = acoustic_dim, "batch"
    return (
        TensorSpec("hidden_states", "float32", (b, "frames", c)),
        # [B, 1] rather than [B]: Triton needs at least one non-batch dim.
        TensorSpec("timestep", "float32", (b, 1), fill="timestep"),
        TensorSpec("timestep_r", "float32", (b, 1), fill="timestep"),
        TensorSpec("encoder_hidden_states", "float32", (b, "encoder", condition_hidden)),
        TensorSpec("encoder_attention_mask", "int64", (b, "encoder"), fill="mask"),
        TensorSpec("context_latents", "float32", (b, "frames", 2 * c)),
        TensorSpec("latent_mask", "int64", (b, "frames"), fill="mask"),
    )


def build_contracts(dims: PipelineDims, *, max_batch_size: int = MAX_BATCH) -> dict[str, NetworkContract]:
    """The contracts of the eight ACE-Step 1.5 networks for a checkpoint with these dimensions."""
    c, h_text, h_cond = dims.acoustic_dim, dims.text_hidden, dims.condition_hidden
    frames = Axis("frames", FRAME_BUCKETS[0], 1500, FRAME_BUCKETS[-1], FRAME_BUCKETS)
    text = Axis("text", 1, 128, TEXT_BUCKETS[-1], TEXT_BUCKETS)
    lyric = Axis("lyric", 1, 512, LYRIC_BUCKETS[-1], LYRIC_BUCKETS)
    encoder = Axis("encoder", 2, 512, ENCODER_BUCKETS[-1], ENCODER_BUCKETS)
    samples = Axis("samples", 1920, 1920 * 1500, 1920 * FRAME_BUCKETS[-1])
    codes = Axis("codes", 1, 300, FRAME_BUCKETS[-1] // dims.pool_window)
    b = "batch"
    contracts = [
        NetworkContract(
            name="text_encoder",
            description="Qwen3 caption encoder + lyric token embeddings",
            inputs=(
                TensorSpec("text_input_ids", "int64", (b, "text"), fill="ids", high=dims.vocab_size),
                TensorSpec("lyric_input_ids", "int64", (b, "lyric"), fill="ids", high=dims.vocab_size),
            ),
            outputs=(
                TensorSpec("text_hidden_states", "float32", (b, "text", h_text)),
                TensorSpec("lyric_hidden_states", "float32", (b, "lyric", h_text)),
            ),
            axes=(text, lyric),
            max_batch_size=max_batch_size,
            precision="bf16",
        ),
        NetworkContract(
            name="condition_encoder",
            description="text + lyric + timbre -> packed cross-attention sequence and its mask",
            inputs=(
                TensorSpec("text_hidden_states", "float32", (b, "text", h_text)),
                TensorSpec("text_attention_mask", "int64", (b, "text"), fill="mask"),
                TensorSpec("lyric_hidden_states", "float32", (b, "lyric", h_text)),
                TensorSpec("lyric_attention_mask", "int64", (b, "lyric"), fill="mask"),
                TensorSpec("refer_audio_latents", "float32", (b, TIMBRE_FRAMES, c)),
            ),
            outputs=(
                TensorSpec("encoder_hidden_states", "float32", (b, "encoder", h_cond)),
                TensorSpec("encoder_attention_mask", "int64", (b, "encoder")),
            ),
            axes=(text, lyric, Axis("encoder", 3, 641, TEXT_BUCKETS[-1] + LYRIC_BUCKETS[-1] + 1)),
            max_batch_size=max_batch_size,
            precision="bf16",
        ),
        NetworkContract(
            name="dit",
            description="one flow-matching velocity evaluation with latent and encoder padding masks",
            inputs=dit_inputs(c, h_cond),
            outputs=(TensorSpec("velocity", "float32", (b, "frames", c)),),
            axes=(frames, encoder),
            # Guided steps send (conditional, unconditional) rows together: room for a full batch of both, and for a
            # track batch (one extract item per class, all 12) guided.
            max_batch_size=2 * max(max_batch_size, len(TRACK_CLASSES)),
            precision="bf16",
            # The sampler's step scheduler already sends one call holding every active song's rows, so the window
            # only merges calls from several sampler instances or servers; 1 ms keeps that without adding a long wait
            # to every step (8.00 rows per call at 0, 1 and 10 ms: docs/serving.md, bench/queue_delay.py).
            preferred_batch_sizes=(),
            max_queue_delay_us=1000,
        ),
        NetworkContract(
            name="vae_decoder",
            description="Oobleck decoder: latents -> 48 kHz stereo (fp32: fp16 audio decoders overflow)",
            inputs=(TensorSpec("latents", "float32", (b, "frames", c)),),
            outputs=(TensorSpec("audio", "float32", (b, 2, "samples")),),
            axes=(frames, samples),
            max_batch_size=max_batch_size,
            precision="fp32",
            preferred_batch_sizes=(2, 4),
            max_queue_delay_us=1000,
            # The decode is most of a song on CPU: one instance per core of the 2-core reference VM, the scheduler
            # splitting a group of songs across them (8 songs: 17.8 -> 40.3 songs/min, docs/benchmarks.md).
            cpu=CpuServing(instances=2),
        ),
        NetworkContract(
            name="vae_encoder",
            description="Oobleck encoder: 48 kHz stereo -> latent mean and std",
            inputs=(TensorSpec("audio", "float32", (b, 2, "samples")),),
            outputs=(
                TensorSpec("latent_mean", "float32", (b, "frames", c)),
                TensorSpec("latent_std", "float32", (b, "frames", c)),
            ),
            axes=(Axis("samples", 1920, 1920 * 1500, 1920 * FRAME_BUCKETS[-1]), frames),
            max_batch_size=max_batch_size,
            precision="fp32",
            preferred_batch_sizes=(2, 4),
            max_queue_delay_us=1000,
        ),
        NetworkContract(
            name="audio_tokenizer",
            description="25 Hz latents -> 5 Hz FSQ audio codes",
            inputs=(TensorSpec("latents", "float32", (b, "codes", dims.pool_window, c)),),
            outputs=(TensorSpec("audio_codes", "int64", (b, "codes")),),
            axes=(codes,),
            max_batch_size=max_batch_size,
            precision="bf16",
        ),
        NetworkContract(
            name="audio_detokenizer",
            description="5 Hz audio codes -> 25 Hz acoustic conditioning",
            inputs=(TensorSpec("audio_codes", "int64", (b, "codes"), fill="ids", high=dims.codebook_size),),
            outputs=(TensorSpec("latents", "float32", (b, "frames", c)),),
            axes=(codes, frames),
            max_batch_size=max_batch_size,
            precision="bf16",
        ),
    ]
    from export.acestep15.align import align_contract  # the lyric-timing network (its own module)

    contracts.append(align_contract(h_cond, c, max_batch_size=max_batch_size))
    return {contract.name: contract for contract in contracts}


def wrappers(pipe, align_heads: list[tuple[int, int]] | None = None) -> dict[str, Callable[[], nn.Module]]:
    """Factories for each network's export wrapper over a loaded ``AceStepPipeline`` (``align_heads``: the
    (layer, head) pairs ``dit_align`` returns; default :func:`export.acestep15.align.resolve_heads`)."""
    from export.acestep15.align import AlignDiT, resolve_heads

    return {
        "dit_align": lambda: AlignDiT(pipe.transformer, align_heads or resolve_heads(pipe.transformer)),
        "text_encoder": lambda: TextEncoderNet(pipe.text_encoder),
        "condition_encoder": lambda: ConditionEncoderNet(pipe.condition_encoder),
        "dit": lambda: MaskedDiT(pipe.transformer),
        "vae_decoder": lambda: VaeDecoderNet(pipe.vae),
        "vae_encoder": lambda: VaeEncoderNet(pipe.vae),
        "audio_tokenizer": lambda: AudioTokenizerNet(pipe.audio_tokenizer),
        "audio_detokenizer": lambda: AudioDetokenizerNet(pipe.audio_tokenizer, pipe.audio_token_detokenizer),
    }
