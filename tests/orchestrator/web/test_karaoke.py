"""The karaoke view in Chromium on the real tiny stack: a short song made with the page's form (timed lyrics on by
default, sent as ``align_lyrics: true``), then the player moved to times inside known words.

The expected line and word are computed here from the status JSON the test fetches itself: the line is the last
``[mm:ss.xx]`` line of ``lrc`` that started at or before the time, the word the one ``aligned_lyrics`` entry whose
``[start_s, end_s)`` holds it. A screenshot of the result card mid-song goes to ``out/web/karaoke.png``.
"""

from __future__ import annotations

import re
from typing import Any

import pytest

from tests.orchestrator.web.browser import ROOT, logged_in_page, make_song, needs_browser, wait_js

pytestmark = pytest.mark.triton

STEPS = 8
LRC_LINE = re.compile(r"^\[(\d+):(\d+\.\d+)\](.+)$")
PLAYER = "#items audio.player"
IN_VIEW = """(() => { const box = document.querySelector('#items .karaoke');
  const a = box.getBoundingClientRect(), b = box.querySelector('.karaoke-line.current').getBoundingClientRect();
  return b.top >= a.top - 1 && b.bottom <= a.bottom + 1; })()"""
# Known timing for the same player: (section tag | words of a line, joined with ""/" " as the text has them).
KNOWN_LINES: list[str | list[str]] = [
    "Verse",
    ["Riding", "to", "the", "sea"],
    ["on", "a", "Sunday", "morning"],
    list("风吹起白衬衫"),
    ["the", "road", "is", "open"],
    "Chorus",
    ["sing", "it", "loud"],
    list("周末去看海"),
    ["waves", "keep", "time"],
    ["under", "the", "sun"],
    ["riding", "home", "again"],
    "Outro",
    ["la", "la", "la"],
]
WORD_S, GAP_S, FIRST_S = 0.2, 0.05, 0.4


def lrc_lines(lrc: str) -> list[tuple[float, str]]:
    """The timed lines of an LRC text (section tag comments left out)."""
    lines = []
    for raw in lrc.splitlines():
        match = LRC_LINE.match(raw.strip())
        if match:
            lines.append((int(match[1]) * 60 + float(match[2]), match[3].strip()))
    return lines


def expected_at(t: float, words: list[dict[str, Any]], lines: list[tuple[float, str]]) -> tuple[int, int | None]:
    """(line, word) the view must highlight at ``t``: the last line started at or before ``t``; the last word whose
    ``[start_s, end_s)`` holds ``t`` (None between words)."""
    line = max((i for i, (start, _) in enumerate(lines) if start <= t), default=-1)
    held = [k for k, w in enumerate(words) if w["start_s"] <= t < w["end_s"]]
    return line, (held[-1] if held else None)


def known_timing() -> tuple[dict[str, Any], list[tuple[float, str]], list[int]]:
    """An item's {lrc, aligned_lyrics} for ``KNOWN_LINES`` with every word ``WORD_S`` long, ``GAP_S`` apart; also the
    timed lines and each word's line."""
    words: list[dict[str, Any]] = []
    lrc, lines, word_line, t = [], [], [], FIRST_S
    for entry in KNOWN_LINES:
        if isinstance(entry, str):
            lrc.append(f"# [{entry}]")
            continue
        text = ("" if all(len(w) == 1 and ord(w) > 0x2E80 for w in entry) else " ").join(entry)
        lines.append((round(t, 2), text))
        lrc.append(f"[00:{t:05.2f}]{text}")
        for w in entry:
            words.append(
                {"word": w, "start_s": round(t, 3), "end_s": round(t + WORD_S, 3), "success": True, "p_align": 0.9}
            )
            word_line.append(len(lines) - 1)
            t += WORD_S + GAP_S
    timing = {"lrc": "\n".join(lrc), "aligned_lyrics": words, "alignment_score": 0.9, "lrc_url": None}
    return timing, lines, word_line


