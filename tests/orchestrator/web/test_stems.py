"""The "Stems" button in Chromium on the real tiny stack: a short song made with the page's form, then its Stems
button (2 stems) shows the job's progress and ends in links to the zip and to each stem's 48 kHz WAV; the library
entry of the same song has the button too."""

from __future__ import annotations

import io
import zipfile
from typing import Any
from urllib.parse import urljoin

import pytest
import soundfile as sf

from tests.orchestrator.web.browser import logged_in_page, make_song, needs_browser, wait_js

pytestmark = pytest.mark.triton


@needs_browser
def test_stems_button_splits_a_finished_song(site: str, browser: Any) -> None:
    page, problems = logged_in_page(browser, site)
    make_song(page, "海边的风", steps=2)

    page.wait_for_selector("#library-list .library-item .stems-go")  # the library's entry offers it too
    control = page.locator("#items .stems").first
    control.locator("select.stems-set").select_option("2")
    control.locator("button.stems-go").click()
    box = "#items .stems .stems-result"
    wait_js(page, f"['succeeded','failed'].includes(document.querySelector('{box}').dataset.status)", 240_000)
    assert page.get_attribute(box, "data-status") == "succeeded", page.text_content(box)
    stems = page.eval_on_selector_all(f"{box} a.stem", "links => links.map((a) => [a.dataset.stem, a.download])")
    assert stems == [["vocals", "vocals.wav"], ["instrumental", "instrumental.wav"]]
    vocals = page.request.get(urljoin(site + "/", page.get_attribute(f"{box} a.stem", "href")))
    wave, rate = sf.read(io.BytesIO(vocals.body()))
    assert vocals.ok and rate == 48_000 and wave.shape == (480_000, 2)
    archive = page.request.get(urljoin(site + "/", page.get_attribute(f"{box} a.stems-zip", "href")))
    assert zipfile.ZipFile(io.BytesIO(archive.body())).namelist() == ["vocals.wav", "instrumental.wav"]
    assert problems == []
    page.close()
