"""The v1 family in the tiny model repository (`tritone export --preset tiny`): configs are the contracts, the
sampler's v1 manifest and tokenizer, and the checkpoint family detection of `tritone export --checkpoint`."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from export.acestep_v1.networks import ENCODER_BUCKETS, FRAME_BUCKETS, NETWORKS, build_contracts
from export.acestep_v1.repository import DEFAULT_VERSION_SET, is_checkpoint, load_v1
from export.cli import ExportError, checkpoint_family


@pytest.fixture(scope="module")
def v1_preset_dir(tiny_repository: Path, tiny_work: Path) -> Path:
    reuse = os.environ.get("TRITONE_TEST_REPOSITORY")
    work = Path(reuse).parent / f".{Path(reuse).name}-work" if reuse else tiny_work
    return work / "presets" / "acestep_v1-tiny"


def test_v1_configs_are_the_contracts(tiny_repository, v1_preset_dir):
    contracts = build_contracts(load_v1(v1_preset_dir).dims)
    for name in NETWORKS:
        written = (tiny_repository / name / "config.pbtxt").read_text()
        assert written == contracts[name].triton_config(platform="cpu", version_policy="{ all { } }")
        assert (tiny_repository / name / "1" / "model.onnx").is_file()
        assert (tiny_repository / name / "1" / "model.py").is_file()


def test_v1_sampler_assets(tiny_repository):
    assets = tiny_repository / "sampler" / "1" / "assets" / "acestep_v1"
    manifest = json.loads((assets / "pipeline.json").read_text())
    assert manifest["family"] == "acestep_v1" and manifest["default_version_set"] == DEFAULT_VERSION_SET
    assert manifest["version_sets"][DEFAULT_VERSION_SET]["versions"] == {name: "1" for name in NETWORKS}
    assert manifest["buckets"]["frames"] == list(FRAME_BUCKETS)
    assert manifest["buckets"]["encoder"] == list(ENCODER_BUCKETS)
    assert manifest["dims"]["sample_rate"] == 48000 and manifest["dims"]["trained_frames"] == 2583
    assert (assets / DEFAULT_VERSION_SET / "tokenizer" / "tokenizer.json").is_file()
    # The 1.5 family's manifest is untouched beside it.
    v15 = json.loads((tiny_repository / "sampler" / "1" / "assets" / "pipeline.json").read_text())
    assert v15["family"] == "acestep15" and set(v15["version_sets"]) == {"turbo", "sft", "base"}


def test_checkpoint_family_is_read_from_the_layout(v1_preset_dir, tiny_preset_dirs, tmp_path):
    assert is_checkpoint(v1_preset_dir) and checkpoint_family(v1_preset_dir, None) == "acestep_v1"
    assert checkpoint_family(tiny_preset_dirs["turbo"], None) == "acestep15"
    with pytest.raises(ExportError, match="acestep_v1 checkpoint"):
        checkpoint_family(v1_preset_dir, "acestep15")
    with pytest.raises(ExportError, match="lacks the ACE-Step v1 folders"):
        checkpoint_family(tiny_preset_dirs["turbo"], "acestep_v1")
    with pytest.raises(ExportError, match="--preset tiny"):
        checkpoint_family(v1_preset_dir, "all")
