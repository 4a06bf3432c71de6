"""Read an upload's header — and only its header — before any decode or resample: a few KB that declare a 1 Hz rate
or billions of frames would otherwise cost gigabytes and seconds of CPU before a duration check could refuse them.

:func:`check_header` raises :class:`AudioHeaderError` naming the header field (``sample_rate``, ``channels``,
``frames``, ``duration``) and what is accepted.
"""

from __future__ import annotations

import io
from dataclasses import dataclass

import soundfile as sf

MIN_RATE = 8_000
MAX_RATE = 192_000
MAX_CHANNELS = 8
# Decoded samples (frames x channels) an upload may have: 10 min of 48 kHz stereo, doubled for headroom.
MAX_DECODED_SAMPLES = 600 * 48_000 * 2 * 2


class AudioHeaderError(ValueError):
    def __init__(self, field: str, message: str) -> None:
        super().__init__(message)
        self.field = field
        self.message = message


@dataclass(frozen=True)
class AudioHeader:
    sample_rate: int
    channels: int
    frames: int
    format: str

    @property
    def seconds(self) -> float:
        return self.frames / self.sample_rate


def check_header(data: bytes, *, max_seconds: float) -> AudioHeader:
    """The upload's declared layout, refused when decoding it would be unreasonable."""
    try:
        info = sf.info(io.BytesIO(data))
    except (sf.LibsndfileError, RuntimeError, TypeError, ValueError) as exc:
        raise AudioHeaderError(
            "format",
            f"could not decode the audio header ({len(data)} bytes): {exc}; supported: WAV, FLAC, OGG, MP3, AIFF",
        ) from None
    header = AudioHeader(int(info.samplerate), int(info.channels), int(info.frames), str(info.format))
    if not MIN_RATE <= header.sample_rate <= MAX_RATE:
        raise AudioHeaderError(
            "sample_rate",
            f"the file declares a sample rate of {header.sample_rate} Hz; accepted: {MIN_RATE}-{MAX_RATE} Hz",
        )
    if not 1 <= header.channels <= MAX_CHANNELS:
        raise AudioHeaderError("channels", f"the file declares {header.channels} channels; accepted: 1-{MAX_CHANNELS}")
    if header.frames <= 0:
        raise AudioHeaderError("frames", "the file declares no audio frames; send a file that contains sound")
    if header.frames * header.channels > MAX_DECODED_SAMPLES:
        raise AudioHeaderError(
            "frames",
            f"the file declares {header.frames} frames x {header.channels} channels; at most {MAX_DECODED_SAMPLES} "
            "samples are decoded",
        )
    if header.seconds > max_seconds:
        raise AudioHeaderError(
            "duration", f"the file declares {header.seconds:.0f} s of audio; at most {max_seconds:g} s is accepted"
        )
    return header
