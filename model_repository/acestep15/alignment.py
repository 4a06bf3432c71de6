"""Lyric timing from the DiT's cross-attention: maps -> DTW path -> token, word and line times, LRC and a score.

The method is upstream ACE-Step 1.5's (its UI's LRC and lyric-score buttons), written here in vectorised numpy:

* **Timestamps** (:func:`consensus`): per head, ``softmax`` of the attention over frames times ``softmax`` over
  tokens (both directions must agree), minus ``violence`` x the row medians then the column medians (clamped at 0:
  removes the horizontal and vertical stripes of heads that attend to one token or one frame throughout), squared,
  z-scored over all heads, median-filtered along time and averaged over heads. Dynamic time warping (:func:`dtw`) on
  its negative gives a monotonic token -> patch path; a token's start and end are its first and last patch.
* **Score** (:func:`alignment_score`): the head average, median-filtered and min-max normalised to [0, 1] ("energy");
  DTW on ``-energy^2``; coverage (share of lyric tokens whose peak energy exceeds 0.1), monotonicity (share of
  consecutive lyric tokens whose energy centroid does not move back by more than 9 patches) and confidence (mean
  energy along the path); score = coverage^2 x monotonicity^2 x confidence, in [0, 1]. Section-tag tokens
  (``[Verse]``) count in the path but not in coverage or monotonicity.

Words are whitespace-separated runs (CJK: one character each); ``p_align`` is the mean energy along the path over a
word's tokens and ``success`` that its peak energy passes the coverage threshold. Lines are the lyric's lines; section
tag lines become LRC comments.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

import numpy as np

# Upstream's published parameters (ACE-Step 1.5 handler.get_lyric_timestamp / get_lyric_score).
VIOLENCE = 2.0
MEDFILT_WIDTH = 1
COVERAGE_THRESHOLD = 0.1
CENTROID_FLOOR = 0.01
OVERLAP_PATCHES = 9.0

_CJK = "\u3040-\u30ff\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff"
_WORD = re.compile(rf"[{_CJK}]|[^\s{_CJK}]+")
_TAG_LINE = re.compile(r"^\s*\[[^\]]*\]\s*$")
_BRACKETS = re.compile(r"\[[^\]]*\]")


def median_filter(x: np.ndarray, width: int) -> np.ndarray:
    """Median over an odd window of ``width`` along the last axis, reflect-padded (torch's ``F.pad(mode="reflect")``,
    as upstream); rows no longer than half the window are returned as they are."""
    if width < 1 or width % 2 == 0:
        raise ValueError(f"median filter width must be odd and >= 1, got {width}; use e.g. {max(1, width + 1)}")
    pad = width // 2
    if width <= 1 or x.shape[-1] <= pad:
        return x
    padded = np.pad(x, [(0, 0)] * (x.ndim - 1) + [(pad, pad)], mode="reflect")
    windows = np.lib.stride_tricks.sliding_window_view(padded, width, axis=-1)
    return np.partition(windows, pad, axis=-1)[..., pad]


def _softmax(x: np.ndarray, axis: int) -> np.ndarray:
    e = np.exp(x - x.max(axis=axis, keepdims=True))
    return e / e.sum(axis=axis, keepdims=True)


def consensus(weights: np.ndarray, *, violence: float = VIOLENCE, medfilt: int = MEDFILT_WIDTH) -> np.ndarray:
    """[heads, tokens, patches] attention -> the [tokens, patches] matrix DTW follows (higher = more aligned)."""
    w = weights.astype(np.float32)  # float32 as upstream (torch); twice as fast as float64 on long songs
    p = _softmax(w, -1) * _softmax(w, -2)
    p = np.maximum(p - violence * np.median(p, axis=-1, keepdims=True), 0.0)
    p = np.maximum(p - violence * np.median(p, axis=-2, keepdims=True), 0.0)
    p = p**2
    z = (p - p.mean()) / (p.std() + 1e-9)
    return median_filter(z, medfilt).mean(axis=0).astype(np.float64)


def dtw(cost: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Minimum-cost monotonic path through ``cost`` [N, M] from (0, 0) to (N-1, M-1) with steps (1,1), (1,0), (0,1);
    returns (rows, cols) in path order. Ties go to the horizontal step, then the diagonal wins only when strictly
    cheaper (upstream's rule). The recursion runs one anti-diagonal at a time (every cell of a diagonal at once)."""
    n, m = cost.shape
    acc = np.full((n + 1, m + 1), np.inf)
    acc[0, 0] = 0.0
    trace = np.full((n + 1, m + 1), 2, np.int8)
    trace[:, 0] = 1
    for d in range(2, n + m + 1):
        i = np.arange(max(1, d - m), min(n, d - 1) + 1)
        j = d - i
        c0, c1, c2 = acc[i - 1, j - 1], acc[i - 1, j], acc[i, j - 1]
        diag = (c0 < c1) & (c0 < c2)
        up = ~diag & (c1 < c0) & (c1 < c2)
        step = np.where(diag, 0, np.where(up, 1, 2)).astype(np.int8)
        acc[i, j] = cost[i - 1, j - 1] + np.where(diag, c0, np.where(up, c1, c2))
        trace[i, j] = step
    rows, cols = [], []
    i, j = n, m
    while i > 0 and j > 0:
        rows.append(i - 1)
        cols.append(j - 1)
        t = trace[i, j]
        if t == 0:
            i, j = i - 1, j - 1
        elif t == 1:
            i -= 1
        else:
            j -= 1
    return np.asarray(rows[::-1], np.int64), np.asarray(cols[::-1], np.int64)


