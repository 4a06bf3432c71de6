"""Checkpoint loading (real folder layout, strict errors naming what is wrong) and the deterministic tiny preset."""

from __future__ import annotations

import hashlib
import json
import shutil
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file, save_file

from export.acestep_v1 import checkpoint as C
from export.acestep_v1.lyric_tokenizer import LyricTokenizer
from export.acestep_v1.presets import PRESET_FILE, build_tiny_v1


def _digest(root: Path) -> dict[str, str]:
    return {str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(root.rglob("*")) if p.is_file()}


def test_preset_layout_and_determinism(tiny_preset, tmp_path):
    for name in C.COMPONENT_DIRS:
        assert (tiny_preset / name / "config.json").is_file(), name
    assert json.loads((tiny_preset / PRESET_FILE).read_text())["family"] == "acestep-v1"
    again = build_tiny_v1(tmp_path / "again", seed=0)
    assert _digest(again) == _digest(tiny_preset)
    other = build_tiny_v1(tmp_path / "other", seed=1)
    assert _digest(other)[f"{C.TRANSFORMER_DIR}/{C.WEIGHTS_NAME}"] != _digest(tiny_preset)[
        f"{C.TRANSFORMER_DIR}/{C.WEIGHTS_NAME}"]


def test_preset_loads_and_generates_end_to_end(tiny_preset, caplog):
    caplog.set_level("INFO", logger="export.acestep_v1.checkpoint")
    dit = C.load_transformer(tiny_preset)
    assert any("dropped 28 never-read key(s)" in r.getMessage() for r in caplog.records)
    music = C.load_music_dcae(tiny_preset)
    text_encoder, text_tokenizer = C.load_text_encoder(tiny_preset)
    lyrics = LyricTokenizer().tokenize_lyrics("[verse]\nHello world\n你好世界")
    enc = text_tokenizer(["pop, female vocal, 120 bpm"], return_tensors="pt", padding=True)
    with torch.no_grad():
        text = text_encoder(**enc).last_hidden_state
        states, mask = dit.encode(text, enc["attention_mask"], torch.zeros(1, 16), torch.tensor([lyrics.ids]),
                                  torch.tensor([lyrics.mask]))
        x = torch.randn(1, 8, 16, 12, generator=torch.Generator().manual_seed(0))
        v = dit.decode(x, torch.ones(1, 12), states, mask, torch.tensor([500.0]))
        wave = music.decode(x - 0.1 * v)
    assert v.shape == x.shape and torch.isfinite(v).all() and v.abs().max() > 0
    assert wave.shape == (1, 2, 53499)  # ceil(12 * 4096 * 160 / 147): 12 latent frames at 48 kHz
    assert torch.isfinite(wave).all()


def _copy(src: Path, dst: Path) -> Path:
    shutil.copytree(src, dst)
    return dst


def test_missing_folder_is_named(tiny_preset, tmp_path):
    root = _copy(tiny_preset, tmp_path / "ckpt")
    shutil.rmtree(root / C.VOCODER_DIR)
    with pytest.raises(C.CheckpointError, match="missing folder.*music_vocoder"):
        C.locate(root)
    with pytest.raises(C.CheckpointError, match="music_vocoder"):
        C.load_music_dcae(root)
    with pytest.raises(C.CheckpointError, match="does not exist"):
        C.load_transformer(tmp_path / "nowhere")


def _rewrite(folder: Path, edit) -> None:
    path = folder / C.WEIGHTS_NAME
    state = load_file(str(path))
    edit(state)
    save_file(state, str(path))


def test_missing_key_wrong_shape_and_unexpected_key_are_named(tiny_preset, tmp_path):
    root = _copy(tiny_preset, tmp_path / "ckpt")
    folder = root / C.TRANSFORMER_DIR
    original = load_file(str(folder / C.WEIGHTS_NAME))

    _rewrite(folder, lambda s: s.pop("final_layer.linear.bias"))
    with pytest.raises(C.CheckpointError, match=r"missing key\(s\) final_layer.linear.bias"):
        C.load_transformer(root)

    save_file(original, str(folder / C.WEIGHTS_NAME))
    _rewrite(folder, lambda s: s.__setitem__("genre_embedder.weight", torch.zeros(3, 3)))
    with pytest.raises(C.CheckpointError, match=r"genre_embedder.weight has shape \(3, 3\).*\(64, 32\)"):
        C.load_transformer(root)

    save_file(original, str(folder / C.WEIGHTS_NAME))
    _rewrite(folder, lambda s: s.__setitem__("transformer_blocks.0.mystery.weight", torch.zeros(1)))
    with pytest.raises(C.CheckpointError, match="unexpected key.*transformer_blocks.0.mystery.weight"):
        C.load_transformer(root)


def test_vocoder_mel_buffers_may_be_absent(tiny_preset, tmp_path):
    root = _copy(tiny_preset, tmp_path / "ckpt")
    _rewrite(root / C.VOCODER_DIR, lambda s: [s.pop(k) for k in sorted(C.OPTIONAL_VOCODER_KEYS)])
    loaded = C.load_vocoder(root)
    reference = C.load_vocoder(tiny_preset)
    for key in C.OPTIONAL_VOCODER_KEYS:
        assert torch.equal(loaded.state_dict()[key], reference.state_dict()[key])


def test_sharded_transformer_and_dtype(tiny_preset, tmp_path):
    root = _copy(tiny_preset, tmp_path / "ckpt")
    folder = root / C.TRANSFORMER_DIR
    state = load_file(str(folder / C.WEIGHTS_NAME))
    (folder / C.WEIGHTS_NAME).unlink()
    keys = sorted(state)
    half = len(keys) // 2
    weight_map = {}
    for i, part in enumerate((keys[:half], keys[half:])):
        name = f"diffusion_pytorch_model-0000{i + 1}-of-00002.safetensors"
        save_file({k: state[k].to(torch.bfloat16) for k in part}, str(folder / name))
        weight_map.update({k: name for k in part})
    (folder / "diffusion_pytorch_model.safetensors.index.json").write_text(json.dumps({"weight_map": weight_map}))
    model = C.load_transformer(root)
    assert next(model.parameters()).dtype == torch.float32
    assert torch.equal(model.state_dict()["genre_embedder.weight"],
                       state["genre_embedder.weight"].to(torch.bfloat16).float())
    (folder / weight_map[keys[0]]).unlink()
    with pytest.raises(C.CheckpointError, match="shard .* is missing"):
        C.load_transformer(root)
