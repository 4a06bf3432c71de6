"""Post-processing the orchestrator runs after the sampler: audio files in the requested format, uploads decoded to
the sampler's 48 kHz stereo, and the album cover (built-in renderer or an external image API)."""

from orchestrator.media.audio import AUDIO_FORMATS, AudioDecodeError, decode_audio, encode_audio
from orchestrator.media.cover import render_cover
from orchestrator.media.cover_fetch import CoverFetchError, fetch_cover
from orchestrator.media.cover_layout import COVER_ASPECTS, cover_size

__all__ = [
    "AUDIO_FORMATS",
    "COVER_ASPECTS",
    "AudioDecodeError",
    "CoverFetchError",
    "cover_size",
    "decode_audio",
    "encode_audio",
    "fetch_cover",
    "render_cover",
]
