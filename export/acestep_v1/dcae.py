"""The ACE-Step v1 music autoencoder: diffusers' stock ``AutoencoderDC`` on stereo log-mels plus the vocoder.

Decoding a latent [B, 8, 16, W] (W frames at 44100 / 512 / 8 = 10.77 Hz):

1. undo the latent normalisation: ``latent / 0.1786 + (-1.9091)``;
2. ``AutoencoderDC.decoder`` -> [B, 2, 128, 8W] mel "images" in [-1, 1] (diffusers applies no scaling_factor here);
3. back to log-mel: ``(x * 0.5 + 0.5) * (3 - (-11)) + (-11)``, i.e. the mel range [-11, 3];
4. the vocoder once per stereo channel -> 44.1 kHz, 512 samples per mel frame;
5. resample 44.1 -> 48 kHz (windowed-sinc, Hann window, 6 zero crossings, rolloff 0.99).

Encoding reverses it: resample to 44.1 kHz, pad to a multiple of 8 * 512 samples, log-mel per channel, normalise to
[-1, 1], ``AutoencoderDC.encoder``, then ``(latent - (-1.9091)) * 0.1786``. Resampling is written in torch here
(torchaudio has no CPU wheel for this environment, :mod:`model_repository.acestep_v1.resample`) and matches torchaudio's
``Resample`` to float precision.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from export.acestep_v1.vocoder import MusicVocoder, VocoderConfig

# The serving-time parts (the sampler decodes with them) live in model_repository; re-exported here.
from model_repository.acestep_v1.decode import (  # noqa: F401
    CROSSFADE,
    DCAE_WINDOW,
    HOP_LENGTH,
    MEL_FRAMES_PER_LATENT,
    OUTPUT_SAMPLE_RATE,
    SAMPLES_PER_LATENT,
    VOCODER_OVERLAP,
    VOCODER_SAMPLE_RATE,
    VOCODER_WINDOW_FRAMES,
    overlapped_mel,
    overlapped_wave,
)
from model_repository.acestep_v1.resample import resample

logger = logging.getLogger(__name__)

# Latent normalisation of the v1 DiT's training data (music_dcae_pipeline.py).
LATENT_SCALE = 0.1786
LATENT_SHIFT = -1.9091
# Log-mel range the DCAE was trained on.
MEL_MIN, MEL_MAX = -11.0, 3.0
# The checkpoint's trained length: 240 s -> int(240 * 44100 / 4096) = 2583 latent frames.
MAX_TRAINED_SECONDS = 240

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
# Overlapped (chunked) decoding: any length, bounded memory (``overlapped_mel``/``overlapped_wave`` work on callables,
# see model_repository.acestep_v1.decode).


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
