"""The LLM stage's models in a Triton repository: ``lyricist`` and ``lm`` (the ACE-Step 1.5 5 Hz LM).

Weights come from a local Hugging Face folder (``lyricist_dir`` / ``lm_dir``: any causal LM with a fast tokenizer and a
chat template; a Qwen-family chat model is the lyricist's reference, an ``acestep-5Hz-lm-*`` folder the LM's), from
the ``tiny`` preset (real Qwen3 classes at toy size with random weights and a locally trained byte-level BPE
tokenizer: no download), or, for the lyricist only, from an OpenAI-compatible endpoint named in the config (or by
``TRITONE_LYRICIST_ENDPOINT`` at run time). A model with none of these is still written: it loads and answers every
request with ``<name>: not configured: ...`` naming the setting to change.

Layout::

    repo/lyricist/config.pbtxt       decoupled Python model, one STRING input "request", one STRING output "event"
    repo/lyricist/1/model.py         copy of model_repository/triton_models/lyricist/model.py
    repo/lyricist/1/config.json ...  the weights in Hugging Face layout (hard links to the source folder when possible)
    repo/lm/...                      the same for the 5 Hz LM
"""

from __future__ import annotations

import json
import logging
import os
import shutil
from pathlib import Path
from typing import Literal

from model_repository.triton_models import install_entry_point

logger = logging.getLogger(__name__)

_SOURCE_MARKER = ".tritone-source.json"

# Special tokens of the Qwen chat format, plus the reasoning tags the 5 Hz LM writes its metadata between.
_SPECIAL_TOKENS = ("<|endoftext|>", "<|im_start|>", "<|im_end|>")
_THINK_TOKENS = ("<think>", "</think>")
# ChatML, as Qwen models use it.
CHAT_TEMPLATE = (
    "{%- for message in messages %}"
    "{{- '<|im_start|>' + message['role'] + '\\n' + message['content'] + '<|im_end|>' + '\\n' }}"
    "{%- endfor %}"
    "{%- if add_generation_prompt %}{{- '<|im_start|>assistant\\n' }}{%- endif %}"
)

# A small built-in corpus for the tiny tokenizers: song-plan JSON, structure tags, the LM's metadata lines, lyrics in
# Chinese and English, and the prompt vocabulary. Enough for BPE merges that make prompts a few hundred tokens long.
_CORPUS = """
{"title": "海边的单车", "lyrics": "[Verse 1]\\n周末的风 吹起白衬衫\\n阳光铺满那条海岸线\\n[Chorus]\\n骑着单车去看海\\n",
"caption": "sunny mandopop, acoustic guitar, drums, warm male vocal", "bpm": 96, "key_scale": "C major",
"time_signature": 4, "duration": 210}
[Intro] [Verse 1] [Pre-Chorus] [Chorus] [Verse 2] [Bridge] [Outro] [Interlude] [Hook] [Instrumental]
<think>
bpm: 120
caption: A calm piano ballad with soft strings and an intimate female vocal.
duration: 180
keyscale: A minor
language: en
timesignature: 4
</think>
# Instruction
Generate audio semantic tokens based on the given conditions:
# Caption
upbeat pop song with bright synths
# Lyric
Hello world, the weekend wind lifts my open shirt
Sunlight spills along the coast, we ride to the sea
The city lights are fading slowly, I keep singing in the night
我们在路上 唱着歌 看星星 等天亮 风吹过 心飞翔
爱 在 海 天 光 风 夜 梦 心 歌 走 来 去 你 我 他 的 了 是 不 一 在 有 人 这 中 大 为 上 个
theme style rhyme vocal gender male female duration seconds language instrumental mode sing track classes
drums bass guitar keyboard strings synth brass woodwinds percussion fx vocals backing_vocals
major minor C D E F G A B # b 0 1 2 3 4 5 6 7 8 9 30 60 90 120 150 180 210 240 300 600
你是一位专业的作词人和音乐制作人。根据主题写出完整的歌曲方案,只输出一个 JSON 对象。
You are a professional lyricist and music producer. Write a complete song plan as one JSON object.
"""


def _corpus_lines() -> list[str]:
    lines = [line for line in _CORPUS.splitlines() if line.strip()]
    # Repeat so frequent pairs clear the trainer's minimum frequency; the order is fixed, so training is deterministic.
    return lines * 8


