"""The page's seed-000 sections in the system Chromium against a live orchestrator (uvicorn + the stage-runner
double, ``live.py``): every section filled from ``/v1/site``, the form's bounds from the schema, the language switch
(remembered), the model selector from ``/v1/models``, the library of the user's songs with seed reuse, and copying the
prompt and the code to the clipboard. Screenshots in both languages go to ``out/web/``."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from tests.orchestrator.web.browser import ROOT, browser_missing, needs_browser
from tests.orchestrator.web.live import live_orchestrator

OUT = ROOT / "out" / "web"


@pytest.fixture(scope="module")
def live(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    if browser_missing():
        pytest.skip(str(browser_missing()))
    with live_orchestrator(tmp_path_factory.mktemp("sections-live")) as base:
        yield base


def _visible(page: Any, selector: str) -> bool:
    return bool(page.locator(selector).first.is_visible())


def _make_song(base: str) -> str:
    """A finished song for alice, made through the API (the library must show it)."""
    with httpx.Client(base_url=base, timeout=30) as client:
        token = client.post("/auth/login", json={"username": "alice", "password": "alice-pw"}).json()["access_token"]
        headers = {"Authorization": f"Bearer {token}"}
        body = {"theme": "library song", "duration": 10, "inference_steps": 4, "seed": 4242}
        intent = str(client.post("/v1/song/create", json=body, headers=headers).json()["data"]["intent_id"])
        for _ in range(300):
            data = client.get("/v1/song/status", params={"intent_id": intent}, headers=headers).json()["data"]
            if data["status"] in ("succeeded", "failed"):
                break
            import time

            time.sleep(0.1)
        assert data["status"] == "succeeded", data
        return intent


@needs_browser
def test_sections_languages_models_library_and_copying(live: str, browser: Any) -> None:
    site = httpx.get(live + "/v1/site", timeout=10).json()["data"]
    intent = _make_song(live)
    context = browser.new_context(viewport={"width": 1280, "height": 1000})
    context.grant_permissions(["clipboard-read", "clipboard-write"], origin=live)
    page = context.new_page()
    problems: list[str] = []
    page.on("pageerror", lambda exc: problems.append(f"page error: {exc}"))
    page.goto(live + "/")
    page.wait_for_selector("body[data-site-loaded=true]", timeout=15_000)

    # Signed out: the sign-in form shows, "logged in as" does not — also with a stale token left in the browser.
    assert _visible(page, "#login-form") and not _visible(page, "#login-done")
    page.evaluate("sessionStorage.setItem('tritone.token', 'stale'); sessionStorage.setItem('tritone.user', 'ghost')")
    page.reload()
    page.wait_for_selector("#login-form:not([hidden])")
    assert not _visible(page, "#login-done")
    page.wait_for_selector("body[data-site-loaded=true]")

    # 01 limits and 02 performance: tiles with the service's own figures.
    limits = page.text_content("#limits-grid")
    lo, hi = site["limits"]["audio_duration"]["min"], site["limits"]["audio_duration"]["max"]
    assert f"{lo} ~ {hi} s" in limits and str(site["limits"]["queue_max"]) in limits
    assert "flac / wav / wav32 / mp3" in limits
    assert page.locator("#limits-grid .tile").count() == 6 and page.locator("#performance-grid .tile").count() == 6
    assert site["performance"]["reference"]["lyrics"] in page.text_content("#performance-grid")
    # 04 the request fields table: one row per schema field; 05 one row per declared error.
    assert [r.get_attribute("data-field") for r in page.locator("#fields-table tbody tr").all()] == [
        f["name"] for f in site["fields"]
    ]
    assert [int(r.get_attribute("data-code")) for r in page.locator(".error-row").all()] == [
        e["code"] for e in site["errors"]
    ]
    assert "lyrics_pending" in page.text_content("#status-machine")
    # 06 the prompt with its token count.
    assert page.text_content("#prompt-text") == site["prompt"]["text"]
    assert page.get_attribute("#prompt-tokens", "data-tokens") == str(site["prompt"]["tokens"])

    # The form's bounds are the schema's (seed 000 and the API agree).
    assert page.get_attribute("#style", "maxlength") == "300" and page.get_attribute("#rhyme", "maxlength") == "40"
    assert page.get_attribute("#duration_hint", "min") == str(lo + 1)  # duration_hint > 10, duration >= 10
    assert page.get_attribute("#duration", "min") == str(lo)
    assert page.is_checked("#expand_theme")

    # Code examples follow the form; copying puts them on the clipboard.
    page.fill("#theme", "snippets follow the form")
    page.wait_for_selector("#code-example:has-text('snippets follow the form')")  # (CSP: no string eval)
    for lang, marker in (("python", "import httpx"), ("javascript", "await fetch"), ("curl", "curl -sf")):
        page.click(f"#code-tabs [data-lang={lang}]")
        assert marker in page.text_content("#code-example")
        page.click("#copy-code")
        page.wait_for_selector("#copy-code[data-copied=true]")
        assert page.evaluate("navigator.clipboard.readText()") == page.text_content("#code-example")
    page.click("#copy-prompt")
    page.wait_for_selector("#copy-prompt[data-copied=true]")
    assert page.evaluate("navigator.clipboard.readText()") == site["prompt"]["text"]

    # Screenshots in both one-language views; the choice survives a reload.
    OUT.mkdir(parents=True, exist_ok=True)
    page.click("#lang-switch [data-lang=en]")
    assert not _visible(page, "#limits h2 .zh") and _visible(page, "#limits h2 .en")
    page.screenshot(path=str(OUT / "page-en.png"), full_page=True)
    page.reload()
    page.wait_for_selector("body[data-site-loaded=true]")
    assert page.get_attribute("body", "data-lang") == "en"
    page.click("#lang-switch [data-lang=zh]")
    assert _visible(page, "#limits h2 .zh") and not _visible(page, "#limits h2 .en")
    page.screenshot(path=str(OUT / "page-zh.png"), full_page=True)
    page.click("#lang-switch [data-lang=both]")
    assert _visible(page, "#limits h2 .zh") and _visible(page, "#limits h2 .en")

    # Log in: the model selector lists /v1/models' families, the library shows alice's song.
    page.fill("#username", "alice")
    page.fill("#password", "alice-pw")
    page.click("#login-button")
    page.wait_for_selector("#login-done:not([hidden])")
    assert not _visible(page, "#login-form")
    options = page.eval_on_selector_all("#model option", "os => os.map(o => o.value)")
    assert "" in options and any(o.startswith("acestep15") for o in options), options
    page.wait_for_selector(f"#library-list [data-intent='{intent}']")
    entry = page.locator(f"#library-list [data-intent='{intent}']")
    assert "library song" in entry.text_content()
    assert entry.locator("audio.player").count() == 1 and entry.locator("a.download").count() == 1
    href = entry.locator("a.download").first.get_attribute("href")
    assert page.request.get(href if href.startswith("http") else live + href).ok
    page.locator("#library").screenshot(path=str(OUT / "library.png"))
    entry.locator(".reuse-seed").first.click()
    assert page.input_value("#seed") == "4242"
    page.fill("#theme", "")
    entry.locator(".library-actions .secondary").click()
    assert page.input_value("#theme") == "library song" and page.input_value("#duration") == "10"
    # An edit the service offers (ACE-Step API, the song's own file as the source): a cover, followed to the end.
    entry.locator(".edit-task").select_option("cover")
    entry.locator(".edit-go").click()
    entry.locator(".edit-result[data-status=succeeded] audio").wait_for(timeout=60_000)
    page.click("#library-tabs [data-view=samples]")
    page.wait_for_selector("#samples-list li")  # the operator's set (none configured here: it says so)
    assert _visible(page, "#samples-list") and not _visible(page, "#library-list")
    page.screenshot(path=str(OUT / "page-library.png"), full_page=True)

    # Logging out is shown truthfully.
    page.click("#logout-button")
    assert _visible(page, "#login-form") and not _visible(page, "#login-done")
    assert problems == []
    context.close()
