"""Lyric timing math on synthetic attention maps with a known alignment: DTW, median filter, token -> word -> line."""

from __future__ import annotations

import numpy as np
import pytest

from model_repository.acestep15 import alignment
from model_repository.acestep15.alignment import LyricTokens


def _reference_dtw(x: np.ndarray) -> tuple[list[int], list[int]]:
    """The textbook double loop with upstream's tie rule (diagonal only when strictly cheapest, then up, else left)."""
    n, m = x.shape
    cost = np.full((n + 1, m + 1), np.inf)
    cost[0, 0] = 0
    trace = -np.ones((n + 1, m + 1))
    for j in range(1, m + 1):
        for i in range(1, n + 1):
            c0, c1, c2 = cost[i - 1, j - 1], cost[i - 1, j], cost[i, j - 1]
            if c0 < c1 and c0 < c2:
                c, t = c0, 0
            elif c1 < c0 and c1 < c2:
                c, t = c1, 1
            else:
                c, t = c2, 2
            cost[i, j] = x[i - 1, j - 1] + c
            trace[i, j] = t
    rows, cols = [], []
    i, j = n, m
    while i > 0 and j > 0:
        rows.append(i - 1)
        cols.append(j - 1)
        t = trace[i, j]
        i, j = (i - 1, j - 1) if t == 0 else (i - 1, j) if t == 1 else (i, j - 1)
    return rows[::-1], cols[::-1]


@pytest.mark.parametrize("shape", [(1, 1), (1, 7), (6, 1), (5, 9), (23, 40), (40, 23)])
def test_dtw_matches_the_double_loop(shape):
    x = np.random.default_rng(sum(shape)).standard_normal(shape)
    rows, cols = alignment.dtw(x)
    want_rows, want_cols = _reference_dtw(x)
    assert rows.tolist() == want_rows and cols.tolist() == want_cols
    assert rows[0] == 0 and cols[0] == 0 and rows[-1] == shape[0] - 1 and cols[-1] == shape[1] - 1
    assert np.all(np.diff(rows) >= 0) and np.all(np.diff(cols) >= 0)


def test_dtw_follows_a_block_diagonal():
    bounds = [(0, 3), (3, 4), (4, 10), (10, 12)]
    score = np.full((4, 12), -0.1)  # off the blocks costs: a path cell never sits there for free
    for i, (a, b) in enumerate(bounds):
        score[i, a:b] = 1.0
    rows, cols = alignment.dtw(-score)
    for i, (a, b) in enumerate(bounds):
        assert cols[rows == i].min() == a and cols[rows == i].max() == b - 1


def test_median_filter_reflects_at_the_edges():
    x = np.array([[5.0, 1.0, 9.0, 2.0, 7.0]])
    # reflect padding: [9, 1, | 5, 1, 9, 2, 7 | 2, 9]
    assert alignment.median_filter(x, 3).tolist() == [[1.0, 5.0, 2.0, 7.0, 2.0]]
    assert alignment.median_filter(x, 5).tolist() == [[5.0, 2.0, 5.0, 2.0, 7.0]]
    assert alignment.median_filter(x, 1) is x
    with pytest.raises(ValueError, match="odd"):
        alignment.median_filter(x, 2)
    spike = np.zeros((2, 3, 9))
    spike[..., 4] = 100.0
    assert not alignment.median_filter(spike, 3).any()


LYRICS = "[Verse]\nhello world\n\n你好\n[Chorus]\nbye"
# One token per word / CJK character and per tag: (start, end) character spans into LYRICS.
SPANS = np.array([[0, 7], [8, 13], [14, 19], [21, 22], [22, 23], [24, 32], [33, 36]])
# Sung tokens 1..6 (without tags 0 and 5) own these patches; tags get a single patch each.
BLOCKS = [(0, 2), (2, 10), (10, 14), (14, 20), (20, 26), (26, 28), (28, 40)]


