"""encode_audio / decode_audio: every format round-trips through soundfile with the right subtype, nothing is
clipped, uploads of any shape and rate come back as 48 kHz stereo, garbage is a clear error."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from orchestrator.media.audio import AudioDecodeError, decode_audio, encode_audio, resample_poly_numpy

SR = 48_000


def _tone(seconds: float = 1.0, freq: float = 440.0, amp: float = 0.5, rate: int = SR) -> np.ndarray:
    t = np.arange(int(seconds * rate)) / rate
    left = amp * np.sin(2 * np.pi * freq * t)
    right = amp * np.sin(2 * np.pi * freq * 1.5 * t + 0.3)
    return np.stack([left, right]).astype(np.float32)


@pytest.mark.parametrize(
    ("fmt", "suffix", "subtype", "tolerance"),
    [("flac", ".flac", "PCM_24", 2.0**-22), ("wav", ".wav", "PCM_16", 2.0**-14), ("wav32", ".wav", "FLOAT", 1e-7)],
)
def test_lossless_round_trip(tmp_path: Path, fmt: str, suffix: str, subtype: str, tolerance: float) -> None:
    audio = _tone()
    out = encode_audio(audio, sample_rate=SR, fmt=fmt, path=tmp_path / "song.bin")  # type: ignore[arg-type]
    assert out == tmp_path / f"song{suffix}"
    info = sf.info(out)
    assert (info.samplerate, info.channels, info.frames, info.subtype) == (SR, 2, audio.shape[1], subtype)
    back, rate = sf.read(out, dtype="float32", always_2d=True)
    assert rate == SR
    np.testing.assert_allclose(back.T, audio, atol=tolerance)
    assert not list(tmp_path.glob("*.part")), "temporary file left behind"


@pytest.mark.parametrize("fmt", ["flac", "wav", "wav32", "mp3"])
def test_too_loud_input_is_scaled_not_clipped(tmp_path: Path, fmt: str) -> None:
    quiet = _tone(amp=0.5)
    loud = quiet * 5.0  # peak 2.5: a hard clipper would square the sine off
    out = encode_audio(loud, sample_rate=SR, fmt=fmt, path=tmp_path / "loud")  # type: ignore[arg-type]
    back, _ = sf.read(out, dtype="float64", always_2d=True)
    back = back.T
    assert np.max(np.abs(back)) <= 1.0
    if fmt == "mp3":
        back = back[:, ::1]
        assert np.max(np.abs(back)) < 0.99  # -1 dBFS of headroom for the codec's overshoot
        return
    # Scaled as a whole: the shape is the input's, at a new gain, and the peak sits just under full scale.
    gain = float(np.dot(back[0], loud[0]) / np.dot(loud[0], loud[0]))
    assert 0.39 < gain <= 0.4
    np.testing.assert_allclose(back, loud * gain, atol=1e-4)
    assert np.max(np.abs(back)) > 0.99


def test_legal_levels_are_untouched(tmp_path: Path) -> None:
    audio = _tone(amp=0.891)  # the sampler's -1 dBFS peak normalisation
    back, _ = sf.read(encode_audio(audio, sample_rate=SR, fmt="wav32", path=tmp_path / "a"), dtype="float32")
    np.testing.assert_array_equal(back.T, audio)


def test_mp3_round_trip_48k(tmp_path: Path) -> None:
    audio = _tone(seconds=2.0, amp=0.4)
    out = encode_audio(audio, sample_rate=SR, fmt="mp3", path=tmp_path / "song.flac")
    assert out.suffix == ".mp3"
    data = out.read_bytes()
    assert data[:3] == b"ID3" or (data[0] == 0xFF and data[1] & 0xE0 == 0xE0), "not an MPEG audio stream"
    # 320 kb/s CBR: 2 s → ~80 kB.
    assert 60_000 < len(data) < 100_000
    back = decode_audio(data)
    assert back.shape[0] == 2 and back.dtype == np.float32
    # MP3 adds encoder delay and padding (a few frames of 1152 samples), never removes audio.
    assert audio.shape[1] <= back.shape[1] <= audio.shape[1] + 4 * 1152
    # The tone survives: the left channel's strongest frequency is still 440 Hz.
    spectrum = np.abs(np.fft.rfft(back[0]))
    peak_hz = np.argmax(spectrum) * SR / back.shape[1]
    assert abs(peak_hz - 440.0) < 2.0


def test_encode_rejects_bad_input(tmp_path: Path) -> None:
    bad = _tone()
    bad[0, 10] = np.nan
    with pytest.raises(ValueError, match="NaN"):
        encode_audio(bad, sample_rate=SR, fmt="flac", path=tmp_path / "x")
    with pytest.raises(ValueError, match="audio_format must be one of flac, wav, wav32, mp3"):
        encode_audio(_tone(), sample_rate=SR, fmt="ogg", path=tmp_path / "x")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match=r"\[channels, samples\]"):
        encode_audio(np.zeros((4, 100), np.float32), sample_rate=SR, fmt="wav", path=tmp_path / "x")
    assert not list(tmp_path.iterdir())


def _wav_bytes(audio_frames_first: np.ndarray, rate: int, subtype: str = "PCM_16") -> bytes:
    buffer = io.BytesIO()
    sf.write(buffer, audio_frames_first, rate, format="WAV", subtype=subtype)
    return buffer.getvalue()


def test_decode_mono_is_duplicated() -> None:
    mono = _tone(amp=0.3)[0]
    out = decode_audio(_wav_bytes(mono, SR, "FLOAT"))
    assert out.shape == (2, mono.size) and out.dtype == np.float32
    np.testing.assert_array_equal(out[0], mono)
    np.testing.assert_array_equal(out[1], mono)


def test_decode_44k1_is_resampled_to_48k() -> None:
    rate = 44_100
    src = _tone(seconds=1.0, freq=1000.0, amp=0.5, rate=rate)
    out = decode_audio(_wav_bytes(src.T, rate, "FLOAT"))
    assert out.shape == (2, 48_000)  # ceil(44100 * 48000 / 44100)
    # Compare with the same tone generated at 48 kHz, away from the filter's edges.
    expected = _tone(seconds=1.0, freq=1000.0, amp=0.5, rate=SR)
    np.testing.assert_allclose(out[:, 2000:-2000], expected[:, 2000:-2000], atol=2e-3)


def test_decode_downmixes_surround() -> None:
    frames = np.zeros((4800, 6), np.float32)
    frames[:, 0] = 0.5  # front left only
    out = decode_audio(_wav_bytes(frames, SR, "FLOAT"))
    assert out.shape == (2, 4800)
    assert out[0].min() > 0.1 and np.allclose(out[1], 0.0)  # left stays left, nothing leaks right
    assert np.abs(out).max() <= 1.0


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (b"", "empty"),
        (b"this is not audio at all" * 50, "could not decode"),
        (_wav_bytes(np.zeros((0, 2)), SR), "0 samples"),
    ],
)
def test_decode_rejects_garbage(data: bytes, message: str) -> None:
    with pytest.raises(AudioDecodeError, match=message):
        decode_audio(data)


def test_numpy_resampler_passes_band_and_stops_alias() -> None:
    rate_in, up, down = 96_000, 1, 2
    t = np.arange(rate_in) / rate_in
    passband = np.sin(2 * np.pi * 5_000 * t)  # kept at 48 kHz
    alias = np.sin(2 * np.pi * 30_000 * t)  # above the new Nyquist (24 kHz): must be filtered, not folded to 18 kHz
    out_pass = resample_poly_numpy(passband[None], up=up, down=down)[0]
    out_alias = resample_poly_numpy(alias[None], up=up, down=down)[0]
    assert out_pass.size == 48_000
    mid = slice(1000, -1000)
    assert abs(np.sqrt(np.mean(out_pass[mid] ** 2)) - np.sqrt(0.5)) < 0.01
    assert np.sqrt(np.mean(out_alias[mid] ** 2)) < 0.01  # better than -37 dB
