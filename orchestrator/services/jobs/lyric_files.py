"""Per item lyric timing in the job's result, and its ``.lrc`` file beside the audio (same name, so players find it).

The sampler's done event carries ``alignment`` (one ``{lrc, aligned_lyrics, alignment_score}`` per item) when the
request set ``align_lyrics``; items without it get no timing fields.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

logger = logging.getLogger(__name__)


def item_lyrics(alignment: list[dict[str, Any]] | None, index: int, audio: Path) -> dict[str, Any]:
    """The timing fields of item ``index`` for the result (``lrc_file``: the .lrc written beside ``audio``)."""
    if not alignment or index >= len(alignment):
        return {}
    timing = alignment[index]
    lrc = str(timing.get("lrc") or "")
    out: dict[str, Any] = {
        "lrc": lrc,
        "aligned_lyrics": list(timing.get("aligned_lyrics") or []),
        "alignment_score": float(timing.get("alignment_score") or 0.0),
        "lrc_file": None,
    }
    if lrc:
        path = audio.with_suffix(".lrc")
        path.write_text(lrc + "\n", encoding="utf-8")
        out["lrc_file"] = path.name
        logger.debug("wrote %s (%d lines)", path, lrc.count("\n") + 1)
    return out
