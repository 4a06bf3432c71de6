"""Audio files in and out of the orchestrator.

``encode_audio`` turns the sampler's 48 kHz stereo float waveform into the file formats the song API offers;
``decode_audio`` turns a user's upload (cover / repaint source, reference audio) into the waveform the sampler takes.
Both sides work on channel-first float32 arrays ``[2, samples]``.
"""

from __future__ import annotations

import io
import logging
import math
import os
import tempfile
from pathlib import Path
from typing import Literal

import numpy as np
import soundfile as sf

logger = logging.getLogger(__name__)

AudioFormat = Literal["flac", "wav", "wav32", "mp3"]
AUDIO_FORMATS: tuple[str, ...] = ("flac", "wav", "wav32", "mp3")

# ACE-Step's VAE works at 48 kHz; one latent frame covers 1920 samples, so latents run at 48000 / 1920 = 25 Hz.
SAMPLE_RATE = 48_000

# (soundfile container, soundfile subtype, file suffix) per format.
_SOUNDFILE_LAYOUT: dict[str, tuple[str, str, str]] = {
    "flac": ("FLAC", "PCM_24", ".flac"),  # 24-bit lossless
    "wav": ("WAV", "PCM_16", ".wav"),  # 16-bit PCM, the most compatible WAV
    "wav32": ("WAV", "FLOAT", ".wav"),  # 32-bit float WAV for mastering; values above 1.0 would survive, we still cap
}

# Peak ceilings. PCM formats hold [-1, 1) exactly. A lossy MP3 re-synthesises the waveform and overshoots the
# original peaks by up to ~1 dB on loud material, so it gets -1 dBFS of headroom (10 ** (-1 / 20) = 0.891): a
# decoder then never has to clip. The sampler already peak-normalises to -1 dBFS, so its output passes untouched.
_PCM_CEILING = 1.0
_MP3_CEILING = 10.0 ** (-1.0 / 20.0)

# MPEG-1 Layer III sample rates (LAME resamples anything else, which we do not want behind the caller's back).
_MP3_RATES = (32_000, 44_100, 48_000)
_MP3_BITRATE_KBPS = 320  # CBR 320 kb/s: the highest MPEG-1 Layer III rate; ~2.4 MB per minute
_MP3_QUALITY = 2  # LAME's algorithm quality: 2 = "near best", the usual choice for 320 kb/s

# Uploads larger than this are refused before decoding (10 min of 48 kHz stereo float32 WAV is ~230 MB).
MAX_UPLOAD_BYTES = 256 * 1024 * 1024

# Resampler: Kaiser-windowed sinc, 10 zero crossings each side at the lower of the two rates; beta 5 puts the
# first sidelobes near -55 dB, the same design scipy.signal.resample_poly uses by default.
_RESAMPLE_HALF_ZEROS = 10
_RESAMPLE_KAISER_BETA = 5.0
_RESAMPLE_CHUNK = 1 << 16  # output samples computed per vectorised block (bounds memory for 10-minute uploads)


class AudioDecodeError(ValueError):
    """An uploaded file is empty, not audio, or not decodable by libsndfile."""


def encode_audio(audio: np.ndarray, *, sample_rate: int, fmt: AudioFormat, path: Path, fit: bool = True) -> Path:
    """Write ``audio`` ([channels, samples] float, normally [2, n] at 48 kHz) as ``fmt`` next to ``path``.

    The suffix of ``path`` is replaced by the format's (``.flac``, ``.wav``, ``.mp3``); the file is written to a
    temporary name and renamed, so a reader never sees half a file. Audio louder than the format allows is scaled
    down as a whole (never hard-clipped); NaN or Inf is an error. ``fit=False`` keeps the level as it is (``wav32``
    only: float holds any level; stems keep theirs so that they still add up). Returns the written path.
    """
    if fmt not in AUDIO_FORMATS:
        raise ValueError(f"audio_format must be one of {', '.join(AUDIO_FORMATS)}; got {fmt!r}")
    if not isinstance(sample_rate, int) or sample_rate <= 0:
        raise ValueError(f"sample_rate must be a positive integer in Hz, got {sample_rate!r}")
    if not fit and fmt != "wav32":
        raise ValueError(f"fit=False needs audio_format wav32 (float); {fmt} holds at most full scale")
    wave = _as_channel_first(audio)
    if fit:
        wave = _fit_peak(wave, _MP3_CEILING if fmt == "mp3" else _PCM_CEILING)

    suffix = ".mp3" if fmt == "mp3" else _SOUNDFILE_LAYOUT[fmt][2]
    out = Path(path).with_suffix(suffix)
    out.parent.mkdir(parents=True, exist_ok=True)
    if fmt == "mp3":
        payload = _encode_mp3(wave, sample_rate)
    else:
        container, subtype, _ = _SOUNDFILE_LAYOUT[fmt]
        buffer = io.BytesIO()
        # soundfile takes [frames, channels].
        sf.write(buffer, wave.T, sample_rate, format=container, subtype=subtype)
        payload = buffer.getvalue()
    write_atomically(out, payload)
    logger.debug("wrote %s (%s, %d samples at %d Hz, %d bytes)", out, fmt, wave.shape[1], sample_rate, len(payload))
    return out


