"""The "Try it" page end to end: headless Chromium (the system's, driven by Playwright) against the real
orchestrator (``tritone serve`` in a child process) and the real tritonserver serving the tiny repository.

It logs in, shows a readable error for an empty theme, makes a song, and checks what a user sees: the lyrics
arriving, the progress bar moving, an audio player and a download link per item, the cover. A screenshot of the
finished page goes to ``out/web/``.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import urljoin

import pytest

from tests.orchestrator.web.browser import PASSWORD, ROOT, USER, needs_browser, wait_js

pytestmark = pytest.mark.triton

STEPS = 60  # long enough for the event stream to show steps between 0 and 100 on a busy machine


# Records every value the progress bar and the lyrics box take, so "it moved" can be checked afterwards.
_RECORDER = """
window.__seen = {progress: [], lyrics: [], counts: []};
new MutationObserver(() => {
  const bar = document.getElementById('progress');
  const v = Number(bar.getAttribute('aria-valuenow'));
  const p = window.__seen.progress;
  if (p[p.length - 1] !== v) p.push(v);
  const $ = (id) => document.getElementById(id).textContent;
  const label = $('progress-stage') + ' ' + $('progress-count');
  const c = window.__seen.counts;
  if (c[c.length - 1] !== label) c.push(label);
  const n = document.getElementById('lyrics').textContent.length;
  const l = window.__seen.lyrics;
  if (l[l.length - 1] !== n) l.push(n);
}).observe(document.getElementById('job'), {subtree: true, attributes: true, childList: true, characterData: true});
"""


@needs_browser
def test_page_logs_in_explains_errors_and_makes_a_song(site: str, browser: Any) -> None:
    page = browser.new_page(viewport={"width": 1280, "height": 1000})
    problems: list[str] = []
    page.on("pageerror", lambda exc: problems.append(f"page error: {exc}"))
    page.goto(site + "/")
    assert "Song Generation" in page.title()
    assert page.locator("#track_classes .chip").count() == 12

    # Not logged in yet: the form says so instead of failing silently.
    page.click("#submit")
    page.wait_for_selector("#error:not([hidden])")
    assert "log in" in page.text_content("#error-message")

    # A wrong password is a readable message from POST /auth/login.
    page.fill("#username", USER)
    page.fill("#password", "wrong")
    page.click("#login-button")
    page.wait_for_selector("#login-error:not([hidden])")
    assert page.text_content("#login-error").strip()
    page.fill("#password", PASSWORD)
    page.click("#login-button")
    page.wait_for_selector("#login-done:not([hidden])")
    assert page.text_content("#login-user") == USER

    # Empty theme: the server's 422 becomes a readable error naming the field, and the field is marked.
    page.fill("#theme", "   ")
    page.click("#submit")
    wait_js(page, "document.getElementById('error-message').textContent.includes('theme')")
    assert page.get_attribute("#theme", "aria-invalid") == "true"
    assert page.is_hidden("#job")

    # A song: theme, style, two instruments, small audio settings for the tiny models.
    page.fill("#theme", "周末骑单车去看海 风把白衬衫吹起来")
    page.fill("#style", "sunny pop")
    page.click("label[for=track-guitar]")
    page.click("label[for=track-drums]")
    page.click("#adv-audio summary")
    page.fill("#duration", "10")
    page.fill("#inference_steps", str(STEPS))
    page.select_option("#audio_format", "mp3")
    page.fill("#seed", "7")
    page.evaluate(_RECORDER)
    page.click("#submit")
    assert page.is_hidden("#error")

    wait_js(page, "document.getElementById('lyrics').textContent.trim().length > 0", timeout=120_000)
    wait_js(page, "['succeeded','failed','cancelled'].includes(document.body.dataset.songStatus)", timeout=240_000)
    status = page.get_attribute("body", "data-song-status")
    assert status == "succeeded", page.text_content("#error-message")
    page.wait_for_selector("#cover-box:not([hidden])", timeout=30_000)

    seen = page.evaluate("window.__seen")
    assert seen["progress"][-1] == 100
    assert any(0 < v < 100 for v in seen["progress"]), f"the bar jumped straight to the end: {seen['progress']}"
    assert len(seen["lyrics"]) >= 1 and seen["lyrics"][-1] > 0
    # The diffusion steps were counted against the number asked for.
    assert any(label.startswith("扩散 diffusion") and label.endswith(f"/ {STEPS}") for label in seen["counts"]), seen[
        "counts"
    ]

    # One player and one download per item, both serving the mp3; the cover image decoded.
    players = page.locator("#items audio.player")  # (the library below lists the song too)
    assert players.count() == 1
    src = players.first.get_attribute("src")
    link = page.locator("#items a.download").first
    assert link.get_attribute("download").endswith("-1.mp3")
    response = page.request.get(urljoin(site + "/", link.get_attribute("href")))
    body = response.body()
    assert response.ok and (body[:3] == b"ID3" or (body[0] == 0xFF and body[1] & 0xE0 == 0xE0)), body[:16]
    assert page.request.get(urljoin(site + "/", src)).ok
    assert page.evaluate("document.getElementById('cover').naturalWidth") == 1024  # 1:1 default, long side 1024
    assert page.text_content("#song-title").strip()
    assert "BPM" in page.text_content("#metadata")

    out = ROOT / "out" / "web"
    out.mkdir(parents=True, exist_ok=True)
    page.evaluate("window.scrollTo(0, 0)")  # the result card is sticky: show it beside the top of the form
    page.screenshot(path=str(out / "try-it-finished.png"), full_page=True)
    assert problems == []
    page.close()
