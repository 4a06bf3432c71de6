"""Lyric timing as the APIs return it (per item): the LRC text and its file, word/character times, the score.

Computed by the sampler from the DiT's cross-attention when a request sets ``align_lyrics``
(``docs/lyric-alignment.md``); the word shape is Suno's ``get_aligned_lyrics``.
"""

from __future__ import annotations

from pydantic import BaseModel, Field

ALIGN_LYRICS_DESCRIPTION = (
    "time the lyrics (ACE-Step 1.5 models): each item gets lrc, aligned_lyrics and alignment_score, and a .lrc file "
    "beside its audio; costs one extra DiT evaluation and the alignment per song (off by default)"
)


class AlignedWord(BaseModel):
    word: str = Field(description="a word, or one character of CJK text")
    start_s: float
    end_s: float
    success: bool = Field(description="the attention found this word (its peak alignment energy passed 0.1)")
    p_align: float = Field(ge=0.0, le=1.0, description="mean alignment energy along the path over the word")


class ItemLyrics(BaseModel):
    """The timing fields of one item (all null when the request did not ask for them)."""

    lrc: str | None = Field(default=None, description="[mm:ss.xx] per sung line; section tags as '# [Verse]' lines")
    lrc_url: str | None = None
    aligned_lyrics: list[AlignedWord] | None = None
    alignment_score: float | None = Field(default=None, ge=0.0, le=1.0)
