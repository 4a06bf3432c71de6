from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import torch

from export.acestep15.checkpoint import CheckpointError, load_pipeline, read_dims
from export.acestep15.presets import build_tiny, build_tiny_pipeline


@pytest.fixture(scope="module")
def preset(tmp_path_factory) -> Path:
    return build_tiny(tmp_path_factory.mktemp("preset") / "tiny", seed=0)


def _copy(preset: Path, tmp_path: Path) -> Path:
    dest = tmp_path / "ckpt"
    shutil.copytree(preset, dest)
    return dest


def test_tiny_preset_is_deterministic_in_its_seed():
    a = build_tiny_pipeline(seed=0).transformer.state_dict()
    b = build_tiny_pipeline(seed=0).transformer.state_dict()
    c = build_tiny_pipeline(seed=1).transformer.state_dict()
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert any(not torch.equal(a[k], c[k]) for k in a)


def test_tiny_preset_round_trips_through_the_diffusers_layout(preset):
    for folder in ("transformer", "condition_encoder", "text_encoder", "tokenizer", "vae", "scheduler"):
        assert (preset / folder).is_dir()
    pipe = load_pipeline(preset)
    fresh = build_tiny_pipeline(seed=0)
    for name in ("transformer", "condition_encoder", "vae", "text_encoder"):
        loaded, built = getattr(pipe, name).state_dict(), getattr(fresh, name).state_dict()
        assert loaded.keys() == built.keys()
        assert all(torch.equal(loaded[k], built[k]) for k in loaded), name
    dims = read_dims(preset)
    assert dims.samples_per_frame == 1920 and dims.frames_per_second == 25.0 and dims.is_turbo


def test_missing_folder_is_named(tmp_path):
    with pytest.raises(CheckpointError, match="does not exist"):
        load_pipeline(tmp_path / "nowhere")


def test_missing_component_and_file_are_named(preset, tmp_path):
    ckpt = _copy(preset, tmp_path)
    shutil.rmtree(ckpt / "transformer")
    with pytest.raises(CheckpointError, match="missing component folder 'transformer/'"):
        load_pipeline(ckpt)
    ckpt2 = _copy(preset, tmp_path / "b")
    (ckpt2 / "vae" / "config.json").unlink()
    with pytest.raises(CheckpointError, match="missing vae/config.json"):
        load_pipeline(ckpt2)
    ckpt3 = _copy(preset, tmp_path / "c")
    for f in (ckpt3 / "condition_encoder").glob("*.safetensors"):
        f.unlink()
    with pytest.raises(CheckpointError, match="'condition_encoder/' has no weights"):
        load_pipeline(ckpt3)


def _edit_config(ckpt: Path, component: str, **changes: object) -> None:
    """Set keys of ``<ckpt>/<component>/config.json``."""
    path = ckpt / component / "config.json"
    path.write_text(json.dumps(json.loads(path.read_text()) | changes))


def test_config_that_does_not_match_the_weights_names_the_key(preset, tmp_path):
    ckpt = _copy(preset, tmp_path)
    _edit_config(ckpt, "transformer", intermediate_size=96)
    with pytest.raises(CheckpointError) as err:
        load_pipeline(ckpt)
    message = str(err.value)
    assert "transformer" in message and ("mlp" in message or "size mismatch" in message or "shape" in message)
    assert "\n" not in message  # one line, not a stack trace


def test_components_whose_dimensions_disagree_are_refused(preset, tmp_path):
    ckpt = _copy(preset, tmp_path)
    _edit_config(ckpt, "vae", decoder_input_channels=16)
    with pytest.raises(CheckpointError, match=r"vae.decoder_input_channels is 16 but must be 8"):
        load_pipeline(ckpt)
