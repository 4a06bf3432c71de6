"""Lyric language detection lives in :mod:`model_repository.acestep_v1_lyrics.language` (serving-time code); this module
re-exports it for the export side."""

from model_repository.acestep_v1_lyrics.language import LyricLanguageDetector  # noqa: F401