def move_to(page: Any, seconds: float) -> dict[str, Any]:
    """Set the main player's time, dispatch timeupdate, and read what the karaoke view highlights."""
    return page.evaluate(
        """([selector, t]) => {
          const audio = document.querySelector(selector);
          audio.currentTime = t;
          audio.dispatchEvent(new Event('timeupdate'));
          const box = audio.closest('.item').querySelector('.karaoke');
          const lines = [...box.querySelectorAll('.karaoke-line')];
          const line = box.querySelector('.karaoke-line.current');
          const word = box.querySelector('.karaoke-line.current .karaoke-word.current');
          return {
            line: lines.indexOf(line), lineText: line ? line.textContent : null,
            word: word ? Number(word.dataset.index) : null, wordText: word ? word.textContent : null,
            currentWords: box.querySelectorAll('.karaoke-word.current').length,
            past: box.querySelectorAll('.karaoke-line.past').length,
          };
        }""",
        [PLAYER, seconds],
    )


def check_at(page: Any, t: float, words: list[dict[str, Any]], lines: list[tuple[float, str]]) -> tuple[int, Any]:
    line, word = expected_at(t, words, lines)
    seen = move_to(page, t)
    assert seen["line"] == line and seen["word"] == word, (t, line, word, seen)
    assert seen["lineText"] == (lines[line][1] if line >= 0 else None), seen
    assert seen["wordText"] == (words[word]["word"] if word is not None else None), seen
    assert seen["currentWords"] == (word is not None) and seen["past"] == max(line, 0), seen
    return line, word