def build_tiny_tokenizer(*, with_audio_codes: bool, vocab_size: int = 1024):  # noqa: ANN201 - transformers type
    """A byte-level BPE tokenizer trained on :data:`_CORPUS`, with the Qwen special tokens, ``<think>``/``</think>``
    and (for the 5 Hz LM) the 64,000 ``<|audio_code_N|>`` tokens, wrapped in ``PreTrainedTokenizerFast``."""
    from tokenizers import AddedToken, Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    from model_repository.llm.music import AUDIO_CODEBOOK_SIZE

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=list(_SPECIAL_TOKENS),
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tok.train_from_iterator(_corpus_lines(), trainer)
    tok.add_tokens([AddedToken(t, special=False, normalized=False) for t in _THINK_TOKENS])
    if with_audio_codes:
        tok.add_tokens(
            [AddedToken(f"<|audio_code_{i}|>", special=False, normalized=False) for i in range(AUDIO_CODEBOOK_SIZE)]
        )
    return PreTrainedTokenizerFast(
        tokenizer_object=tok,
        eos_token="<|im_end|>",
        pad_token="<|endoftext|>",
        chat_template=CHAT_TEMPLATE,
        padding_side="left",
    )


def _build_tiny(out_dir: Path, *, seed: int, with_audio_codes: bool) -> Path:
    import torch
    from transformers import Qwen3Config, Qwen3ForCausalLM
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()

    tokenizer = build_tiny_tokenizer(with_audio_codes=with_audio_codes)
    config = Qwen3Config(
        vocab_size=len(tokenizer),
        hidden_size=64,
        intermediate_size=128,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        head_dim=16,
        max_position_embeddings=8192,
        tie_word_embeddings=True,
        bos_token_id=tokenizer.convert_tokens_to_ids("<|endoftext|>"),
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
    )
    torch.manual_seed(seed)
    model = Qwen3ForCausalLM(config).eval()
    out_dir.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(out_dir)
    tokenizer.save_pretrained(out_dir)
    return out_dir


def build_tiny_lyricist(out_dir: Path, seed: int = 0) -> Path:
    """A random 2-layer, 64-wide Qwen3 chat model + tokenizer in Hugging Face layout (``save_pretrained``)."""
    return _build_tiny(Path(out_dir), seed=seed, with_audio_codes=False)


def build_tiny_lm(out_dir: Path, seed: int = 0) -> Path:
    """The same for the 5 Hz LM, its vocabulary extended with the 64,000 audio-code tokens."""
    return _build_tiny(Path(out_dir), seed=seed + 1, with_audio_codes=True)


# --------------------------------------------------------------------------------------------------------------------
# Writing the repository
# --------------------------------------------------------------------------------------------------------------------


def config_pbtxt(name: str, *, target: Literal["cpu", "gpu"], parameters: dict[str, str]) -> str:
    """The Triton config of a decoupled LLM model: one JSON request in, a stream of JSON events out."""
    params = "\n".join(
        f'parameters: {{ key: "{k}" value: {{ string_value: {json.dumps(v)} }} }}'
        for k, v in sorted(parameters.items())
    )
    return (
        f'name: "{name}"\n'
        'backend: "python"\n'
        "max_batch_size: 0\n"
        "model_transaction_policy { decoupled: true }\n"
        'input [ { name: "request" data_type: TYPE_STRING dims: [ 1 ] } ]\n'
        'output [ { name: "event" data_type: TYPE_STRING dims: [ 1 ] } ]\n'
        f"instance_group [ {{ count: 1 kind: {'KIND_GPU' if target == 'gpu' else 'KIND_CPU'} }} ]\n"
        f"{params}\n"
    )


def _link_tree(src: Path, dest: Path) -> None:
    """Mirror the files of ``src`` into ``dest`` as hard links (copies across file systems)."""
    for path in sorted(src.rglob("*")):
        if path.is_dir() or any(part.startswith(".") for part in path.relative_to(src).parts):
            continue
        target = dest / path.relative_to(src)
        target.parent.mkdir(parents=True, exist_ok=True)
        if target.exists():
            target.unlink()
        try:
            os.link(path, target)
        except OSError:
            shutil.copy2(path, target)


