"""Fixtures of the page tests: one headless Chromium per module; the real orchestrator (``tritone serve`` in a child
process, one web user) on the session's tritonserver for the tests that make songs."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from tests.orchestrator.support import served_orchestrator
from tests.orchestrator.web.browser import CHROMIUM, CHROMIUM_ARGS, PASSWORD, USER, browser_missing


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        chromium = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            yield chromium
        finally:
            chromium.close()


@pytest.fixture(scope="module")
def site(triton: Any, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """The orchestrator on a free port, talking to the session's tritonserver, with the user ``USER``."""
    if browser_missing():
        pytest.skip(str(browser_missing()))
    with served_orchestrator(triton.grpc_url, tmp_path_factory.mktemp("web-orchestrator"), USER, PASSWORD) as base:
        yield base
