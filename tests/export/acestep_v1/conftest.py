"""Shared fixtures for the ACE-Step v1 tests: the reference folder (skip when absent) and the tiny preset."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import torch

from export.acestep_v1.reference import reference_dir


@pytest.fixture(scope="session")
def ref() -> Path:
    path = reference_dir()
    if path is None:
        pytest.skip("shared/reference/acestep-v1 is not present (set TRITONE_SHARED_DIR)")
    return path


@pytest.fixture(scope="session")
def tiny_ref(ref: Path) -> Path:
    return ref / "tiny"


def load_tensors(path: Path) -> dict[str, torch.Tensor]:
    from safetensors.torch import load_file

    return load_file(str(path))


def read_json(path: Path) -> Any:
    return json.loads(path.read_text())


def read_keys(path: Path) -> dict[str, tuple[int, ...]]:
    """A keys/*.tsv file -> {key: shape}."""
    rows = [line.rstrip("\n").split("\t") for line in path.read_text().splitlines()[1:] if line.strip()]
    return {r[0]: tuple(int(x) for x in r[1].split("x")) if r[1] else () for r in rows}


def max_err(a: torch.Tensor, b: torch.Tensor) -> float:
    assert a.shape == b.shape, (tuple(a.shape), tuple(b.shape))
    return (a.double() - b.double()).abs().max().item()


@pytest.fixture(scope="session")
def tiny_preset(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from export.acestep_v1.presets import build_tiny_v1

    return build_tiny_v1(tmp_path_factory.mktemp("acestep_v1_tiny"), seed=0)
