"""export.llm: tiny presets (deterministic, real HF layout, special tokens) and writing the two models into a model
repository (layout, re-runs, every source kind)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from safetensors.torch import load_file
from transformers import AutoTokenizer, Qwen3ForCausalLM

from export.llm import add_llm_models, build_tiny_lm, build_tiny_lyricist
from model_repository.llm import music


def test_tiny_presets_are_deterministic_hf_folders(tmp_path: Path) -> None:
    a = build_tiny_lyricist(tmp_path / "a", seed=0)
    b = build_tiny_lyricist(tmp_path / "b", seed=0)
    c = build_tiny_lyricist(tmp_path / "c", seed=1)
    wa, wb, wc = (load_file(p / "model.safetensors") for p in (a, b, c))
    assert all((wa[k] == wb[k]).all() for k in wa)
    assert any((wa[k] != wc[k]).any() for k in wa)
    assert (a / "tokenizer.json").read_bytes() == (b / "tokenizer.json").read_bytes()
    model = Qwen3ForCausalLM.from_pretrained(a)
    assert (model.config.hidden_size, model.config.num_hidden_layers) == (64, 2)
    tok = AutoTokenizer.from_pretrained(a)
    assert tok.eos_token == "<|im_end|>" and tok.pad_token == "<|endoftext|>"
    chat = tok.apply_chat_template(
        [{"role": "user", "content": "周末 sea"}], tokenize=False, add_generation_prompt=True
    )
    assert chat == "<|im_start|>user\n周末 sea<|im_end|>\n<|im_start|>assistant\n"
    for special in ("<|im_start|>", "<|im_end|>", "<think>", "</think>"):
        assert len(tok.encode(special, add_special_tokens=False)) == 1
    assert tok.decode(tok.encode("周末的风 Hello")) == "周末的风 Hello"  # byte-level: any text round-trips


def test_tiny_lm_has_the_audio_code_vocabulary(tmp_path: Path) -> None:
    folder = build_tiny_lm(tmp_path / "lm")
    tok = AutoTokenizer.from_pretrained(folder)
    ids = tok.encode("<|audio_code_0|><|audio_code_63999|>", add_special_tokens=False)
    assert len(ids) == 2 and tok.decode(ids) == "<|audio_code_0|><|audio_code_63999|>"
    assert len(tok) > music.AUDIO_CODEBOOK_SIZE
    config = json.loads((folder / "config.json").read_text())
    assert config["vocab_size"] == len(tok)


def test_add_llm_models_layout_and_rerun(tmp_path: Path) -> None:
    repo = tmp_path / "repo"
    assert add_llm_models(repo) == ["lyricist", "lm"]
    for name in ("lyricist", "lm"):
        config = (repo / name / "config.pbtxt").read_text()
        assert f'name: "{name}"' in config and "decoupled: true" in config and "max_batch_size: 0" in config
        assert 'name: "request" data_type: TYPE_STRING dims: [ 1 ]' in config
        assert 'name: "event" data_type: TYPE_STRING dims: [ 1 ]' in config
        assert "KIND_CPU" in config and 'key: "source" value: { string_value: "tiny" }' in config
        version = repo / name / "1"
        assert (version / "model.py").read_text() == (
            Path(__file__).resolve().parents[2] / "model_repository" / "triton_models" / name / "model.py"
        ).read_text()
        assert (version / "config.json").is_file() and (version / "tokenizer.json").is_file()
    weights = repo / "lm" / "1" / "model.safetensors"
    stamp = weights.stat().st_mtime_ns
    add_llm_models(repo)  # re-run: nothing rebuilt
    assert weights.stat().st_mtime_ns == stamp


def test_add_llm_models_sources(tmp_path: Path) -> None:
    source = build_tiny_lyricist(tmp_path / "my-chat-model")
    repo = tmp_path / "repo"
    add_llm_models(repo, preset=None, lyricist_dir=source, target="gpu")
    lyricist = (repo / "lyricist" / "config.pbtxt").read_text()
    assert 'string_value: "dir"' in lyricist and "KIND_GPU" in lyricist and 'string_value: "cuda"' in lyricist
    assert (repo / "lyricist" / "1" / "model.safetensors").read_bytes() == (source / "model.safetensors").read_bytes()
    # No lm weights and no preset: written unconfigured (loads, answers "lm: not configured").
    assert 'key: "source" value: { string_value: "none" }' in (repo / "lm" / "config.pbtxt").read_text()
    assert not (repo / "lm" / "1" / "config.json").exists()
    # Switching the lyricist to an endpoint drops the weights; the URL lands in the config.
    add_llm_models(repo, preset=None, lyricist_endpoint="http://127.0.0.1:9/v1")
    lyricist = (repo / "lyricist" / "config.pbtxt").read_text()
    assert 'key: "endpoint" value: { string_value: "http://127.0.0.1:9/v1" }' in lyricist
    assert sorted(p.name for p in (repo / "lyricist" / "1").iterdir()) == ["model.py"]


def test_add_llm_models_rejects_bad_arguments(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="preset='huge'"):
        add_llm_models(tmp_path, preset="huge")
    with pytest.raises(ValueError, match="either lyricist_dir or lyricist_endpoint"):
        add_llm_models(tmp_path, lyricist_dir=tmp_path, lyricist_endpoint="http://x")
    with pytest.raises(FileNotFoundError, match="not a Hugging Face model folder"):
        add_llm_models(tmp_path / "r", lyricist_dir=tmp_path / "nothing-here")
