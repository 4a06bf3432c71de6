"""Tag the job's encoded items (after the cover exists): title, artist/album, lyrics (timed where the format has a
field), cover art, seed and model (``orchestrator/media/tags.py``)."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from orchestrator.media.tags import SongTags, write_tags

logger = logging.getLogger(__name__)

# ISO 639-1 (the APIs' vocal_language) -> ISO 639-2 (ID3's lyric frames) for the common ones; others: "und".
_ISO639_2 = {"en": "eng", "zh": "zho", "ja": "jpn", "ko": "kor", "es": "spa", "fr": "fra", "de": "deu", "it": "ita",
             "pt": "por", "ru": "rus"}


def tag_items(
    directory: Path, items: list[dict[str, Any]], *, title: str, artist: str, album: str, lyrics: str,
    model: str, cover: Path | None, language: str | None,
) -> None:
    for item in items:
        tags = SongTags(
            title=title,
            artist=artist,
            album=album,
            lyrics=lyrics,
            lrc=str(item.get("lrc") or ""),
            comment=f"seed={item.get('seed')} model={model}",
            cover=cover,
            language=_ISO639_2.get((language or "en").lower(), "und"),
        )
        write_tags(directory / str(item["file"]), tags)
