"""The sampler manifest: one typed class that export writes and the runners read."""

from __future__ import annotations

import json

import pytest

from model_repository.facts.manifest import MANIFEST_FILE, ManifestError, SamplerManifest


def _manifest() -> SamplerManifest:
    return SamplerManifest(family="acestep15", dims={"sample_rate": 48000}, buckets={"frames": [250, 500]})


def test_write_then_read_round_trips(tmp_path):
    m = _manifest()
    m.add_version_set("turbo", {"dit": 1, "vae_decoder": 1}, variant="turbo", is_turbo=True)
    m.add_version_set("sft", {"dit": 2, "vae_decoder": 1}, variant="sft", is_turbo=False)
    path = m.write(tmp_path)
    assert path == tmp_path / MANIFEST_FILE and not (tmp_path / "pipeline.tmp").exists()
    back = SamplerManifest.read(tmp_path)
    assert back == m
    assert back.default_version_set == "turbo"  # the first set added
    assert back.version_set(None) == ("turbo", m.version_sets["turbo"])
    assert back.version_sets["sft"].versions == {"dit": "2", "vae_decoder": "1"}
    raw = json.loads(path.read_text())
    assert raw["version_sets"]["turbo"] == {"versions": {"dit": "1", "vae_decoder": "1"}, "variant": "turbo",
                                            "is_turbo": True}


def test_read_or_new_keeps_version_sets_and_replaces_dims(tmp_path):
    m = _manifest()
    m.add_version_set("turbo", {"dit": 1}, variant="turbo", is_turbo=True)
    m.write(tmp_path)
    again = SamplerManifest.read_or_new(tmp_path, family="acestep15", dims={"sample_rate": 44100}, buckets={})
    assert set(again.version_sets) == {"turbo"} and again.dims == {"sample_rate": 44100}
    with pytest.raises(ManifestError, match="belongs to family 'acestep15', not 'acestep_v1'"):
        SamplerManifest.read_or_new(tmp_path, family="acestep_v1", dims={}, buckets={})


def test_errors_name_the_problem_and_the_fix(tmp_path):
    with pytest.raises(ManifestError, match="no sampler manifest at .*run `tritone export`"):
        SamplerManifest.read(tmp_path)
    (tmp_path / MANIFEST_FILE).write_text("{not json")
    with pytest.raises(ManifestError, match="is not JSON"):
        SamplerManifest.read(tmp_path)
    (tmp_path / MANIFEST_FILE).write_text(json.dumps({"family": "acestep15"}))
    with pytest.raises(ManifestError, match="malformed"):
        SamplerManifest.read(tmp_path)
    m = _manifest()
    with pytest.raises(ManifestError, match="reserved"):
        m.add_version_set("acestep_v1", {"dit": 1}, variant=None)
    m.add_version_set("turbo", {"dit": 1}, variant="turbo")
    with pytest.raises(ManifestError, match=r"field 'version_set' must be one of \['turbo'\].*got 'xl'"):
        m.version_set("xl")
    with pytest.raises(ManifestError, match="no dimension 'hidden'"):
        m.dim("hidden")


def test_family_folders():
    assert SamplerManifest.folder("assets", "acestep15").as_posix() == "assets"  # type: ignore[arg-type]
    assert SamplerManifest.folder("assets", "acestep_v1").as_posix() == "assets/acestep_v1"  # type: ignore[arg-type]