def _maps(heads: int = 3, noise: float = 0.0) -> np.ndarray:
    rng = np.random.default_rng(0)
    att = np.full((heads, len(SPANS), 40), 0.01)
    for i, (a, b) in enumerate(BLOCKS):
        att[:, i, a:b] = 1.0
    att += noise * rng.random(att.shape)
    return att / att.sum(axis=1, keepdims=True)  # probabilities over the lyric tokens


def test_align_gives_the_known_times_per_word_character_and_line():
    tokens = LyricTokens(np.arange(len(SPANS)), SPANS)
    out = alignment.align(_maps(), tokens, LYRICS, duration_s=20.0)  # 40 patches: 0.5 s each
    words = out["aligned_lyrics"]
    assert [w["word"] for w in words] == ["hello", "world", "你", "好", "bye"]
    assert [(w["start_s"], w["end_s"]) for w in words] == [(1.0, 5.0), (5.0, 7.0), (7.0, 10.0), (10.0, 13.0),
                                                          (14.0, 20.0)]
    assert all(w["success"] for w in words) and all(0.0 < w["p_align"] <= 1.0 for w in words)
    assert out["lrc"].splitlines() == ["# [Verse]", "[00:01.00]hello world", "[00:07.00]你好", "# [Chorus]",
                                       "[00:14.00]bye"]
    assert 0.5 < out["alignment_score"] <= 1.0


def test_noisy_maps_keep_the_times_and_flat_maps_score_low():
    tokens = LyricTokens(np.arange(len(SPANS)), SPANS)
    clean = alignment.align(_maps(), tokens, LYRICS, 20.0)
    noisy = alignment.align(_maps(noise=0.3), tokens, LYRICS, 20.0)
    assert [w["start_s"] for w in noisy["aligned_lyrics"]] == [w["start_s"] for w in clean["aligned_lyrics"]]
    flat = alignment.align(np.full((2, len(SPANS), 40), 1.0 / len(SPANS)), tokens, LYRICS, 20.0)
    assert flat["alignment_score"] < 0.05 < clean["alignment_score"]
    starts = [w["start_s"] for w in flat["aligned_lyrics"]]
    assert starts == sorted(starts) and all(0 <= w["start_s"] <= w["end_s"] <= 20.0 for w in flat["aligned_lyrics"])


def test_words_past_the_token_limit_get_no_timing():
    tokens = LyricTokens(np.arange(3), SPANS[:3])
    out = alignment.align(_maps()[:, :3], tokens, LYRICS, 20.0)
    by_word = {w["word"]: w for w in out["aligned_lyrics"]}
    assert by_word["hello"]["success"] and not by_word["bye"]["success"]
    assert by_word["bye"]["start_s"] == by_word["bye"]["end_s"] == by_word["world"]["end_s"]
    assert "bye" not in out["lrc"]


def test_lrc_time_rounds_to_centiseconds_without_a_60_second_overflow():
    assert alignment.lrc_time(59.999) == "[01:00.00]"
    assert alignment.lrc_time(0.0) == "[00:00.00]"
    assert alignment.lrc_time(754.321) == "[12:34.32]"


def test_lyric_tokens_map_byte_level_tokens_to_characters():
    from export.acestep15.presets import build_tiny_tokenizer

    tok = build_tiny_tokenizer()
    lyrics = "[Verse]\nla 你"
    formatted = f"# Languages\nen\n\n# Lyric\n{lyrics}<|endoftext|>"
    tokens = alignment.lyric_tokens(tok, formatted, lyrics, 2048)
    # one token per UTF-8 byte: 13 ASCII characters + 3 bytes of 你, all inside the lyrics
    assert len(tokens.positions) == len(lyrics.encode())
    assert tokens.positions[0] == len(formatted.split(lyrics)[0].encode())
    assert tokens.spans[-1].tolist() == [len(lyrics) - 1, len(lyrics)]
    assert alignment.tag_mask(tokens.spans, lyrics).tolist() == [0] * 7 + [1] * (len(tokens.positions) - 7)
