"""The system Chromium (Debian's, driven by Playwright; never `playwright install`) for the page tests."""

from __future__ import annotations

import shutil
import time
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parents[3]
USER, PASSWORD = "webtester", "web-pw-123"  # the page tests' user on the served orchestrator (conftest ``site``)
CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


def browser_missing() -> str | None:
    try:
        import playwright.sync_api  # noqa: F401
    except ImportError:
        return "playwright is not installed (pip install -e '.[dev]')"
    if not Path(CHROMIUM).exists():
        return "no system Chromium at /usr/bin/chromium (apt-get install chromium chromium-driver; `make system-deps`)"
    return None


needs_browser = pytest.mark.skipif(browser_missing() is not None, reason=str(browser_missing()))


def wait_js(page: Any, expression: str, timeout: float = 30_000) -> None:
    """Poll a JavaScript expression until it is truthy. (``page.wait_for_function`` evaluates its string with
    ``eval``, which the page's Content-Security-Policy forbids; ``page.evaluate`` is not subject to it.)"""
    deadline = time.monotonic() + timeout / 1000
    while not page.evaluate(expression):
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout / 1000:.0f} s waiting for {expression}")
        page.wait_for_timeout(100)


def logged_in_page(browser: Any, base: str) -> tuple[Any, list[str]]:
    """A new 1280×1000 page on the site at ``base``, logged in as ``USER``; the list collects page errors and console
    errors (Content-Security-Policy refusals among them) for the test to assert empty."""
    page = browser.new_page(viewport={"width": 1280, "height": 1000})
    problems: list[str] = []
    page.on("pageerror", lambda exc: problems.append(f"page error: {exc}"))
    page.on("console", lambda msg: problems.append(msg.text) if msg.type == "error" else None)
    page.goto(base + "/")
    page.fill("#username", USER)
    page.fill("#password", PASSWORD)
    page.click("#login-button")
    page.wait_for_selector("#login-done:not([hidden])")
    return page, problems


def make_song(page: Any, theme: str, *, steps: int, seed: int | None = None, duration: int = 10) -> None:
    """Make a short song with the page's form (other fields at the page's defaults) and wait until it succeeded."""
    page.fill("#theme", theme)
    page.click("#adv-audio summary")
    page.fill("#duration", str(duration))
    page.fill("#inference_steps", str(steps))
    if seed is not None:
        page.fill("#seed", str(seed))
    page.click("#submit")
    wait_js(page, "['succeeded','failed','cancelled'].includes(document.body.dataset.songStatus)", timeout=240_000)
    assert page.get_attribute("body", "data-song-status") == "succeeded", page.text_content("#error-message")
