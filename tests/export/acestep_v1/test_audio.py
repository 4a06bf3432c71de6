"""Vocoder, mel front end, resampling and the music DCAE against the original implementation's tiny fixtures.

README tolerances: DCAE 5e-5, vocoder and MusicDCAE waveforms 2e-4.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from export.acestep_v1.dcae import MusicDCAE, build_autoencoder_dc, latent_frames_for, resample
from export.acestep_v1.vocoder import MusicVocoder, VocoderConfig, fold_weight_norm, slaney_mel_filterbank

from .conftest import load_tensors, max_err, read_json

DCAE_ATOL = 5e-5
WAV_ATOL = 2e-4


@pytest.fixture(scope="module")
def io(tiny_ref: Path) -> dict[str, torch.Tensor]:
    return load_tensors(tiny_ref / "audio_io.safetensors")


@pytest.fixture(scope="module")
def vocoder_state(tiny_ref: Path) -> dict[str, torch.Tensor]:
    return load_tensors(tiny_ref / "vocoder_weights.safetensors")


@pytest.fixture(scope="module")
def vocoder(tiny_ref: Path, vocoder_state) -> MusicVocoder:
    v = MusicVocoder(VocoderConfig.from_file(tiny_ref / "vocoder_config.json"))
    v.load_state_dict(vocoder_state, strict=True)
    return v.eval()


@pytest.fixture(scope="module")
def music_dcae(tiny_ref: Path, vocoder) -> MusicDCAE:
    dcae = build_autoencoder_dc(read_json(tiny_ref / "dcae_config.json"))
    dcae.load_state_dict(load_tensors(tiny_ref / "dcae_weights.safetensors"), strict=True)
    return MusicDCAE(dcae.eval(), vocoder).eval()


def test_mel_buffers_are_rebuilt_exactly(vocoder_state):
    fb = slaney_mel_filterbank(1025, 40, 16000, 128, 44100)
    assert max_err(fb, vocoder_state["mel_transform.mel_scale.fb"]) <= 1e-7
    assert torch.equal(torch.hann_window(2048), vocoder_state["mel_transform.spectrogram.window"])


@torch.no_grad()
def test_vocoder_decode_and_log_mel(vocoder, io):
    wav = vocoder.decode(io["vocoder.in.mel"])
    assert wav.shape == (1, 1, 12 * 512)
    assert max_err(wav, io["vocoder.out.wav"]) <= WAV_ATOL
    assert max_err(vocoder.encode(io["vocoder.in.audio"]), io["vocoder.out.log_mel"]) <= DCAE_ATOL


@torch.no_grad()
def test_fold_weight_norm_keeps_the_output(tiny_ref, vocoder_state, io):
    v = MusicVocoder(VocoderConfig.from_file(tiny_ref / "vocoder_config.json"))
    v.load_state_dict(vocoder_state)
    folded = fold_weight_norm(v.eval())
    assert not any(k.endswith("weight_g") for k in folded.state_dict())
    assert max_err(folded.decode(io["vocoder.in.mel"]), io["vocoder.out.wav"]) <= WAV_ATOL


def test_resample_44100_to_48000(io):
    out = resample(io["resample.in.wave_44100"], 44100, 48000)
    assert out.shape == (2, 4800)
    assert max_err(out, io["resample.out.wave_48000"]) <= 1e-5


@torch.no_grad()
def test_dcae_encoder_and_decoder(music_dcae, io):
    assert max_err(music_dcae.dcae.decoder(io["dcae.in.latent"]), io["dcae.out.decoder"]) <= DCAE_ATOL
    assert max_err(music_dcae.dcae.encoder(io["dcae.in.mel"]), io["dcae.out.encoder"]) <= DCAE_ATOL


@torch.no_grad()
def test_music_dcae_decode_44k_and_48k(music_dcae, io):
    latents = io["musicdcae.in.latents"]
    wav44 = music_dcae.decode(latents, sample_rate=None)[0]
    assert wav44.shape == (2, 9 * 8 * 512)
    assert max_err(wav44, io["musicdcae.out.decode_44100"]) <= WAV_ATOL
    wav48 = music_dcae.decode(latents, sample_rate=48000)[0]
    assert wav48.shape == io["musicdcae.out.decode_48000"].shape
    assert max_err(wav48, io["musicdcae.out.decode_48000"]) <= WAV_ATOL


@torch.no_grad()
def test_music_dcae_encode(music_dcae, io):
    latents, lengths = music_dcae.encode(io["musicdcae.in.audio_48k"], sample_rate=48000)
    assert max_err(latents, io["musicdcae.out.encode_latents"]) <= DCAE_ATOL
    assert torch.equal(lengths, io["musicdcae.out.encode_latent_lengths"])
    with pytest.raises(ValueError, match="stereo"):
        music_dcae.encode(torch.zeros(1, 1, 100))


def test_latent_frame_arithmetic():
    assert latent_frames_for(240) == 2583  # the checkpoint's trained length
    assert latent_frames_for(10) == 107


def _local_dcae(latents: torch.Tensor) -> torch.Tensor:
    """A context-free stand-in decoder: each latent frame -> 8 mel frames (so any correct tiling is exact)."""
    mel = latents[:, :2].repeat_interleave(8, dim=2)  # [1, 2, 128, L]
    return mel.repeat_interleave(8, dim=-1)


def _local_vocoder(mel: torch.Tensor) -> torch.Tensor:
    return mel[:, :1].repeat_interleave(512, dim=-1)


@pytest.mark.parametrize("length", [5, 300, 600, 700, 1300])
def test_overlapped_mel_tiles_exactly(length):
    from export.acestep_v1.dcae import overlapped_mel

    latents = torch.randn(1, 8, 16, length, generator=torch.Generator().manual_seed(length))
    assert torch.equal(overlapped_mel(latents, _local_dcae), _local_dcae(latents))


@pytest.mark.parametrize("frames", [40, 600, 1100])
def test_overlapped_wave_tiles_and_crossfades(frames):
    from export.acestep_v1.dcae import overlapped_wave

    mel = torch.randn(2, 128, frames, generator=torch.Generator().manual_seed(frames))
    out = overlapped_wave(mel, _local_vocoder)
    assert out.shape == (2, frames * 512)
    assert (out - _local_vocoder(mel).reshape(2, -1)).abs().max().item() <= 1e-6


@torch.no_grad()
def test_decode_overlapped_real_models_short_song(music_dcae, io):
    """One DCAE window (<= 384 frames) is the plain DCAE decode; the vocoder's zero-padded window changes only the
    tail, so the waveform stays close to the plain decode away from the end."""
    from export.acestep_v1.dcae import decode_overlapped, overlapped_mel

    latents = io["musicdcae.in.latents"]
    assert torch.equal(overlapped_mel(latents, music_dcae.latents_to_mel), music_dcae.latents_to_mel(latents))
    wave = decode_overlapped(music_dcae, latents, sample_rate=None)
    plain = music_dcae.decode(latents, sample_rate=None)
    assert wave.shape == plain.shape
    assert torch.isfinite(wave).all()
    # Beyond the vocoder's receptive field from the zero padding (~30 of the 72 mel frames) the two agree.
    assert (wave[..., :15000] - plain[..., :15000]).abs().max().item() <= 1e-4