def decode_audio(data: bytes, *, target_rate: int = SAMPLE_RATE) -> np.ndarray:
    """Decode an uploaded file (WAV, FLAC, OGG/Vorbis, MP3, AIFF …) to float32 ``[2, samples]`` at ``target_rate``.

    Mono is duplicated to both channels; more than two channels are folded down to stereo; other sample rates are
    resampled with a polyphase windowed-sinc filter. Raises :class:`AudioDecodeError` naming the problem.
    """
    if target_rate <= 0:
        raise ValueError(f"target_rate must be a positive integer in Hz, got {target_rate!r}")
    if not data:
        raise AudioDecodeError("the uploaded audio is empty (0 bytes); send a WAV, FLAC, OGG or MP3 file")
    if len(data) > MAX_UPLOAD_BYTES:
        raise AudioDecodeError(
            f"the uploaded audio is {len(data)} bytes; the limit is {MAX_UPLOAD_BYTES} bytes (about 10 minutes of "
            "uncompressed 48 kHz stereo); send FLAC or MP3 instead"
        )
    try:
        frames, rate = sf.read(io.BytesIO(data), dtype="float32", always_2d=True)
    except (sf.LibsndfileError, RuntimeError, TypeError, ValueError) as exc:
        raise AudioDecodeError(
            f"could not decode the uploaded audio ({len(data)} bytes): {exc}; supported: WAV, FLAC, OGG, MP3, AIFF"
        ) from exc
    if frames.shape[0] == 0:
        raise AudioDecodeError("the uploaded audio decodes to 0 samples; send a file that contains sound")
    if not np.isfinite(frames).all():
        raise AudioDecodeError("the uploaded audio contains NaN or infinite samples (a broken float WAV?)")

    stereo = _to_stereo(frames.T)
    if rate != target_rate:
        stereo = resample(stereo, orig_rate=int(rate), target_rate=target_rate)
    return np.ascontiguousarray(stereo, dtype=np.float32)


def resample(audio: np.ndarray, *, orig_rate: int, target_rate: int) -> np.ndarray:
    """Resample ``[channels, samples]`` from ``orig_rate`` to ``target_rate`` (polyphase, windowed sinc).

    Uses ``scipy.signal.resample_poly`` when scipy is installed, else an equivalent numpy implementation.
    Output length is ``ceil(samples * target_rate / orig_rate)``.
    """
    if orig_rate <= 0 or target_rate <= 0:
        raise ValueError(f"sample rates must be positive, got {orig_rate} -> {target_rate}")
    if orig_rate == target_rate:
        return audio.astype(np.float32, copy=False)
    g = math.gcd(orig_rate, target_rate)
    up, down = target_rate // g, orig_rate // g
    try:
        from scipy.signal import resample_poly  # type: ignore[import-untyped]
    except ImportError:
        return resample_poly_numpy(audio, up=up, down=down)
    return np.asarray(resample_poly(audio, up, down, axis=-1), dtype=np.float32)


