"""Lyric timing served through a real tritonserver (tiny repository, ACE-Step 1.5 turbo).

The tiny DiT's random weights give meaningless times, so these assert the structure: every sung line in the LRC in
order, section tags only as comments, per-word (per CJK character) times monotonic and inside the song, the score in
[0, 1], the timing calls of songs that finish together batched into one ``dit_align`` call, and a song's timing in a
batch equal to its timing alone.
"""

from __future__ import annotations

import re
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest

from tests.model_repository.sampler.live import delta, dit_counts
from tests.model_repository.streaming import stream

pytestmark = pytest.mark.triton

LYRICS = "[Verse]\nhold the line tonight\nwe sing along\n\n[Chorus]\n你好世界\nla la la"
SUNG_LINES = ["hold the line tonight", "we sing along", "你好世界", "la la la"]
WORDS = ["hold", "the", "line", "tonight", "we", "sing", "along", "你", "好", "世", "界", "la", "la", "la"]


def song(i: int, **extra: Any) -> dict[str, Any]:
    return {"caption": f"song {i}", "lyrics": LYRICS, "duration": 12.0 + 0.5 * i, "inference_steps": 4,
            "seeds": [i], "version_set": "turbo", "align_lyrics": True} | extra


def _check(item: dict[str, Any], duration: float) -> None:
    lines = item["lrc"].splitlines()
    assert [ln for ln in lines if ln.startswith("#")] == ["# [Verse]", "# [Chorus]"]
    timed = [ln for ln in lines if not ln.startswith("#")]
    assert [re.sub(r"^\[\d\d:\d\d\.\d\d\]", "", ln) for ln in timed] == SUNG_LINES
    stamps = [int(ln[1:3]) * 60 + float(ln[4:9]) for ln in timed]
    assert stamps == sorted(stamps) and all(0.0 <= s <= duration for s in stamps)
    words = item["aligned_lyrics"]
    assert [w["word"] for w in words] == WORDS
    assert set(words[0]) == {"word", "start_s", "end_s", "success", "p_align"}
    starts = [w["start_s"] for w in words]
    assert starts == sorted(starts)
    assert all(0.0 <= w["start_s"] <= w["end_s"] <= duration + 1e-6 for w in words)
    assert all(isinstance(w["success"], bool) and 0.0 <= w["p_align"] <= 1.0 for w in words)
    assert 0.0 <= item["alignment_score"] <= 1.0


def test_aligned_lyrics_batch_across_songs_and_equal_each_song_alone(triton):
    alone = stream(triton.grpc_url, "sampler", song(0))
    assert alone.error is None, alone.error
    done = alone.final
    assert done["type"] == "done" and len(done["alignment"]) == 1
    _check(done["alignment"][0], done["duration"])

    before = dit_counts(triton, "dit_align")
    with ThreadPoolExecutor(3) as pool:
        results = list(pool.map(lambda r: stream(triton.grpc_url, "sampler", r), [song(i) for i in range(3)]))
    assert [r.error for r in results] == [None] * 3
    rows, calls = delta(triton, before, "dit_align")
    assert rows == 3 and calls == 1, f"{rows} dit_align rows in {calls} calls (songs that finish together share one)"
    for r in results:
        _check(r.final["alignment"][0], r.final["duration"])
    assert results[0].final["alignment"] == done["alignment"]


def test_a_batch_of_two_gets_one_timing_per_item_and_off_means_none(triton):
    two = stream(triton.grpc_url, "sampler", song(5, batch_size=2, seeds=[5, 6]))
    assert two.error is None, two.error
    assert len(two.final["alignment"]) == 2
    for item in two.final["alignment"]:
        _check(item, two.final["duration"])
    off = stream(triton.grpc_url, "sampler", song(5, align_lyrics=False))
    assert off.error is None and "alignment" not in off.final
    bad = stream(triton.grpc_url, "sampler", song(5, align_lyrics="yes"))
    assert bad.error and "align_lyrics" in bad.error
    empty = stream(triton.grpc_url, "sampler", song(5, lyrics=""))
    assert empty.error is None
    assert empty.final["alignment"] == [{"lrc": "", "aligned_lyrics": [], "alignment_score": 0.0}]
