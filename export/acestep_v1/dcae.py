"""The ACE-Step v1 music autoencoder: diffusers' stock ``AutoencoderDC`` on stereo log-mels plus the vocoder.

Decoding a latent [B, 8, 16, W] (W frames at 44100 / 512 / 8 = 10.77 Hz):

1. undo the latent normalisation: ``latent / 0.1786 + (-1.9091)``;
2. ``AutoencoderDC.decoder`` -> [B, 2, 128, 8W] mel "images" in [-1, 1] (diffusers applies no scaling_factor here);
3. back to log-mel: ``(x * 0.5 + 0.5) * (3 - (-11)) + (-11)``, i.e. the mel range [-11, 3];
4. the vocoder once per stereo channel -> 44.1 kHz, 512 samples per mel frame;
5. resample 44.1 -> 48 kHz (windowed-sinc, Hann window, 6 zero crossings, rolloff 0.99).

Encoding reverses it: resample to 44.1 kHz, pad to a multiple of 8 * 512 samples, log-mel per channel, normalise to
[-1, 1], ``AutoencoderDC.encoder``, then ``(latent - (-1.9091)) * 0.1786``. Resampling is written in torch here
(torchaudio has no CPU wheel for this environment) and matches torchaudio's ``Resample`` to float precision.
"""

from __future__ import annotations

import json
import logging
import math
from collections.abc import Mapping
from functools import lru_cache
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from export.acestep_v1.vocoder import MusicVocoder, VocoderConfig

logger = logging.getLogger(__name__)

# Latent normalisation of the v1 DiT's training data (music_dcae_pipeline.py).
LATENT_SCALE = 0.1786
LATENT_SHIFT = -1.9091
# Log-mel range the DCAE was trained on.
MEL_MIN, MEL_MAX = -11.0, 3.0
# The vocoder's native rate and the service's output rate.
VOCODER_SAMPLE_RATE = 44100
OUTPUT_SAMPLE_RATE = 48000
# The DCAE compresses time by 8 (f8c8), the vocoder hop is 512 samples: one latent frame = 4096 samples at 44.1 kHz.
MEL_FRAMES_PER_LATENT = 8
HOP_LENGTH = 512
SAMPLES_PER_LATENT = MEL_FRAMES_PER_LATENT * HOP_LENGTH
# The checkpoint's trained length: 240 s -> int(240 * 44100 / 4096) = 2583 latent frames.
MAX_TRAINED_SECONDS = 240

# Overlapped decoding for long songs (the original's ``decode_overlap``): DCAE windows of 512 latent frames advanced by
# 256 with a quarter window (128 latents = 1024 mel frames) trimmed at inner edges; vocoder windows of 512 mel frames
# (262144 samples) advanced by 262144 - 2 * 1024 samples, joined with a 128-sample linear crossfade.
DCAE_WINDOW = 512
VOCODER_WINDOW_FRAMES = 512
VOCODER_OVERLAP = 1024
CROSSFADE = 128

DCAE_CONFIG_KEYS = (
    "in_channels", "latent_channels", "attention_head_dim", "encoder_block_types", "decoder_block_types",
    "encoder_block_out_channels", "decoder_block_out_channels", "encoder_layers_per_block",
    "decoder_layers_per_block", "encoder_qkv_multiscales", "decoder_qkv_multiscales", "upsample_block_type",
    "downsample_block_type", "decoder_norm_types", "decoder_act_fns", "scaling_factor",
)


def latent_frames_for(seconds: float) -> int:
    """Latent frames for a duration, as the pipeline computes them: ``int(seconds * 44100 / 512 / 8)``."""
    return int(seconds * VOCODER_SAMPLE_RATE / HOP_LENGTH / MEL_FRAMES_PER_LATENT)


def build_autoencoder_dc(config: Mapping[str, Any]) -> Any:
    """diffusers' ``AutoencoderDC`` from a ``music_dcae_f8c8/config.json`` mapping (extra keys ignored)."""
    from diffusers import AutoencoderDC

    kwargs = {k: (tuple(tuple(x) if isinstance(x, list) else x for x in v) if isinstance(v, list) else v)
              for k, v in config.items() if k in DCAE_CONFIG_KEYS}
    return AutoencoderDC(**kwargs)


# ----------------------------------------------------------------------------------------------------------------------
# Resampling (windowed sinc, torchaudio's "sinc_interp_hann" semantics)


@lru_cache(maxsize=8)
def _sinc_kernel(orig: int, new: int, width_zero_crossings: int, rolloff: float) -> tuple[torch.Tensor, int]:
    """Polyphase kernel [new, 1, 2 * width + orig] (float32) for rates already divided by their gcd."""
    base = min(orig, new) * rolloff
    width = math.ceil(width_zero_crossings * orig / base)
    idx = torch.arange(-width, width + orig, dtype=torch.float64)[None, None] / orig
    t = (torch.arange(0, -new, -1)[:, None, None] / new).to(torch.float64) + idx
    t = (t * base).clamp(-width_zero_crossings, width_zero_crossings)
    window = torch.cos(t * math.pi / width_zero_crossings / 2) ** 2
    t = t * math.pi
    kernel = torch.where(t == 0, torch.ones_like(t), torch.sin(t) / torch.where(t == 0, torch.ones_like(t), t))
    return (kernel * window * (base / orig)).to(torch.float32), width


