"""Load an ACE-Step 1.5 pipeline directory in the diffusers layout (what ``AceStepPipeline.save_pretrained`` writes).

Every failure an operator can cause — a missing folder or file, weights that do not fit the config, components whose
dimensions disagree — is raised as :class:`CheckpointError` naming the folder, key or dimension, never as a deep stack
trace from inside diffusers.
"""

from __future__ import annotations

import json
import logging
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

logger = logging.getLogger(__name__)

# Components the served pipeline needs, with the weight files any one of which must be present.
REQUIRED = ("transformer", "condition_encoder", "text_encoder", "tokenizer", "vae", "scheduler")
OPTIONAL = ("audio_tokenizer", "audio_token_detokenizer")
_WEIGHT_FILES = ("diffusion_pytorch_model.safetensors", "model.safetensors", "diffusion_pytorch_model.bin")

SAMPLE_RATE = 48_000
# 48 kHz / 1920 samples per latent frame = 25 latent frames per second.
SAMPLES_PER_FRAME = 1920


class CheckpointError(ValueError):
    """A checkpoint directory that cannot be served; the message names the folder/key and the fix."""


@dataclass(frozen=True)
class PipelineDims:
    """The dimensions every exported network and the sampler agree on, read from the component configs."""

    acoustic_dim: int
    text_hidden: int
    condition_hidden: int
    vocab_size: int
    fsq_dim: int
    pool_window: int
    codebook_size: int
    sample_rate: int
    samples_per_frame: int
    is_turbo: bool

    @property
    def frames_per_second(self) -> float:
        return self.sample_rate / self.samples_per_frame


def _read_json(path: Path) -> dict[str, Any]:
    try:
        return json.loads(path.read_text())
    except FileNotFoundError:
        raise CheckpointError(f"missing file {path}") from None
    except json.JSONDecodeError as exc:
        raise CheckpointError(f"{path} is not valid JSON: {exc}") from None


def check_layout(root: Path) -> None:
    """The folder exists and has every component folder with a config and weights."""
    root = Path(root)
    if not root.is_dir():
        raise CheckpointError(
            f"checkpoint folder {root} does not exist (expected an AceStepPipeline.save_pretrained dir)"
        )
    _read_json(root / "model_index.json")
    for name in REQUIRED:
        folder = root / name
        if not folder.is_dir():
            raise CheckpointError(f"checkpoint {root}: missing component folder '{name}/' (required: {list(REQUIRED)})")
        if name == "tokenizer":
            if not (folder / "tokenizer.json").exists() and not (folder / "vocab.json").exists():
                raise CheckpointError(f"checkpoint {root}: '{name}/' has no tokenizer.json")
            continue
        config_name = "scheduler_config.json" if name == "scheduler" else "config.json"
        if not (folder / config_name).exists():
            raise CheckpointError(f"checkpoint {root}: missing {name}/{config_name}")
        if name != "scheduler" and not _has_weights(folder):
            raise CheckpointError(f"checkpoint {root}: '{name}/' has no weights (one of {list(_WEIGHT_FILES)})")


def _has_weights(folder: Path) -> bool:
    return any((folder / f).exists() for f in _WEIGHT_FILES) or any(folder.glob("*.safetensors.index.json"))


