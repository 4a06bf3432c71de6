"""Metadata tags in every delivered audio file, written with ``mutagen`` (never by hand).

What each file carries: title, artist and album (settings ``tag_artist`` / ``tag_album``), the lyrics, the cover art,
and the seed and model in a comment. Timed lyrics (``align_lyrics``) go where the format has a field for them:

* **FLAC** (Vorbis comments): ``TITLE``, ``ARTIST``, ``ALBUM``, ``LYRICS`` (the LRC text when timed, else the plain
  lyrics), ``UNSYNCEDLYRICS`` (plain), ``COMMENT``, and the cover as a FLAC picture block (front cover).
* **MP3** and **WAV** (an ID3v2.4 tag; in WAV the RIFF ``id3 `` chunk): ``TIT2``, ``TPE1``, ``TALB``, ``USLT`` (plain
  lyrics), ``SYLT`` (one entry per sung line, in milliseconds, when timed), ``COMM`` and ``APIC`` (front cover).
"""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass
from pathlib import Path

logger = logging.getLogger(__name__)

_LRC_LINE = re.compile(r"^\[(\d+):(\d{2}(?:\.\d+)?)\](.*)$")


@dataclass(frozen=True)
class SongTags:
    title: str
    artist: str
    album: str
    lyrics: str = ""
    lrc: str = ""  # "[mm:ss.xx]line" per sung line ('#' lines are comments)
    comment: str = ""
    cover: Path | None = None
    language: str = "eng"  # ISO 639-2, for the ID3 lyric frames


def synced_lines(lrc: str) -> list[tuple[str, int]]:
    """LRC text -> (line, start in ms) for its timed lines."""
    out = []
    for raw in lrc.splitlines():
        match = _LRC_LINE.match(raw.strip())
        if match:
            out.append((match.group(3), round((int(match.group(1)) * 60 + float(match.group(2))) * 1000)))
    return out


def _id3_frames(tags: SongTags) -> list[object]:
    from mutagen.id3 import APIC, COMM, SYLT, TALB, TIT2, TPE1, USLT, Encoding

    utf8 = Encoding.UTF8
    frames: list[object] = [
        TIT2(encoding=utf8, text=tags.title),
        TPE1(encoding=utf8, text=tags.artist),
        TALB(encoding=utf8, text=tags.album),
        COMM(encoding=utf8, lang="eng", desc="", text=tags.comment),
    ]
    if tags.lyrics:
        frames.append(USLT(encoding=utf8, lang=tags.language, desc="", text=tags.lyrics))
    timed = synced_lines(tags.lrc)
    if timed:  # format 2: absolute milliseconds; type 1: lyrics
        frames.append(SYLT(encoding=utf8, lang=tags.language, format=2, type=1, desc="", text=timed))
    if tags.cover is not None and tags.cover.is_file():
        frames.append(APIC(encoding=utf8, mime="image/png", type=3, desc="cover", data=tags.cover.read_bytes()))
    return frames


def _tag_flac(path: Path, tags: SongTags) -> None:
    from mutagen.flac import FLAC, Picture

    audio = FLAC(path)
    audio["TITLE"], audio["ARTIST"], audio["ALBUM"] = tags.title, tags.artist, tags.album
    audio["COMMENT"] = tags.comment
    if tags.lyrics or tags.lrc:
        audio["LYRICS"] = tags.lrc or tags.lyrics
    if tags.lyrics:
        audio["UNSYNCEDLYRICS"] = tags.lyrics
    if tags.cover is not None and tags.cover.is_file():
        from PIL import Image

        picture = Picture()
        picture.type, picture.mime, picture.desc = 3, "image/png", "cover"
        picture.data = tags.cover.read_bytes()
        with Image.open(tags.cover) as image:
            picture.width, picture.height = image.size
        picture.depth = 24
        audio.clear_pictures()
        audio.add_picture(picture)
    audio.save()


def _tag_id3(path: Path, tags: SongTags, *, wave: bool) -> None:
    if wave:
        from mutagen.wave import WAVE

        audio = WAVE(path)
        if audio.tags is None:
            audio.add_tags()
        id3 = audio.tags
    else:
        from mutagen.id3 import ID3, ID3NoHeaderError

        try:
            id3 = ID3(path)
        except ID3NoHeaderError:
            id3 = ID3()
    assert id3 is not None
    for frame in _id3_frames(tags):
        id3.add(frame)
    if wave:
        audio.save()
    else:
        id3.save(path, v2_version=4)


def write_tags(path: Path, tags: SongTags) -> None:
    """Tag ``path`` (by its suffix: .flac, .mp3, .wav); ``ValueError`` naming the suffix otherwise."""
    suffix = path.suffix.lower()
    if suffix == ".flac":
        _tag_flac(path, tags)
    elif suffix in (".mp3", ".wav"):
        _tag_id3(path, tags, wave=suffix == ".wav")
    else:
        raise ValueError(f"cannot tag {path.name}: suffix {suffix!r} is not .flac, .mp3 or .wav")
    logger.debug("tagged %s (%s, synced lines: %d)", path, suffix, len(synced_lines(tags.lrc)))