def resample(
    wave: torch.Tensor, orig_sr: int, new_sr: int, zero_crossings: int = 6, rolloff: float = 0.99
) -> torch.Tensor:
    """Band-limited resampling along the last axis; output length ``ceil(N * new / orig)``."""
    if orig_sr == new_sr:
        return wave
    g = math.gcd(int(orig_sr), int(new_sr))
    orig, new = int(orig_sr) // g, int(new_sr) // g
    kernel, width = _sinc_kernel(orig, new, zero_crossings, rolloff)
    shape = wave.shape
    flat = wave.reshape(-1, shape[-1])
    length = flat.shape[-1]
    padded = F.pad(flat, (width, width + orig))
    out = F.conv1d(padded[:, None], kernel.to(flat.dtype).to(flat.device), stride=orig)
    out = out.transpose(1, 2).reshape(flat.shape[0], -1)
    target = math.ceil(new * length / orig)
    return out[..., :target].reshape(*shape[:-1], -1)


# ----------------------------------------------------------------------------------------------------------------------
# The autoencoder


def latents_to_dcae_input(latents: torch.Tensor) -> torch.Tensor:
    return latents / LATENT_SCALE + LATENT_SHIFT


def dcae_output_to_log_mel(mel_image: torch.Tensor) -> torch.Tensor:
    return (mel_image * 0.5 + 0.5) * (MEL_MAX - MEL_MIN) + MEL_MIN


