"""Export wrappers and tensor contracts for the ACE-Step v1 (DCAE family) networks.

Six networks, named ``v1_*`` so they sit beside the 1.5 family in one model repository:

* ``v1_text_encoder``: UMT5 over the caption tokens (mask included). An ``erg`` flag per row weakens the queries of
  the configured blocks (x0.01), which is how the original builds its "weakened tag" unconditional text.
* ``v1_condition_encoder``: speaker + genre projection + Conformer lyric encoder -> the cross-attention memory
  ``[1 + text + lyric]`` and its mask; ``erg`` weakens the configured lyric layers' queries.
* ``v1_dit``: one velocity evaluation with a latent mask and an encoder mask; padded buckets give valid frames the
  unpadded song's velocity (see :meth:`ACEStepV1Transformer.decode`, ``mask_padding``), and ``erg`` selects the
  weakened-attention unconditional branch row by row, so conditional and unconditional rows share a batch.
* ``v1_dcae_decoder``: latents -> stereo log-mel (the normalisations folded in). Its EfficientViT stage attends
  globally, so songs are decoded one per row at their own length (or in equal overlapped windows).
* ``v1_vocoder``: one log-mel channel -> 44.1 kHz mono (weight norm folded); resampling to 48 kHz happens after.
* ``v1_dcae_encoder``: 44.1 kHz stereo -> normalised latents (log-mel + DCAE encoder): the source of repaint/extend.
  The sampler resamples 48 -> 44.1 kHz and pads to whole latent frames (4096 samples) first.

Lengths: the checkpoint was trained on up to 240 s = int(240 * 44100 / 4096) = 2583 latent frames; the frame
buckets end at 2584. Longer songs are decoded in overlapped windows by the sampler.
"""

from __future__ import annotations

import copy
import logging
import math
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from export.acestep_v1.dcae import (
    HOP_LENGTH,
    LATENT_SCALE,
    LATENT_SHIFT,
    MEL_FRAMES_PER_LATENT,
    MEL_MAX,
    MEL_MIN,
    SAMPLES_PER_LATENT,
    MusicDCAE,
)
from export.acestep_v1.transformer import ERG_QUERY_SCALE, ACEStepV1Transformer
from export.acestep_v1.vocoder import MusicVocoder, fold_weight_norm
from export.contracts import Axis, NetworkContract, TensorSpec

logger = logging.getLogger(__name__)

# Latent frames (44100 / 4096 = 10.77 per second) for 10, 20, 30, 45, 60, 90, 120, 150, 180 and 240 s.
FRAME_BUCKETS = tuple(math.ceil(s * 44100 / 4096) for s in (10, 20, 30, 45, 60, 90, 120, 150, 180, 240))
MAX_FRAMES = FRAME_BUCKETS[-1]  # 2584 >= 2583, the trained maximum
TEXT_BUCKETS = (32, 64, 128, 256)  # UMT5 captions are truncated at 256 tokens
LYRIC_BUCKETS = (64, 128, 256, 512, 1024, 2048, 4096)
ENCODER_MAX = 1 + TEXT_BUCKETS[-1] + LYRIC_BUCKETS[-1]
# Cross-attention memory lengths (1 speaker + text + lyric tokens) the sampler pads to, so that songs share v1_dit
# batches. Not declared on the Axis: TensorRT profiles split bucketed axes in step, and a song's memory length does not
# grow with its frame count.
ENCODER_BUCKETS = (64, 128, 256, 512, 1024, 2048, ENCODER_MAX)
NETWORKS = ("v1_text_encoder", "v1_condition_encoder", "v1_dit", "v1_dcae_decoder", "v1_vocoder", "v1_dcae_encoder")