def resample_poly_numpy(audio: np.ndarray, *, up: int, down: int) -> np.ndarray:
    """Rational resampling by ``up / down`` of ``[channels, samples]``: zero-stuff, low-pass, decimate — computed
    polyphase, i.e. only the filter taps that meet real input samples are evaluated."""
    if up < 1 or down < 1:
        raise ValueError(f"up and down must be >= 1, got {up}/{down}")
    g = math.gcd(up, down)
    up, down = up // g, down // g
    x = np.asarray(audio, dtype=np.float64)
    if up == down == 1:
        return x.astype(np.float32)
    n_in = x.shape[-1]
    n_out = -(-n_in * up // down)  # ceil

    # Low-pass prototype at the upsampled rate; cut-off at the lower Nyquist of the two rates.
    factor = max(up, down)
    half = _RESAMPLE_HALF_ZEROS * factor
    taps = np.arange(-half, half + 1, dtype=np.float64)
    cutoff = 1.0 / factor  # as a fraction of the upsampled Nyquist
    h = cutoff * np.sinc(cutoff * taps) * np.kaiser(taps.size, _RESAMPLE_KAISER_BETA)
    h *= up / h.sum()  # unit DC gain after zero-stuffing by `up`

    # y[n] = sum_j x[j] * h[n*down + half - j*up]. For output n, t = n*down + half; the taps that meet samples are
    # h[p], h[p+up], h[p+2up], ... with p = t mod up, against x[(t-p)/up], x[(t-p)/up - 1], ...
    per_phase = -(-h.size // up)
    poly = np.zeros((up, per_phase), dtype=np.float64)
    for p in range(up):
        branch = h[p::up]
        poly[p, : branch.size] = branch
    pad_left = per_phase
    pad_right = per_phase + half // up + 2
    xp = np.pad(x, [(0, 0)] * (x.ndim - 1) + [(pad_left, pad_right)])
    out = np.empty(x.shape[:-1] + (n_out,), dtype=np.float32)
    offsets = np.arange(per_phase)
    for start in range(0, n_out, _RESAMPLE_CHUNK):
        n = np.arange(start, min(start + _RESAMPLE_CHUNK, n_out))
        t = n * down + half
        phases = t % up
        base = (t - phases) // up + pad_left
        idx = base[:, None] - offsets[None, :]  # [block, per_phase] indices into the padded input
        out[..., start : start + n.size] = np.einsum("...nk,nk->...n", xp[..., idx], poly[phases])
    return out


def _as_channel_first(audio: np.ndarray) -> np.ndarray:
    wave = np.asarray(audio)
    if wave.ndim == 1:
        wave = wave[None, :]
    if wave.ndim != 2 or wave.shape[0] not in (1, 2):
        raise ValueError(f"audio must be [channels, samples] with 1 or 2 channels (48 kHz stereo); got {wave.shape}")
    if wave.shape[1] == 0:
        raise ValueError("audio has 0 samples; nothing to encode")
    if not np.issubdtype(wave.dtype, np.floating):
        raise ValueError(f"audio must be floating point in [-1, 1]; got dtype {wave.dtype}")
    wave = wave.astype(np.float32, copy=False)
    if not np.isfinite(wave).all():
        bad = int(np.size(wave) - np.isfinite(wave).sum())
        raise ValueError(f"audio contains {bad} NaN/Inf samples; the model output is broken (check the decoder dtype)")
    return wave


def _fit_peak(wave: np.ndarray, ceiling: float) -> np.ndarray:
    """Scale the whole signal down when its peak exceeds ``ceiling`` (keeps the shape; no clipping)."""
    peak = float(np.max(np.abs(wave)))
    if peak <= ceiling:
        return wave
    logger.info("audio peak %.3f exceeds %.3f: scaling by %.4f instead of clipping", peak, ceiling, ceiling / peak)
    # Multiply in float64 and nudge below the ceiling so float32 rounding cannot land a sample above it.
    scaled = wave.astype(np.float64) * (ceiling / peak) * (1.0 - 1e-6)
    return scaled.astype(np.float32)


def _encode_mp3(wave: np.ndarray, sample_rate: int) -> bytes:
    import lameenc

    if sample_rate not in _MP3_RATES:
        raise ValueError(f"mp3 needs a sample rate of {_MP3_RATES} Hz, got {sample_rate}; resample first")
    channels = wave.shape[0]
    # Interleaved little-endian int16; round to nearest (peaks are already below full scale).
    pcm = np.clip(np.rint(wave.T * 32767.0), -32768, 32767).astype("<i2")
    encoder = lameenc.Encoder()
    encoder.set_bit_rate(_MP3_BITRATE_KBPS)
    encoder.set_in_sample_rate(sample_rate)
    encoder.set_out_sample_rate(sample_rate)
    encoder.set_channels(channels)
    encoder.set_quality(_MP3_QUALITY)
    return bytes(encoder.encode(pcm.tobytes())) + bytes(encoder.flush())


def _to_stereo(wave: np.ndarray) -> np.ndarray:
    """[channels, samples] → [2, samples]. Mono is duplicated. For more channels, 0 and 1 are taken as front
    left/right and every further channel (centre, surrounds, …) is added to both sides at -3 dB (0.7071), then the
    sum is scaled by 1 / (1 + 0.7071 * extra) so a full-scale input stays within full scale."""
    channels = wave.shape[0]
    if channels == 1:
        return np.repeat(wave, 2, axis=0)
    if channels == 2:
        return wave
    extra = channels - 2
    side = math.sqrt(0.5) * wave[2:].sum(axis=0)
    gain = 1.0 / (1.0 + math.sqrt(0.5) * extra)
    return np.stack([(wave[0] + side) * gain, (wave[1] + side) * gain]).astype(np.float32)


def write_atomically(path: Path, payload: bytes) -> Path:
    """Write ``payload`` to a temporary file beside ``path`` and rename it into place (readers never see half)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".part", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(payload)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path