def read_dims(root: Path) -> PipelineDims:
    """Read the shared dimensions from the configs and check that the components agree."""
    root = Path(root)
    dit = _read_json(root / "transformer" / "config.json")
    cond = _read_json(root / "condition_encoder" / "config.json")
    text = _read_json(root / "text_encoder" / "config.json")
    vae = _read_json(root / "vae" / "config.json")
    tok = _read_json(root / "audio_tokenizer" / "config.json") if (root / "audio_tokenizer").is_dir() else {}
    detok = (
        _read_json(root / "audio_token_detokenizer" / "config.json")
        if (root / "audio_token_detokenizer").is_dir()
        else {}
    )
    acoustic = int(dit.get("audio_acoustic_hidden_dim", 64))
    checks = [
        ("vae.decoder_input_channels", int(vae.get("decoder_input_channels", 64)), acoustic),
        ("vae.encoder_hidden_size / 2", int(vae.get("encoder_hidden_size", 128)) // 2, acoustic),
        ("condition_encoder.timbre_hidden_dim", int(cond.get("timbre_hidden_dim", 64)), acoustic),
        ("transformer.in_channels", int(dit.get("in_channels", 192)), 3 * acoustic),
        (
            "transformer.encoder_hidden_size",
            int(dit.get("encoder_hidden_size") or dit.get("hidden_size", 2048)),
            int(cond.get("hidden_size", 2048)),
        ),
        ("condition_encoder.text_hidden_dim", int(cond.get("text_hidden_dim", 1024)), int(text["hidden_size"])),
        ("prod(vae.downsampling_ratios)", math.prod(vae.get("downsampling_ratios", [1920])), SAMPLES_PER_FRAME),
    ]
    if detok:
        checks.append(
            ("audio_token_detokenizer.audio_acoustic_hidden_dim", int(detok["audio_acoustic_hidden_dim"]), acoustic)
        )
    for what, got, want in checks:
        if got != want:
            raise CheckpointError(
                f"checkpoint {root}: {what} is {got} but must be {want} for the components to fit together"
            )
    levels = tok.get("fsq_input_levels") or [8, 8, 8, 5, 5, 5]
    return PipelineDims(
        acoustic_dim=acoustic,
        text_hidden=int(text["hidden_size"]),
        condition_hidden=int(cond.get("hidden_size", 2048)),
        vocab_size=int(text["vocab_size"]),
        fsq_dim=int(tok.get("fsq_dim", 2048)),
        pool_window=int(tok.get("pool_window_size", 5)),
        codebook_size=math.prod(levels),
        sample_rate=int(vae.get("sampling_rate", SAMPLE_RATE)),
        samples_per_frame=math.prod(vae.get("downsampling_ratios", [SAMPLES_PER_FRAME])),
        is_turbo=bool(dit.get("is_turbo") or dit.get("model_version") == "turbo"),
    )


def load_pipeline(root: Path, *, dtype: Any = None):
    """Load the pipeline for export or as the in-process reference. Raises :class:`CheckpointError` on any mismatch."""
    import torch
    from diffusers import AceStepPipeline

    root = Path(root)
    check_layout(root)
    read_dims(root)
    check_weight_shapes(root)
    try:
        pipe = AceStepPipeline.from_pretrained(root, dtype=dtype or torch.float32)
    except (OSError, ValueError, RuntimeError, KeyError) as exc:
        raise CheckpointError(f"checkpoint {root}: could not load: {_first_line(exc)}") from None
    for name in REQUIRED:
        if getattr(pipe, name, None) is None:
            raise CheckpointError(f"checkpoint {root}: component '{name}' did not load")
    return pipe


def check_weight_shapes(root: Path) -> None:
    """Build each component from its config on the meta device and compare every key and shape with the stored
    weights, so a config that does not fit its weights is reported by folder, key and shape. (diffusers would fill
    missing keys with fresh random values and only warn.)"""
    import importlib

    import torch
    from safetensors import safe_open

    index = _read_json(root / "model_index.json")
    for name in REQUIRED + OPTIONAL:
        entry = index.get(name)
        folder = root / name
        files = sorted(folder.glob("*.safetensors"))
        if not entry or entry[0] is None or name in ("tokenizer", "scheduler") or not files:
            continue
        library, class_name = entry
        try:
            owner = importlib.import_module(library)
        except ModuleNotFoundError:  # pipeline-local modules are listed by the pipeline folder's name
            owner = importlib.import_module(f"diffusers.pipelines.{library}")
        cls = getattr(owner, class_name)
        with torch.device("meta"):
            if library == "transformers":
                from transformers import AutoConfig

                module = cls(AutoConfig.from_pretrained(folder))
            else:
                module = cls.from_config(cls.load_config(folder))
        stored: dict[str, tuple[int, ...]] = {}
        for f in files:
            with safe_open(str(f), framework="pt") as handle:
                for key in handle.keys():
                    stored[key] = tuple(handle.get_slice(key).get_shape())
        for key, tensor in module.state_dict().items():
            if key not in stored:
                if key.endswith("lm_head.weight"):  # tied to the input embeddings, not stored
                    continue
                raise CheckpointError(f"checkpoint {root}: '{name}/' weights lack key '{key}' {tuple(tensor.shape)}")
            if stored[key] != tuple(tensor.shape):
                raise CheckpointError(
                    f"checkpoint {root}: '{name}/' key '{key}' has shape {stored[key]} in the weights but "
                    f"{tuple(tensor.shape)} by '{name}/config.json'"
                )


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return text[0] if text else type(exc).__name__