def _erg_scale(erg: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    """[B, 1] 0/1 flags -> [B] query scale (0.01 where set)."""
    one = torch.ones((), dtype=like.dtype, device=like.device)
    return torch.where(erg.reshape(-1) > 0, one * ERG_QUERY_SCALE, one)


class _RowScaledLinear(nn.Module):
    """A linear layer whose output rows are multiplied by ``self.row_scale`` [B] when it is set."""

    def __init__(self, linear: nn.Module) -> None:
        super().__init__()
        self.linear = linear
        self.row_scale: torch.Tensor | None = None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.linear(x)
        if self.row_scale is None:
            return out
        return out * self.row_scale.to(out.dtype).view(-1, *([1] * (out.dim() - 1)))


class TextEncoderNet(nn.Module):
    """UMT5 caption encoder with per-row ERG (weakened self-attention queries in ``erg_layers``)."""

    def __init__(self, umt5: Any, erg_layers: Iterable[int]) -> None:
        super().__init__()
        self.umt5 = copy.deepcopy(umt5)
        blocks = self.umt5.encoder.block
        self._weakened: list[_RowScaledLinear] = []
        for i in erg_layers:
            if not 0 <= i < len(blocks):
                raise ValueError(f"erg_text_layers: block {i} does not exist (the text encoder has {len(blocks)})")
            attn = blocks[i].layer[0].SelfAttention
            attn.q = _RowScaledLinear(attn.q)
            self._weakened.append(attn.q)

    def forward(self, text_input_ids: torch.Tensor, text_attention_mask: torch.Tensor,
                erg: torch.Tensor) -> torch.Tensor:
        scale = _erg_scale(erg, self.umt5.get_input_embeddings().weight)
        for q in self._weakened:
            q.row_scale = scale
        try:
            return self.umt5(input_ids=text_input_ids, attention_mask=text_attention_mask).last_hidden_state
        finally:
            for q in self._weakened:
                q.row_scale = None


class ConditionEncoderNet(nn.Module):
    """``encode``: [speaker | genre(text) | lyric encoder] and its mask (int64)."""

    def __init__(self, transformer: ACEStepV1Transformer) -> None:
        super().__init__()
        self.dit = transformer

    def forward(self, text_hidden_states: torch.Tensor, text_attention_mask: torch.Tensor,
                speaker_embeds: torch.Tensor, lyric_token_ids: torch.Tensor, lyric_mask: torch.Tensor,
                erg: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        states, mask = self.dit.encode(text_hidden_states, text_attention_mask, speaker_embeds, lyric_token_ids,
                                       lyric_mask, erg=erg.reshape(-1))
        return states, mask.to(torch.int64)


class MaskedDiTNet(nn.Module):
    """One velocity evaluation with latent/encoder masks, padding-invariant, with per-row ERG."""

    def __init__(self, transformer: ACEStepV1Transformer) -> None:
        super().__init__()
        self.dit = transformer

    def forward(self, hidden_states: torch.Tensor, timestep: torch.Tensor, latent_mask: torch.Tensor,
                encoder_hidden_states: torch.Tensor, encoder_attention_mask: torch.Tensor,
                erg: torch.Tensor) -> torch.Tensor:
        return self.dit.decode(
            hidden_states, latent_mask.to(hidden_states.dtype), encoder_hidden_states,
            encoder_attention_mask.to(hidden_states.dtype), timestep.reshape(-1), erg=erg.reshape(-1),
            mask_padding=True,
        )


class DcaeDecoderNet(nn.Module):
    """Normalised latents [B, 8, 16, T] -> stereo log-mel [B, 2, 128, 8T] (values in [-11, 3])."""

    def __init__(self, music_dcae: MusicDCAE) -> None:
        super().__init__()
        self.music = music_dcae

    def forward(self, latents: torch.Tensor) -> torch.Tensor:
        return self.music.latents_to_mel(latents)


class DcaeEncoderNet(nn.Module):
    """44.1 kHz stereo [B, 2, 4096 W] -> normalised latents [B, 8, 16, W] (``MusicDCAE.encode`` after resampling)."""

    def __init__(self, music_dcae: MusicDCAE) -> None:
        super().__init__()
        self.music = music_dcae

    def forward(self, audio: torch.Tensor) -> torch.Tensor:
        b, c, n = audio.shape
        mel = self.music.vocoder.encode(audio.reshape(b * c, n))
        mel = mel.reshape(b, c, mel.shape[1], mel.shape[2])
        mel = ((mel - MEL_MIN) / (MEL_MAX - MEL_MIN) - 0.5) / 0.5
        return (self.music.dcae.encoder(mel) - LATENT_SHIFT) * LATENT_SCALE


class VocoderNet(nn.Module):
    """Log-mel [B, 128, M] (one channel per row) -> 44.1 kHz waveform [B, 1, 512 M]."""

    def __init__(self, vocoder: MusicVocoder) -> None:
        super().__init__()
        # A fresh copy (weight-normed modules cannot be deep-copied), then the norms folded into plain weights.
        plain = MusicVocoder(vocoder.config)
        plain.load_state_dict(vocoder.state_dict())
        self.vocoder = fold_weight_norm(plain)

    def forward(self, mel: torch.Tensor) -> torch.Tensor:
        return self.vocoder(mel)


@dataclass(frozen=True)
class V1Dims:
    """The sizes the contracts need, read from a loaded checkpoint."""

    text_vocab: int
    text_hidden: int
    speaker_dim: int
    lyric_vocab: int
    model_dim: int
    latent_channels: int = 8
    latent_height: int = 16
    mel_bins: int = 128

    @classmethod
    def from_models(cls, transformer: ACEStepV1Transformer, text_encoder: Any) -> V1Dims:
        cfg = transformer.config
        return cls(
            text_vocab=int(text_encoder.config.vocab_size),
            text_hidden=int(text_encoder.config.d_model),
            speaker_dim=cfg.speaker_embedding_dim,
            lyric_vocab=cfg.lyric_encoder_vocab_size,
            model_dim=cfg.model_dim,
            latent_channels=cfg.out_channels,
            latent_height=cfg.patch_size[0],
            mel_bins=128,
        )


def build_contracts(dims: V1Dims, *, max_batch_size: int = 8) -> dict[str, NetworkContract]:
    b = "batch"
    c, h = dims.latent_channels, dims.latent_height
    text = Axis("text", 1, 64, TEXT_BUCKETS[-1], TEXT_BUCKETS)
    lyric = Axis("lyric", 1, 512, LYRIC_BUCKETS[-1], LYRIC_BUCKETS)
    encoder = Axis("encoder", 3, 1 + 64 + 512, ENCODER_MAX)
    frames = Axis("frames", 1, 646, MAX_FRAMES, FRAME_BUCKETS)
    mel_frames = Axis("mel_frames", MEL_FRAMES_PER_LATENT, 646 * MEL_FRAMES_PER_LATENT,
                      MAX_FRAMES * MEL_FRAMES_PER_LATENT)
    samples = Axis("samples", HOP_LENGTH * MEL_FRAMES_PER_LATENT, HOP_LENGTH * mel_frames.opt,
                   HOP_LENGTH * mel_frames.max)
    erg = TensorSpec("erg", "int64", (b, 1), fill="ids", high=2)
    contracts = [
        NetworkContract(
            name="v1_text_encoder",
            description="UMT5 caption encoder; erg=1 rows weaken the configured blocks' queries (x0.01)",
            inputs=(
                TensorSpec("text_input_ids", "int64", (b, "text"), fill="ids", high=dims.text_vocab),
                TensorSpec("text_attention_mask", "int64", (b, "text"), fill="mask"),
                erg,
            ),
            outputs=(TensorSpec("text_hidden_states", "float32", (b, "text", dims.text_hidden)),),
            axes=(text,),
            max_batch_size=max_batch_size,
            precision="bf16",
        ),
        NetworkContract(
            name="v1_condition_encoder",
            description="speaker + genre + Conformer lyric encoder -> cross-attention memory and mask",
            inputs=(
                TensorSpec("text_hidden_states", "float32", (b, "text", dims.text_hidden)),
                TensorSpec("text_attention_mask", "int64", (b, "text"), fill="mask"),
                TensorSpec("speaker_embeds", "float32", (b, dims.speaker_dim)),
                TensorSpec("lyric_token_ids", "int64", (b, "lyric"), fill="ids", high=dims.lyric_vocab),
                TensorSpec("lyric_mask", "int64", (b, "lyric"), fill="mask"),
                erg,
            ),
            outputs=(
                TensorSpec("encoder_hidden_states", "float32", (b, "encoder", dims.model_dim)),
                TensorSpec("encoder_attention_mask", "int64", (b, "encoder")),
            ),
            axes=(text, lyric, encoder),
            max_batch_size=max_batch_size,
            precision="bf16",
        ),
        NetworkContract(
            name="v1_dit",
            description="one flow-matching velocity evaluation with latent and encoder masks and per-row ERG",
            inputs=(
                TensorSpec("hidden_states", "float32", (b, c, h, "frames")),
                # [B, 1] rather than [B]: Triton needs at least one non-batch dim. Timesteps are in [0, 1000].
                TensorSpec("timestep", "float32", (b, 1), fill="uniform", high=1000.0),
                TensorSpec("latent_mask", "int64", (b, "frames"), fill="mask"),
                TensorSpec("encoder_hidden_states", "float32", (b, "encoder", dims.model_dim)),
                TensorSpec("encoder_attention_mask", "int64", (b, "encoder"), fill="mask"),
                erg,
            ),
            outputs=(TensorSpec("velocity", "float32", (b, c, h, "frames")),),
            axes=(frames, encoder),
            # Guided steps send conditional and unconditional rows together.
            max_batch_size=2 * max_batch_size,
            precision="bf16",
            # As 1.5's dit: the step scheduler merges the sampler's own songs into one call per step, so the window
            # only merges calls from several sampler instances or servers (before the scheduler, 25 ms was needed
            # for songs to meet at all: docs/acestep-v1.md).
            preferred_batch_sizes=(),
            max_queue_delay_us=1000,
        ),
        NetworkContract(
            name="v1_dcae_decoder",
            description="music DCAE decoder: latents -> stereo log-mel (fp32)",
            inputs=(TensorSpec("latents", "float32", (b, c, h, "frames")),),
            outputs=(TensorSpec("mel", "float32", (b, 2, dims.mel_bins, "mel_frames")),),
            axes=(frames, mel_frames),
            # One song per row at its own length (global attention); a 240 s row is ~10 GB of fp32 activations.
            max_batch_size=2,
            precision="fp32",
            preferred_batch_sizes=(1, 2),
            max_queue_delay_us=1000,
        ),
        NetworkContract(
            name="v1_vocoder",
            description="ConvNeXt + HiFi-GAN vocoder: one log-mel channel -> 44.1 kHz mono (fp32)",
            inputs=(TensorSpec("mel", "float32", (b, dims.mel_bins, "mel_frames")),),
            outputs=(TensorSpec("audio", "float32", (b, 1, "samples")),),
            axes=(mel_frames, samples),
            # Rows are stereo channels: two songs' worth (a 240 s row is 10.6 M samples).
            max_batch_size=4,
            precision="fp32",
            preferred_batch_sizes=(2, 4),
            max_queue_delay_us=1000,
        ),
        NetworkContract(
            name="v1_dcae_encoder",
            description="log-mel + music DCAE encoder: 44.1 kHz stereo -> normalised latents (fp32)",
            inputs=(TensorSpec("audio", "float32", (b, 2, "audio_samples")),),
            outputs=(TensorSpec("latents", "float32", (b, c, h, "latent_frames")),),
            axes=(
                Axis("audio_samples", SAMPLES_PER_LATENT, 646 * SAMPLES_PER_LATENT, MAX_FRAMES * SAMPLES_PER_LATENT),
                Axis("latent_frames", 1, 646, MAX_FRAMES),
            ),
            # One source song per row at its own length, as the decoder.
            max_batch_size=2,
            precision="fp32",
            preferred_batch_sizes=(1, 2),
            max_queue_delay_us=1000,
        ),
    ]
    return {contract.name: contract for contract in contracts}


def wrappers(transformer: ACEStepV1Transformer, text_encoder: Any,
             music_dcae: MusicDCAE) -> dict[str, Callable[[], nn.Module]]:
    """Factories for each network's export wrapper over loaded models."""
    return {
        "v1_text_encoder": lambda: TextEncoderNet(text_encoder, transformer.config.erg_text_layers).eval(),
        "v1_condition_encoder": lambda: ConditionEncoderNet(transformer).eval(),
        "v1_dit": lambda: MaskedDiTNet(transformer).eval(),
        "v1_dcae_decoder": lambda: DcaeDecoderNet(music_dcae).eval(),
        "v1_vocoder": lambda: VocoderNet(music_dcae.vocoder).eval(),
        "v1_dcae_encoder": lambda: DcaeEncoderNet(music_dcae).eval(),
    }


# Sizes of the example inputs the exporter traces with (the axes stay dynamic).
TRACE_SIZES = {"batch": 2, "text": 12, "lyric": 20, "encoder": 33, "frames": 24, "mel_frames": 64,
               "samples": 64 * HOP_LENGTH, "audio_samples": 24 * SAMPLES_PER_LATENT, "latent_frames": 24}


def load_for_export(root: str | Path) -> tuple[dict[str, NetworkContract], dict[str, Callable[[], nn.Module]]]:
    """Contracts and wrapper factories for the checkpoint at ``root`` (the real layout or a preset)."""
    from export.acestep_v1.checkpoint import load_music_dcae, load_text_encoder, load_transformer

    transformer = load_transformer(root)
    text_encoder, _ = load_text_encoder(root)
    music = load_music_dcae(root)
    dims = V1Dims.from_models(transformer, text_encoder)
    return build_contracts(dims), wrappers(transformer, text_encoder, music)


def export_onnx_models(root: str | Path, out_dir: str | Path,
                       networks: Iterable[str] = NETWORKS) -> dict[str, Path]:
    """``out_dir/<network>/model.onnx`` for each network (skipped when present). Returns the paths."""
    from export.onnx_export import export_onnx

    contracts, factories = load_for_export(root)
    paths: dict[str, Path] = {}
    for name in networks:
        if name not in contracts:
            raise ValueError(f"unknown v1 network {name!r}; choose from {', '.join(NETWORKS)}")
        path = Path(out_dir) / name / "model.onnx"
        if not path.exists():
            export_onnx(factories[name](), contracts[name], path, sizes=TRACE_SIZES)
        paths[name] = path
    return paths


def describe(contracts: dict[str, NetworkContract]) -> dict[str, Any]:
    """A JSON-friendly summary (names, dtypes, shapes) for docs and logs."""
    return {
        name: {"inputs": {s.name: [s.dtype, list(s.shape)] for s in c.inputs},
               "outputs": {s.name: [s.dtype, list(s.shape)] for s in c.outputs}}
        for name, c in contracts.items()
    }
