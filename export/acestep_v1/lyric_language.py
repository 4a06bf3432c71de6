"""Lyric language detection lives in :mod:`model_repository.acestep_v1.lyrics.language` (serving-time code); this module
re-exports it for the export side."""

from model_repository.acestep_v1.lyrics.language import LyricLanguageDetector  # noqa: F401
