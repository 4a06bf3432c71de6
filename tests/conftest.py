"""Session-wide fixtures: the tiny model repository (exported once through the real CLI) and a real Triton serving it.

Building the tiny repository costs about a minute on 2 cores, so every test that needs it shares one copy; tests that
change a repository (version swaps) copy it first.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from export.cli import tiny_export_argv

REPO_ROOT = Path(__file__).resolve().parents[1]


def _export_tiny(out: Path, work: Path) -> None:
    cmd = tiny_export_argv(out, work=work)
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=900, cwd=REPO_ROOT)
    if done.returncode != 0:
        raise RuntimeError(f"`tritone export --preset tiny` failed ({done.returncode}):\n{done.stdout}\n{done.stderr}")


@pytest.fixture(scope="session")
def tiny_work(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Scratch folder of the tiny export: holds the tiny presets (diffusers layout) under ``presets/``."""
    return tmp_path_factory.mktemp("tiny-work")


@pytest.fixture(scope="session")
def tiny_repository(tmp_path_factory: pytest.TempPathFactory, tiny_work: Path) -> Path:
    """A complete tiny CPU model repository written by `tritone export --preset tiny --target cpu`.

    Set TRITONE_TEST_REPOSITORY to reuse an existing export (local iteration only)."""
    reuse = os.environ.get("TRITONE_TEST_REPOSITORY")
    if reuse:
        return Path(reuse)
    out = tmp_path_factory.mktemp("tiny-repo") / "repository"
    _export_tiny(out, tiny_work)
    return out


@pytest.fixture(scope="session")
def tiny_preset_dirs(tiny_repository: Path, tiny_work: Path) -> dict[str, Path]:
    reuse = os.environ.get("TRITONE_TEST_REPOSITORY")
    work = Path(reuse).parent / f".{Path(reuse).name}-work" if reuse else tiny_work
    return {v: work / "presets" / f"acestep15-tiny-{v}" for v in ("turbo", "sft", "base")}


@pytest.fixture(scope="session")
def triton(tiny_repository: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[object]:
    """One real tritonserver on free ports serving the tiny repository for the whole session."""
    from model_repository.launcher.server import TritonServer

    log = tmp_path_factory.mktemp("triton-log") / "tritonserver.log"
    server = TritonServer(tiny_repository, log_path=log)
    server.start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def repository_copy(tiny_repository: Path, tmp_path: Path) -> Path:
    """A private copy of the tiny repository for tests that add or remove versions."""
    dest = tmp_path / "repository"
    shutil.copytree(tiny_repository, dest)
    return dest