def _install_weights(version_dir: Path, source: dict[str, str], build: object) -> None:
    """Put the weights described by ``source`` into ``version_dir`` unless the same source is already there."""
    marker = version_dir / _SOURCE_MARKER
    if marker.exists() and json.loads(marker.read_text()) == source and (version_dir / "config.json").exists():
        logger.info("%s: weights already in place (%s)", version_dir, source)
        return
    for child in version_dir.iterdir() if version_dir.exists() else []:
        if child.name != "model.py":
            shutil.rmtree(child) if child.is_dir() else child.unlink()
    version_dir.mkdir(parents=True, exist_ok=True)
    if source["kind"] == "dir":
        src = Path(source["path"])
        if not (src / "config.json").is_file():
            raise FileNotFoundError(
                f"{src} is not a Hugging Face model folder (no config.json); pass the folder that save_pretrained wrote"
            )
        _link_tree(src, version_dir)
    elif source["kind"] == "tiny":
        assert callable(build)
        build(version_dir)
    marker.write_text(json.dumps(source))


def _write_model(
    repo: Path, name: str, *, source: dict[str, str] | None, target: Literal["cpu", "gpu"], parameters: dict[str, str]
) -> None:
    folder = repo / name
    version_dir = folder / "1"
    version_dir.mkdir(parents=True, exist_ok=True)
    if source is not None and source["kind"] in ("dir", "tiny"):
        build = build_tiny_lyricist if name == "lyricist" else build_tiny_lm
        _install_weights(version_dir, source, build)
    else:
        # Not a weights-backed model (endpoint or unconfigured): drop stale weights so the config is the truth.
        for child in version_dir.iterdir():
            if child.name != "model.py":
                shutil.rmtree(child) if child.is_dir() else child.unlink()
    install_entry_point(name, version_dir)
    (folder / "config.pbtxt").write_text(config_pbtxt(name, target=target, parameters=parameters))


def add_llm_models(
    repo: Path,
    *,
    preset: str | None = "tiny",
    lyricist_dir: Path | None = None,
    lm_dir: Path | None = None,
    lyricist_endpoint: str | None = None,
    target: Literal["cpu", "gpu"] = "cpu",
) -> list[str]:
    """Write ``lyricist`` and ``lm`` into ``repo``; returns the model names written. Re-runnable: weights already in
    place from the same source are kept. Per model the source is, in order: its folder, (lyricist) the endpoint, the
    preset; with none of them the model is written unconfigured."""
    if preset not in (None, "tiny"):
        raise ValueError(f"preset={preset!r}; allowed: 'tiny' or None")
    if target not in ("cpu", "gpu"):
        raise ValueError(f"target={target!r}; allowed: 'cpu', 'gpu'")
    if lyricist_dir is not None and lyricist_endpoint:
        raise ValueError("give either lyricist_dir or lyricist_endpoint, not both")
    repo = Path(repo)
    repo.mkdir(parents=True, exist_ok=True)
    device = {
        "device": "cuda" if target == "gpu" else "cpu",
        "dtype": "bfloat16" if target == "gpu" else "float32",
        # One intra-op thread on CPU (see LocalModel); on GPU torch's CPU threads barely matter.
        "torch_threads": "1" if target == "cpu" else "",
    }

    def source_for(folder: Path | None) -> dict[str, str] | None:
        if folder is not None:
            return {"kind": "dir", "path": str(Path(folder).resolve())}
        if preset == "tiny":
            return {"kind": "tiny", "seed": "0"}
        return None

    lyricist_source = source_for(lyricist_dir) if not lyricist_endpoint else {"kind": "endpoint"}
    lyricist_params = device | {
        "source": lyricist_source["kind"] if lyricist_source else "none",
        "endpoint": lyricist_endpoint or "",
        # Plan budget: the tiny preset's grammar is shrunk to fit (see constraints.fit_plan_layout).
        "max_new_tokens": "320" if lyricist_source and lyricist_source["kind"] == "tiny" else "4096",
        "expand_max_new_tokens": "48" if lyricist_source and lyricist_source["kind"] == "tiny" else "320",
        "max_batch_rows": "16",
    }
    _write_model(repo, "lyricist", source=lyricist_source, target=target, parameters=lyricist_params)

    lm_source = source_for(lm_dir)
    lm_params = device | {
        "source": lm_source["kind"] if lm_source else "none",
        "max_new_tokens": "320" if lm_source and lm_source["kind"] == "tiny" else "2048",
        "max_batch_rows": "16",
    }
    _write_model(repo, "lm", source=lm_source, target=target, parameters=lm_params)
    logger.info("LLM models in %s: lyricist=%s lm=%s", repo, lyricist_params["source"], lm_params["source"])
    return ["lyricist", "lm"]