class MusicDCAE(nn.Module):
    """``AutoencoderDC`` (``.dcae``) + :class:`MusicVocoder` (``.vocoder``) with the v1 normalisations."""

    def __init__(self, dcae: Any, vocoder: MusicVocoder) -> None:
        super().__init__()
        self.dcae = dcae
        self.vocoder = vocoder

    @classmethod
    def from_configs(cls, dcae_config: Mapping[str, Any], vocoder_config: Mapping[str, Any] | VocoderConfig
                     ) -> MusicDCAE:
        voc_cfg = vocoder_config if isinstance(vocoder_config, VocoderConfig) else VocoderConfig.from_dict(
            vocoder_config)
        return cls(build_autoencoder_dc(dcae_config), MusicVocoder(voc_cfg))

    @classmethod
    def from_config_files(cls, dcae_config: str | Path, vocoder_config: str | Path) -> MusicDCAE:
        return cls.from_configs(json.loads(Path(dcae_config).read_text()), VocoderConfig.from_file(vocoder_config))

    def latents_to_mel(self, latents: torch.Tensor) -> torch.Tensor:
        """Latents [B, 8, 16, W] -> stereo log-mel [B, 2, 128, 8W] (the ``dcae_decoder`` network)."""
        return dcae_output_to_log_mel(self.dcae.decoder(latents_to_dcae_input(latents)))

    def mel_to_wave(self, mel: torch.Tensor) -> torch.Tensor:
        """Stereo log-mel [B, 2, 128, T] -> waveform [B, 2, 512 T] at 44.1 kHz (the vocoder once per channel)."""
        b, c, m, t = mel.shape
        wave = self.vocoder(mel.reshape(b * c, m, t))
        return wave.reshape(b, c, -1)

    @torch.no_grad()
    def decode(self, latents: torch.Tensor, sample_rate: int | None = OUTPUT_SAMPLE_RATE) -> torch.Tensor:
        """Latents [B, 8, 16, W] -> waveform [B, 2, N] at ``sample_rate`` (44.1 kHz when ``None``)."""
        wave = self.mel_to_wave(self.latents_to_mel(latents))
        if sample_rate is not None and sample_rate != VOCODER_SAMPLE_RATE:
            wave = resample(wave.float(), VOCODER_SAMPLE_RATE, sample_rate)
        return wave

    @torch.no_grad()
    def encode(self, audio: torch.Tensor, sample_rate: int = OUTPUT_SAMPLE_RATE,
               audio_lengths: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """Stereo audio [B, 2, N] -> (latents [B, 8, 16, W], latent lengths [B])."""
        if audio.dim() != 3 or audio.shape[1] != 2:
            raise ValueError(f"audio must be [batch, 2, samples] (stereo), got {tuple(audio.shape)}")
        if audio_lengths is None:
            audio_lengths = torch.full((audio.shape[0],), audio.shape[-1], dtype=torch.int64)
        wave = resample(audio, sample_rate, VOCODER_SAMPLE_RATE)
        rem = wave.shape[-1] % SAMPLES_PER_LATENT
        if rem:
            wave = F.pad(wave, (0, SAMPLES_PER_LATENT - rem))
        b, c, n = wave.shape
        mel = self.vocoder.encode(wave.reshape(b * c, n))
        mel = mel.reshape(b, c, *mel.shape[1:])
        mel = ((mel - MEL_MIN) / (MEL_MAX - MEL_MIN) - 0.5) / 0.5
        latents = torch.cat([self.dcae.encoder(mel[i : i + 1]) for i in range(b)], dim=0)
        lengths = (audio_lengths / sample_rate * VOCODER_SAMPLE_RATE / HOP_LENGTH / MEL_FRAMES_PER_LATENT).long()
        return (latents - LATENT_SHIFT) * LATENT_SCALE, lengths


# ----------------------------------------------------------------------------------------------------------------------
# Overlapped (chunked) decoding: any length, bounded memory. Works on callables so a server can plug in its models.


def overlapped_mel(latents: torch.Tensor, decode: Any, window: int = DCAE_WINDOW) -> torch.Tensor:
    """Latents [1, 8, 16, L] -> log-mel [1, 2, 128, 8L] by windows of ``window`` latent frames.

    ``decode`` maps a latent window [1, 8, 16, w] to its mel [1, 2, 128, 8w] (e.g. :meth:`MusicDCAE.latents_to_mel`).
    Windows start every ``window / 2`` frames; each keeps its centre, a quarter window is trimmed at inner edges.
    """
    length = latents.shape[-1]
    if length == 0:
        raise ValueError("latents have no frames")
    offset, hop, trim = window // 4, window // 2, window // 4 * MEL_FRAMES_PER_LATENT
    anchors = list(range(offset, length - offset, hop)) or [offset]
    pieces = []
    for i, anchor in enumerate(anchors):
        start = max(0, anchor - offset)
        segment = latents[..., start : min(length, start + window)]
        mel = decode(segment)
        first, last = i == 0, i == len(anchors) - 1
        if first and last:
            mel = mel[..., : segment.shape[-1] * MEL_FRAMES_PER_LATENT]
        elif first:
            mel = mel[..., :-trim]
        elif last:
            mel = mel[..., trim:]
        else:
            mel = mel[..., trim:-trim]
        pieces.append(mel)
    return torch.cat(pieces, dim=-1)


def overlapped_wave(mel: torch.Tensor, vocode: Any, window_frames: int = VOCODER_WINDOW_FRAMES,
                    overlap: int = VOCODER_OVERLAP, crossfade: int = CROSSFADE) -> torch.Tensor:
    """Log-mel [N, 128, M] (one channel per row) -> 44.1 kHz waveform [N, 512 M] by fixed vocoder windows.

    ``vocode`` maps [N, 128, window_frames] to [N, 1, 512 * window_frames]; short windows are zero-padded to that
    size (fixed shapes). Inner edges lose ``overlap`` samples and are joined with a linear crossfade.
    """
    frames = mel.shape[-1]
    total = frames * HOP_LENGTH
    window = window_frames * HOP_LENGTH
    hop = window - 2 * overlap

    def block(start_frame: int) -> torch.Tensor:
        chunk = mel[..., start_frame : start_frame + window_frames]
        if chunk.shape[-1] < window_frames:
            chunk = F.pad(chunk, (0, window_frames - chunk.shape[-1]))
        return vocode(chunk).reshape(mel.shape[0], -1)

    out = block(0)[:, :-overlap]
    fade_out = torch.linspace(1, 0, crossfade, dtype=out.dtype, device=out.device)
    fade_in = torch.linspace(0, 1, crossfade, dtype=out.dtype, device=out.device)
    pos = hop
    while pos < total:
        start_frame = pos // HOP_LENGTH
        if start_frame >= frames:
            break
        new = block(start_frame)
        cf = min(crossfade, out.shape[-1], new.shape[-1] - (overlap - crossfade))
        if cf > 0:
            mixed = out[:, -cf:] * fade_out[:cf] + new[:, overlap - cf : overlap] * fade_in[:cf]
            out = torch.cat([out[:, :-cf], mixed], dim=-1)
        tail = new[:, overlap:] if pos + hop >= total else new[:, overlap:-overlap]
        out = torch.cat([out, tail], dim=-1)
        pos += hop
    return out[:, :total]


@torch.no_grad()
def decode_overlapped(music: MusicDCAE, latents: torch.Tensor, sample_rate: int | None = OUTPUT_SAMPLE_RATE
                      ) -> torch.Tensor:
    """Latents [B, 8, 16, L] -> waveform [B, 2, N] with bounded memory (any L; one song at a time)."""
    waves = []
    for latent in latents:
        mel = overlapped_mel(latent[None], music.latents_to_mel)[0]  # [2, 128, 8L]
        wave = overlapped_wave(mel, music.vocoder)
        if sample_rate is not None and sample_rate != VOCODER_SAMPLE_RATE:
            wave = resample(wave, VOCODER_SAMPLE_RATE, sample_rate)
        waves.append(wave)
    return torch.stack(waves)
