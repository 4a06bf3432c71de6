"""Loading HT-Demucs checkpoints: the tiny preset round-trips through Meta's package format; every operator mistake
(missing path, not a Demucs file, weights that do not fit, wrong checksum, an incomplete bag, a non-HT-Demucs model)
is one StemsCheckpointError naming the file."""

from __future__ import annotations

import hashlib
import subprocess
import sys

import pytest
import torch

from export.stems.checkpoint import StemsCheckpointError, load, save_package
from export.stems.presets import TINY, build_tiny, build_tiny_model


def test_tiny_preset_round_trips_in_the_package_format(tmp_path):
    path = build_tiny(tmp_path, sources=4)
    package = torch.load(path, weights_only=False)
    assert set(package) == {"klass", "args", "kwargs", "state"}
    assert package["klass"].__module__ == "demucs_infer.htdemucs"
    digest = hashlib.sha256(path.read_bytes()).hexdigest()[:8]
    assert path.name == f"tinyhtdemucs-{digest}.th"  # <signature>-<sha256 prefix>.th, as Meta's files
    model = load(path)
    fresh = build_tiny_model(sources=4)  # seeded: the same weights again
    assert all(torch.equal(a, b) for a, b in zip(model.first.state_dict().values(), fresh.state_dict().values(),
                                                 strict=True))
    assert model.sources == ("drums", "bass", "other", "vocals") and model.segment_samples == 44100
    assert load(tmp_path).name == "tinyhtdemucs"  # a folder with one .th


def test_missing_checkpoint_names_the_path(tmp_path):
    with pytest.raises(StemsCheckpointError, match=r"nope\.th does not exist.*htdemucs"):
        load(tmp_path / "nope.th")


def test_not_a_demucs_file(tmp_path):
    junk = tmp_path / "junk.th"
    junk.write_bytes(b"not a torch file at all")
    with pytest.raises(StemsCheckpointError, match="junk.th is not a Demucs package"):
        load(junk)
    torch.save({"state": {}}, tmp_path / "partial.th")
    with pytest.raises(StemsCheckpointError, match=r"missing key\(s\) \['klass', 'args', 'kwargs'\]"):
        load(tmp_path / "partial.th")


def test_weights_that_do_not_fit_the_architecture(tmp_path):
    model = build_tiny_model(sources=4)
    path = save_package(model, tmp_path / "bad.th")
    package = torch.load(path, weights_only=False)
    package["kwargs"] = dict(package["kwargs"], channels=12)  # the file says 12 channels, the weights have 8
    torch.save(package, path)
    with pytest.raises(StemsCheckpointError, match="bad.th: the weights do not fit the architecture"):
        load(path)


def test_checksum_in_the_name_is_checked(tmp_path):
    path = build_tiny(tmp_path, sources=4)
    wrong = path.rename(tmp_path / "tinyhtdemucs-00000000.th")
    with pytest.raises(StemsCheckpointError, match="Invalid checksum"):
        load(wrong)


def test_only_ht_demucs_is_served(tmp_path):
    from demucs_infer.hdemucs import HDemucs

    path = save_package(HDemucs(sources=["drums", "bass", "other", "vocals"], channels=4), tmp_path / "v3.th")
    with pytest.raises(StemsCheckpointError, match="holds a HDemucs model; only HT-Demucs"):
        load(path)


def test_sources_the_service_cannot_use(tmp_path):
    from demucs_infer.htdemucs import HTDemucs

    torch.manual_seed(0)
    path = save_package(HTDemucs(sources=["drums", "rest"], **TINY), tmp_path / "two.th")
    with pytest.raises(StemsCheckpointError, match=r"sources \['drums', 'rest'\]"):
        load(path)


def test_bag_folder(tmp_path):
    a = build_tiny(tmp_path / "a", sources=4, seed=1)
    b = build_tiny(tmp_path / "b", sources=4, seed=2)
    bag = tmp_path / "bag"
    bag.mkdir()
    (bag / f"m1-{a.stem.split('-')[1]}.th").write_bytes(a.read_bytes())
    (bag / "tiny_ft.yaml").write_text("models: ['m1', 'm2']\nweights: [[1., 0., 1., 0.], [0., 1., 1., 1.]]\n")
    with pytest.raises(StemsCheckpointError, match=r"lists model\(s\) \['m2'\] that are not in"):
        load(bag)
    (bag / f"m2-{b.stem.split('-')[1]}.th").write_bytes(b.read_bytes())
    model = load(bag)
    assert model.name == "tiny_ft" and len(model.models) == 2
    assert model.weights == [[1.0, 0.0, 1.0, 0.0], [0.0, 1.0, 1.0, 1.0]]


def test_cli_error_is_one_readable_line(tmp_path):
    done = subprocess.run(
        [sys.executable, "-m", "orchestrator.cli", "export", "--stems-checkpoint", str(tmp_path / "missing.th"),
         "--out", str(tmp_path / "repo"), "--skip-llm"],
        capture_output=True, text=True, timeout=300,
    )
    assert done.returncode == 2, done.stderr
    assert "missing.th does not exist" in done.stderr and "Traceback" not in done.stderr
