"""Tiny LLM presets shared by the LLM-stage tests: built once per session (a few seconds), loaded once."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from export.llm import build_tiny_lm, build_tiny_lyricist
from model_repository.llm.local import LocalModel


@pytest.fixture(scope="session")
def tiny_lyricist_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_tiny_lyricist(tmp_path_factory.mktemp("tiny-lyricist"), seed=0)


@pytest.fixture(scope="session")
def tiny_lm_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_tiny_lm(tmp_path_factory.mktemp("tiny-lm"), seed=0)


@pytest.fixture(scope="session")
def lyricist_model(tiny_lyricist_dir: Path) -> Iterator[LocalModel]:
    model = LocalModel(tiny_lyricist_dir, name="test-lyricist")
    yield model
    model.close()


@pytest.fixture(scope="session")
def lm_model(tiny_lm_dir: Path) -> Iterator[LocalModel]:
    model = LocalModel(tiny_lm_dir, name="test-lm")
    yield model
    model.close()
