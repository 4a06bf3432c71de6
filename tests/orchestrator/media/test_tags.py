"""Tags written by ``orchestrator/media/tags.py`` read back with the same library (mutagen), per format."""

from __future__ import annotations

import numpy as np
import pytest
from mutagen.flac import FLAC
from mutagen.id3 import ID3
from mutagen.wave import WAVE
from PIL import Image

from orchestrator.media.audio import encode_audio
from orchestrator.media.tags import SongTags, synced_lines, write_tags

LYRICS = "[Verse]\nhello world\n你好"
LRC = "# [Verse]\n[00:01.50]hello world\n[01:02.25]你好"


@pytest.fixture
def tags(tmp_path):
    cover = tmp_path / "cover.png"
    Image.new("RGB", (32, 24), (200, 10, 10)).save(cover)
    return SongTags(title="Sea", artist="Tritone", album="Demo", lyrics=LYRICS, lrc=LRC,
                    comment="seed=7 model=acestep-v15-turbo", cover=cover, language="eng")


def _audio(tmp_path, fmt: str):
    wave = (0.1 * np.sin(np.linspace(0, 400, 48000 * 2))).astype(np.float32)
    suffix = "wav" if fmt == "wav32" else fmt
    return encode_audio(np.stack([wave, wave]), sample_rate=48000, fmt=fmt, path=tmp_path / f"item_0.{suffix}")


def test_synced_lines_skip_comments():
    assert synced_lines(LRC) == [("hello world", 1500), ("你好", 62250)]


def test_flac_carries_vorbis_comments_timed_lyrics_and_the_cover(tmp_path, tags):
    path = _audio(tmp_path, "flac")
    write_tags(path, tags)
    audio = FLAC(path)
    assert audio["TITLE"] == ["Sea"] and audio["ARTIST"] == ["Tritone"] and audio["ALBUM"] == ["Demo"]
    assert audio["LYRICS"] == [LRC] and audio["UNSYNCEDLYRICS"] == [LYRICS]
    assert audio["COMMENT"] == ["seed=7 model=acestep-v15-turbo"]
    (picture,) = audio.pictures
    assert picture.type == 3 and (picture.width, picture.height) == (32, 24)
    assert picture.data == tags.cover.read_bytes()
    assert audio.info.sample_rate == 48000  # still a valid stream


@pytest.mark.parametrize("fmt", ["mp3", "wav", "wav32"])
def test_mp3_and_wav_carry_id3_with_sylt(tmp_path, tags, fmt):
    path = _audio(tmp_path, fmt)
    write_tags(path, tags)
    id3 = WAVE(path).tags if path.suffix == ".wav" else ID3(path)
    assert str(id3["TIT2"]) == "Sea" and str(id3["TPE1"]) == "Tritone" and str(id3["TALB"]) == "Demo"
    assert id3.getall("USLT")[0].text == LYRICS
    assert id3.getall("SYLT")[0].text == [("hello world", 1500), ("你好", 62250)]
    assert id3.getall("COMM")[0].text == ["seed=7 model=acestep-v15-turbo"]
    assert id3.getall("APIC")[0].data == tags.cover.read_bytes()


def test_untimed_songs_get_plain_lyrics_only(tmp_path, tags):
    plain = SongTags(title="Sea", artist="A", album="B", lyrics=LYRICS, comment="seed=1 model=m")
    flac, mp3 = _audio(tmp_path, "flac"), _audio(tmp_path, "mp3")
    write_tags(flac, plain)
    write_tags(mp3, plain)
    assert FLAC(flac)["LYRICS"] == [LYRICS] and not FLAC(flac).pictures
    assert not ID3(mp3).getall("SYLT") and ID3(mp3).getall("USLT")[0].text == LYRICS


def test_an_unknown_suffix_is_named(tmp_path, tags):
    with pytest.raises(ValueError, match=r"\.ogg"):
        write_tags(tmp_path / "x.ogg", tags)