def _token_bounds(rows: np.ndarray, cols: np.ndarray, n: int) -> tuple[np.ndarray, np.ndarray]:
    """First and last path column of each of the ``n`` rows (the path visits every row, in order)."""
    first = np.searchsorted(rows, np.arange(n), side="left")
    last = np.searchsorted(rows, np.arange(n), side="right") - 1
    return cols[first], cols[last]


def tag_mask(spans: np.ndarray, lyrics: str) -> np.ndarray:
    """1 for tokens of sung text, 0 for tokens inside ``[...]`` section tags (character spans into ``lyrics``)."""
    inside = np.zeros(len(lyrics) + 1, bool)
    for match in _BRACKETS.finditer(lyrics):
        inside[match.start() : match.end()] = True
    if not len(spans):
        return np.zeros(0, np.int64)
    starts = np.clip(spans[:, 0], 0, len(lyrics))
    return (~inside[starts]).astype(np.int64)


def alignment_score(weights: np.ndarray, is_lyric: np.ndarray, *, medfilt: int = MEDFILT_WIDTH) -> tuple[float, Any]:
    """(score in [0, 1], energy [tokens, patches], path rows, path cols) of upstream's lyric score."""
    energy = median_filter(weights.astype(np.float64).mean(axis=0), medfilt)
    lo, hi = energy.min(), energy.max()
    energy = (energy - lo) / (hi - lo) if hi - lo > 1e-9 else np.zeros_like(energy)
    rows, cols = dtw(-(energy**2))
    lyric = is_lyric.astype(bool)
    n_lyric = int(lyric.sum())
    coverage = float((lyric & (energy.max(axis=1) > COVERAGE_THRESHOLD)).sum() / n_lyric) if n_lyric else 1.0
    w = np.where(energy > CENTROID_FLOOR, energy, 0.0)
    total = w.sum(axis=1)
    centroid = np.where(total > 1e-9, (w * np.arange(w.shape[1])).sum(axis=1) / np.maximum(total, 1e-300), -1.0)
    sung = centroid[lyric & (centroid >= 0)]
    monotonic = float(np.mean(sung[1:] >= sung[:-1] - OVERLAP_PATCHES)) if len(sung) > 1 else 1.0
    confidence = float(energy[rows, cols].mean()) if len(rows) else 0.0
    score = float(np.clip(coverage**2 * monotonic**2 * confidence, 0.0, 1.0))
    return round(score, 4), (energy, rows, cols)


@dataclass(frozen=True)
class LyricTokens:
    """The lyric's tokens inside the DiT's condition: their positions in the packed sequence and character spans in
    the user's lyrics."""

    positions: np.ndarray  # [N] int64
    spans: np.ndarray  # [N, 2] int64, [start, end) in ``lyrics``


def lyric_tokens(tokenizer: Any, formatted: str, lyrics: str, max_tokens: int) -> LyricTokens:
    """The tokens of ``lyrics`` inside ``formatted`` (the lyric prompt the runner encodes, truncated as it is)."""
    start = formatted.find(lyrics) if lyrics else -1
    if start < 0:
        return LyricTokens(np.zeros(0, np.int64), np.zeros((0, 2), np.int64))
    enc = tokenizer(formatted, truncation=True, max_length=max_tokens, return_offsets_mapping=True)
    offsets = np.asarray(enc["offset_mapping"], np.int64).reshape(-1, 2)
    end = start + len(lyrics)
    keep = (offsets[:, 1] > offsets[:, 0]) & (offsets[:, 1] > start) & (offsets[:, 0] < end)
    spans = np.clip(offsets[keep] - start, 0, len(lyrics))
    return LyricTokens(np.nonzero(keep)[0].astype(np.int64), spans)