@needs_browser
def test_karaoke_highlights_the_line_and_word_being_sung(site: str, browser: Any) -> None:
    page, problems = logged_in_page(browser, site)
    assert page.is_checked("#align_lyrics"), "timed lyrics are asked for by default"
    assert page.evaluate("collectRequest().align_lyrics") is True
    page.select_option("#vocal_mode", "instrumental_quick")  # nothing to time in an instrumental
    assert page.evaluate("collectRequest().align_lyrics") is False
    page.select_option("#vocal_mode", "sing")
    make_song(page, "夜里的城市 霓虹在唱歌", steps=STEPS, seed=11)

    # The status JSON, fetched here, is the reference.
    intent = page.get_attribute("body", "data-intent-id")
    token = page.evaluate("sessionStorage.getItem('tritone.token')")
    status = page.request.get(f"{site}/v1/song/status?intent_id={intent}", headers={"Authorization": f"Bearer {token}"})
    item = status.json()["data"]["items"][0]
    words, lines = item["aligned_lyrics"], lrc_lines(item["lrc"] or "")
    assert words and lines, item

    # Every timed line is shown, section tags as headers (not as lines), every aligned word in its line.
    page.wait_for_selector("#items .karaoke")
    shown = page.eval_on_selector_all("#items .karaoke-line", "nodes => nodes.map((n) => n.textContent)")
    assert shown == [text for _, text in lines]
    tags = [raw[2:].strip("[] ") for raw in item["lrc"].splitlines() if raw.startswith("# ")]
    assert page.eval_on_selector_all("#items .karaoke-tag", "nodes => nodes.map((n) => n.textContent)") == tags
    spans = page.eval_on_selector_all("#items .karaoke-word", "nodes => nodes.map((n) => n.textContent)")
    assert spans == [w["word"] for w in words]
    wait_js(page, f"document.querySelector('{PLAYER}').readyState >= 1", timeout=30_000)

    # Mid-song and near the start, on the song's own timing; the box keeps the current line in view.
    duration = item["duration"]
    check_at(page, duration / 4, words, lines)
    check_at(page, duration / 2, words, lines)
    wait_js(page, IN_VIEW, timeout=10_000)
    out = ROOT / "out" / "web"
    out.mkdir(parents=True, exist_ok=True)
    page.evaluate("window.scrollTo(0, 0)")
    page.locator("section.result").screenshot(path=str(out / "karaoke.png"))

    # The tiny model's random attention puts most words at the song's start, so the highlight's movement is checked
    # on known timing, bound to the same player: each word in turn, the gaps between words, before the first line.
    known, known_lines, word_line = known_timing()
    page.evaluate(
        """([selector, timing]) => { const audio = document.querySelector(selector);
          audio.closest('.item').querySelector('.karaoke-box').replaceWith(karaokeView(audio, timing, '')); }""",
        [PLAYER, known],
    )
    known_words = known["aligned_lyrics"]
    # Playing: the view follows the player frame by frame (requestAnimationFrame while it plays). Before the many
    # seeks below: Chromium can leave a pile of quick seeks pending, and play() then waits for them.
    played = page.evaluate(
        """async (selector) => {
          const audio = document.querySelector(selector);
          const box = audio.closest('.item').querySelector('.karaoke');
          const seen = [];
          const tick = () => { seen.push(box.dataset.word); if (!audio.paused) requestAnimationFrame(tick); };
          audio.currentTime = 0;
          const late = new Promise((ok) => setTimeout(() => ok('play() did not start within 20 s'), 20000));
          const problem = await Promise.race([audio.play().then(() => null, (e) => String(e)), late]);
          if (problem) return {problem, readyState: audio.readyState, networkState: audio.networkState};
          requestAnimationFrame(tick);
          await new Promise((ok) => setTimeout(ok, 2000));
          audio.pause();
          return {seen, time: audio.currentTime};
        }""",
        PLAYER,
    )
    assert "problem" not in played, played
    sung = [int(w) for w in played["seen"] if w]
    assert played["time"] > 0.5 and sung == sorted(sung) and len(set(sung)) >= 2, played

    assert check_at(page, FIRST_S / 2, known_words, known_lines) == (-1, None)
    for k, w in enumerate(known_words):
        assert check_at(page, w["start_s"] + WORD_S / 2, known_words, known_lines) == (word_line[k], k)
        assert check_at(page, w["end_s"] + GAP_S / 2, known_words, known_lines)[1] is None
    middle = known_words[len(known_words) // 2]
    check_at(page, middle["start_s"] + WORD_S / 2, known_words, known_lines)
    wait_js(page, IN_VIEW, timeout=10_000)
    page.evaluate("window.scrollTo(0, 0)")
    page.locator("section.result").screenshot(path=str(out / "karaoke-known-timing.png"))

    # A click on a line seeks the player to its start.
    page.locator("#items .karaoke-line").nth(2).click()
    wait_js(page, f"Math.abs(document.querySelector('{PLAYER}').currentTime - {known_lines[2][0]}) < 0.05")
    assert page.evaluate("document.querySelector('#items .karaoke').dataset.line") == "2"

    # Without word timing the lrc alone gives the lines; without either there is no view at all.
    fallback = page.evaluate(
        """(item) => {
          const audio = document.createElement('audio');
          const lrcOnly = karaokeView(audio, {lrc: item.lrc, aligned_lyrics: null}, '');
          const none = karaokeView(audio, {lrc: null, aligned_lyrics: null, alignment_score: null}, 'la la');
          const empty = karaokeView(audio, {lrc: '', aligned_lyrics: []}, '');
          return {lines: lrcOnly.querySelectorAll('.karaoke-line').length,
                  words: lrcOnly.querySelectorAll('.karaoke-word').length, none, empty};
        }""",
        item,
    )
    assert fallback == {"lines": len(lines), "words": 0, "none": None, "empty": None}

    # The library lists the song with its own karaoke view, shown once its player plays.
    entry = f"#library-list [data-intent='{intent}']"
    page.wait_for_selector(entry + " .karaoke-box", state="attached", timeout=30_000)
    assert page.is_hidden(entry + " .karaoke-box")
    page.evaluate(f"document.querySelector(\"{entry} audio\").dispatchEvent(new Event('play'))")
    assert page.is_visible(entry + " .karaoke-box")

    # An edit of the timed song (the ACE-Step API, first task the page offers) is timed too, with its own view.
    result = f"{entry} .library-edit .edit-result"
    page.click(f"{entry} .library-edit .edit-go")
    wait_js(
        page,
        f"['succeeded', 'failed', 'cancelled'].includes(document.querySelector(\"{result}\").dataset.status)",
        timeout=240_000,
    )
    assert page.get_attribute(result, "data-status") == "succeeded", page.text_content(result)
    assert page.is_hidden(f"{result} .karaoke-box")
    page.evaluate(f"document.querySelector(\"{result} audio\").dispatchEvent(new Event('play'))")
    assert page.is_visible(f"{result} .karaoke-box") and page.locator(f"{result} .karaoke-line").count() > 0
    assert problems == []
    page.close()
