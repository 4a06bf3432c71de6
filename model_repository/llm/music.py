"""Musical value ranges and their normalisation, shared by the lyricist, the 5 Hz LM and the request validators.

The ranges follow ACE-Step 1.5 (``acestep/constants.py``): bpm 30–300, duration 10–600 s, time signatures 2/3/4/6
(beats per bar; 6 stands for 6/8), and a key is a note name with an optional accidental plus ``major``/``minor``.
"""

from __future__ import annotations

import re

BPM_MIN, BPM_MAX = 30, 300
DURATION_MIN, DURATION_MAX = 10, 600
TIME_SIGNATURES: tuple[int, ...] = (2, 3, 4, 6)

# The 5 Hz LM writes one audio code per 200 ms: 5 codes per second of audio. The DiT's latent runs at 25 Hz
# (48 kHz / 1920 samples per latent frame), so each code stands for 5 latent frames.
CODES_PER_SECOND = 5
# The 5 Hz LM's codebook: tokens <|audio_code_0|> .. <|audio_code_63999|>.
AUDIO_CODEBOOK_SIZE = 64000

# Every pitch class with its usual spellings (sharps and flats, no double accidentals, no E#/B#/Cb/Fb), in both
# modes: 17 tonics x 2 modes = 34 keys. The LM and lyricist choose among these; user input is normalised onto them.
_TONICS = ("C", "C#", "Db", "D", "D#", "Eb", "E", "F", "F#", "Gb", "G", "G#", "Ab", "A", "A#", "Bb", "B")
KEY_SCALES: tuple[str, ...] = tuple(f"{t} {m}" for m in ("major", "minor") for t in _TONICS)
_KEY_RE = re.compile(r"^\s*([A-Ga-g])\s*([#♯b♭]?)\s*(major|minor|maj|min|m)?\s*$", re.IGNORECASE)

# ISO 639 codes ACE-Step 1.5 knows as vocal languages (``VALID_LANGUAGES`` upstream) plus "unknown".
VOCAL_LANGUAGES: tuple[str, ...] = (
    "ar", "az", "bg", "bn", "ca", "cs", "da", "de", "el", "en", "es", "fa", "fi", "fr", "he", "hi", "hr", "ht", "hu",
    "id", "is", "it", "ja", "ko", "la", "lt", "ms", "ne", "nl", "no", "pa", "pl", "pt", "ro", "ru", "sa", "sk", "sr",
    "sv", "sw", "ta", "te", "th", "tl", "tr", "uk", "ur", "vi", "yue", "zh", "unknown",
)  # fmt: skip

TRACK_CLASSES: tuple[str, ...] = (
    "drums", "bass", "guitar", "keyboard", "strings", "synth", "brass", "woodwinds", "percussion", "fx", "vocals",
    "backing_vocals",
)  # fmt: skip

# Song-structure tags the lyricist may use, in the order a song usually visits them.
STRUCTURE_TAGS: tuple[str, ...] = (
    "Intro", "Verse 1", "Pre-Chorus", "Chorus", "Verse 2", "Verse 3", "Bridge", "Post-Chorus", "Hook",
    "Interlude", "Break", "Instrumental", "Outro",
)  # fmt: skip


def normalize_key_scale(value: str) -> str | None:
    """``"c# Minor"`` → ``"C# minor"``, ``"B♭ major"`` → ``"Bb major"``, ``"Am"`` → ``"A minor"``; ``None`` when
    the text is not a key among :data:`KEY_SCALES`."""
    m = _KEY_RE.match(value)
    if not m:
        return None
    note, acc, mode = m.group(1).upper(), m.group(2), (m.group(3) or "major").lower()
    acc = {"♯": "#", "♭": "b"}.get(acc, acc)
    mode = "minor" if mode in ("minor", "min", "m") else "major"
    key = f"{note}{acc} {mode}"
    return key if key in KEY_SCALES else None


def normalize_time_signature(value: object) -> int | None:
    """``4``, ``"4"``, ``"4/4"`` → 4; ``"6/8"`` → 6; ``None`` when not one of :data:`TIME_SIGNATURES`."""
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value if value in TIME_SIGNATURES else None
    if isinstance(value, float) and value.is_integer():
        return normalize_time_signature(int(value))
    if isinstance(value, str):
        m = re.fullmatch(r"\s*(\d)\s*(?:/\s*(\d+)\s*)?", value)
        if m:
            return normalize_time_signature(int(m.group(1)))
    return None


def codes_for_duration(duration_s: float) -> int:
    """How many 5 Hz audio codes cover ``duration_s`` seconds."""
    return int(round(duration_s * CODES_PER_SECOND))


# Section order of a full-length pop song; shorter songs keep the sections with the highest priority below.
_CANONICAL_SONG: tuple[str, ...] = (
    "Intro", "Verse 1", "Pre-Chorus", "Chorus", "Verse 2", "Pre-Chorus", "Chorus", "Bridge", "Chorus", "Outro",
    "Interlude", "Chorus",
)  # fmt: skip
_SECTION_PRIORITY: tuple[int, ...] = (1, 3, 9, 0, 4, 6, 7, 2, 5, 8, 10, 11)
# A sung lyric line lasts about 5.5 s at pop tempos: lines ~= 0.18 x seconds (220 s -> ~40 lines).
_LINES_PER_SECOND = 0.18
# About one section per 25 s (220 s -> 9 sections).
_SECONDS_PER_SECTION = 25.0


def song_shape(duration_s: float) -> tuple[int, int, tuple[str, ...]]:
    """``(target_lines, target_sections, example_structure)`` for a song of ``duration_s`` seconds."""
    sections = max(2, min(len(_CANONICAL_SONG), round(duration_s / _SECONDS_PER_SECTION)))
    lines = max(2, round(duration_s * _LINES_PER_SECOND))
    keep = sorted(_SECTION_PRIORITY[:sections])
    return lines, sections, tuple(_CANONICAL_SONG[i] for i in keep)