def _units(lyrics: str) -> tuple[list[tuple[int, int, str]], list[tuple[int, int, str, bool]]]:
    """Words (start, end, text) outside tags, and lines (start, end, text, is_tag) that are not blank."""
    words: list[tuple[int, int, str]] = []
    lines: list[tuple[int, int, str, bool]] = []
    pos = 0
    for raw in lyrics.split("\n"):
        text = raw.strip()
        if text:
            offset = pos + raw.index(text)
            is_tag = bool(_TAG_LINE.match(raw))
            lines.append((offset, offset + len(text), text, is_tag))
            if not is_tag:
                sung = _BRACKETS.sub(lambda m: " " * len(m.group()), raw)
                words += [(pos + m.start(), pos + m.end(), m.group()) for m in _WORD.finditer(sung)]
        pos += len(raw) + 1
    return words, lines


def _group(units: np.ndarray, spans: np.ndarray, start_s: np.ndarray, end_s: np.ndarray) -> tuple[np.ndarray, ...]:
    """Per unit (character range [U, 2]): covered?, min token start, max token end over its overlapping tokens."""
    hit = (spans[None, :, 0] < units[:, None, 1]) & (spans[None, :, 1] > units[:, None, 0])  # [U, N]
    covered = hit.any(axis=1)
    start = np.where(hit, start_s[None], np.inf).min(axis=1, initial=np.inf)
    end = np.where(hit, end_s[None], -np.inf).max(axis=1, initial=-np.inf)
    return covered, hit, start, end


def lrc_time(seconds: float) -> str:
    centis = int(round(seconds * 100))
    minutes, centis = divmod(centis, 6000)
    return f"[{minutes:02d}:{centis / 100:05.2f}]"


def align(attention: np.ndarray, tokens: LyricTokens, lyrics: str, duration_s: float) -> dict[str, Any]:
    """[heads, tokens, patches] cross-attention of one song -> ``lrc``, ``aligned_lyrics`` and ``alignment_score``."""
    n, patches = attention.shape[1], attention.shape[2]
    words, lines = _units(lyrics)
    if n == 0 or patches == 0:
        return {"lrc": "", "aligned_lyrics": [], "alignment_score": 0.0}
    seconds = duration_s / patches
    rows, cols = dtw(-consensus(attention))
    first, last = _token_bounds(rows, cols, n)
    tok_start = first * seconds
    tok_end = np.minimum((last + 1) * seconds, duration_s)
    score, (energy, s_rows, s_cols) = alignment_score(attention, tag_mask(tokens.spans, lyrics))
    # Energy along the score's path, per token (mean) and the token's peak energy.
    path_sum = np.bincount(s_rows, weights=energy[s_rows, s_cols], minlength=n)
    path_len = np.bincount(s_rows, minlength=n)
    peak = energy.max(axis=1)

    aligned: list[dict[str, Any]] = []
    if words:
        units = np.asarray([(s, e) for s, e, _ in words], np.int64)
        covered, hit, w_start, w_end = _group(units, tokens.spans, tok_start, tok_end)
        p_align = (hit * path_sum[None]).sum(axis=1) / np.maximum((hit * path_len[None]).sum(axis=1), 1)
        w_peak = np.where(hit, peak[None], 0.0).max(axis=1, initial=0.0)
        prev = 0.0
        for k, (_, _, text) in enumerate(words):
            if covered[k]:
                prev = float(w_end[k])
                start, end = float(w_start[k]), float(w_end[k])
            else:  # cut off by the lyric token limit: no timing
                start = end = prev
            aligned.append({
                "word": text,
                "start_s": round(start, 3),
                "end_s": round(end, 3),
                "success": bool(covered[k] and w_peak[k] > COVERAGE_THRESHOLD),
                "p_align": round(float(p_align[k]) if covered[k] else 0.0, 4),
            })
    out_lines: list[str] = []
    if lines:
        units = np.asarray([(s, e) for s, e, _, _ in lines], np.int64)
        covered, _, l_start, _ = _group(units, tokens.spans, tok_start, tok_end)
        for k, (_, _, text, is_tag) in enumerate(lines):
            if is_tag:
                out_lines.append(f"# {text}")
            elif covered[k]:
                out_lines.append(f"{lrc_time(float(l_start[k]))}{text}")
    return {"lrc": "\n".join(out_lines), "aligned_lyrics": aligned, "alignment_score": score}
