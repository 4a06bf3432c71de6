"""Load an ACE-Step v1 checkpoint folder (the ``ACE-Step/ACE-Step-v1-3.5B`` layout) into the models of this package.

Layout (each folder as ``save_pretrained`` writes it)::

    <root>/ace_step_transformer/  config.json + diffusion_pytorch_model[.safetensors | -0000k-of-0000n.safetensors
                                  + diffusion_pytorch_model.safetensors.index.json]
    <root>/music_dcae_f8c8/       config.json + diffusion_pytorch_model.safetensors
    <root>/music_vocoder/         config.json + diffusion_pytorch_model.safetensors
    <root>/umt5-base/             a transformers UMT5 checkpoint + its tokenizer

Loading is strict: a missing folder, file, key or a shape that disagrees raises :class:`CheckpointError` naming it.
Two exceptions, both by exact name:

* the transformer's 204 keys that inference never reads (the diffusers ``Attention`` ``add_*_proj``/``to_add_out``
  of each cross-attention and the training-only REPA ``projectors``) are accepted and dropped;
* the vocoder's deterministic mel buffers (Hann window, mel filterbank) may be absent and are then rebuilt.
"""

from __future__ import annotations

import json
import logging
import re
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from export.acestep_v1.dcae import MusicDCAE, build_autoencoder_dc
from export.acestep_v1.transformer import ACEStepV1Transformer, TransformerConfig
from export.acestep_v1.vocoder import MusicVocoder, VocoderConfig

logger = logging.getLogger(__name__)

TRANSFORMER_DIR = "ace_step_transformer"
DCAE_DIR = "music_dcae_f8c8"
VOCODER_DIR = "music_vocoder"
TEXT_ENCODER_DIR = "umt5-base"
COMPONENT_DIRS = (TRANSFORMER_DIR, DCAE_DIR, VOCODER_DIR, TEXT_ENCODER_DIR)
WEIGHTS_NAME = "diffusion_pytorch_model.safetensors"

# Keys present in the real transformer checkpoint that inference never reads (accepted, then dropped).
_UNUSED_TRANSFORMER_KEY = re.compile(
    r"^(transformer_blocks\.\d+\.cross_attn\.(add_q_proj|add_k_proj|add_v_proj|to_add_out)"
    r"|projectors\.\d+\.[024])\.(weight|bias)$"
)
# Deterministic vocoder buffers that a checkpoint may lack (rebuilt from the config).
OPTIONAL_VOCODER_KEYS = frozenset({"mel_transform.spectrogram.window", "mel_transform.mel_scale.fb"})


class CheckpointError(RuntimeError):
    """A checkpoint folder that does not match what the model needs; the message names the folder/key/shape."""


def is_unused_transformer_key(key: str) -> bool:
    return bool(_UNUSED_TRANSFORMER_KEY.match(key))


def unused_transformer_shapes(cfg: TransformerConfig) -> dict[str, tuple[int, ...]]:
    """Names and shapes of the never-read transformer keys for ``cfg`` (what the real checkpoint carries)."""
    dim = cfg.model_dim
    out: dict[str, tuple[int, ...]] = {}
    for i in range(cfg.num_layers):
        for name in ("add_k_proj", "add_v_proj", "add_q_proj", "to_add_out"):
            out[f"transformer_blocks.{i}.cross_attn.{name}.weight"] = (dim, dim)
            out[f"transformer_blocks.{i}.cross_attn.{name}.bias"] = (dim,)
    for j, ssl_dim in enumerate(cfg.ssl_latent_dims):
        for idx, (o, n) in zip((0, 2, 4), ((2 * dim, dim), (2 * dim, 2 * dim), (ssl_dim, 2 * dim)), strict=True):
            out[f"projectors.{j}.{idx}.weight"] = (o, n)
            out[f"projectors.{j}.{idx}.bias"] = (o,)
    return out


@dataclass(frozen=True)
class V1CheckpointPaths:
    root: Path
    transformer: Path
    dcae: Path
    vocoder: Path
    text_encoder: Path


def locate(root: str | Path, components: Iterable[str] = COMPONENT_DIRS) -> V1CheckpointPaths:
    """Check the folder layout and return its parts; raises naming each missing folder."""
    root = Path(root)
    if not root.is_dir():
        raise CheckpointError(f"checkpoint folder {root} does not exist")
    missing = [name for name in components if not (root / name).is_dir()]
    if missing:
        raise CheckpointError(
            f"checkpoint {root} is missing folder(s) {', '.join(missing)}; the ACE-Step v1 layout has "
            f"{', '.join(COMPONENT_DIRS)}"
        )
    return V1CheckpointPaths(root, root / TRANSFORMER_DIR, root / DCAE_DIR, root / VOCODER_DIR,
                             root / TEXT_ENCODER_DIR)


def read_config(folder: Path) -> dict[str, Any]:
    path = folder / "config.json"
    if not path.is_file():
        raise CheckpointError(f"{folder} has no config.json")
    try:
        return dict(json.loads(path.read_text()))
    except json.JSONDecodeError as exc:
        raise CheckpointError(f"{path} is not valid JSON: {exc}") from None


def read_state_dict(folder: Path, stem: str = "diffusion_pytorch_model") -> dict[str, torch.Tensor]:
    """All tensors of a diffusers weights file: single ``<stem>.safetensors`` or sharded with an index."""
    from safetensors.torch import load_file

    single = folder / f"{stem}.safetensors"
    index = folder / f"{stem}.safetensors.index.json"
    if single.is_file():
        return load_file(str(single))
    if index.is_file():
        weight_map: dict[str, str] = json.loads(index.read_text()).get("weight_map", {})
        state: dict[str, torch.Tensor] = {}
        for shard in sorted(set(weight_map.values())):
            if not (folder / shard).is_file():
                raise CheckpointError(f"{folder}: shard {shard} named in {index.name} is missing")
            state.update(load_file(str(folder / shard)))
        return state
    raise CheckpointError(f"{folder} has no {single.name} (nor a sharded {index.name})")


def load_strict(
    module: nn.Module,
    state: Mapping[str, torch.Tensor],
    where: str,
    drop: Callable[[str], bool] | None = None,
    optional: frozenset[str] = frozenset(),
    assign: bool = False,
) -> list[str]:
    """Load ``state`` into ``module`` requiring every key and shape; returns the names dropped by ``drop(key)``."""
    expected = module.state_dict()
    dropped = sorted(k for k in state if k not in expected and drop is not None and drop(k))
    unexpected = sorted(k for k in state if k not in expected and k not in dropped)
    if unexpected:
        raise CheckpointError(f"{where}: unexpected key(s) {_names(unexpected)}; is this the right checkpoint?")
    missing = sorted(k for k in expected if k not in state and k not in optional)
    if missing:
        raise CheckpointError(f"{where}: missing key(s) {_names(missing)}")
    for key, tensor in state.items():
        if key in expected and tuple(tensor.shape) != tuple(expected[key].shape):
            raise CheckpointError(
                f"{where}: key {key} has shape {tuple(tensor.shape)}, the config needs {tuple(expected[key].shape)}"
            )
    kept = {k: v for k, v in state.items() if k in expected}
    if assign:
        # Keep the module's dtype: assign=True would otherwise adopt the file's (e.g. bf16 weights, fp32 model).
        kept = {k: v.to(expected[k].dtype) for k, v in kept.items()}
    module.load_state_dict(kept, strict=False, assign=assign)
    if dropped:
        logger.info("%s: dropped %d never-read key(s)", where, len(dropped))
        logger.debug("%s: dropped %s", where, dropped)
    return dropped


def _names(keys: list[str], limit: int = 8) -> str:
    shown = ", ".join(keys[:limit])
    return shown + (f" (+{len(keys) - limit} more)" if len(keys) > limit else "")


def load_transformer(root: str | Path, dtype: torch.dtype = torch.float32) -> ACEStepV1Transformer:
    paths = locate(root, (TRANSFORMER_DIR,))
    cfg = TransformerConfig.from_dict(read_config(paths.transformer))
    with torch.device("meta"):
        model = ACEStepV1Transformer(cfg).to(dtype)
    load_strict(model, read_state_dict(paths.transformer), TRANSFORMER_DIR, drop=is_unused_transformer_key,
                assign=True)
    return model.eval()


def load_vocoder(root: str | Path) -> MusicVocoder:
    paths = locate(root, (VOCODER_DIR,))
    model = MusicVocoder(VocoderConfig.from_dict(read_config(paths.vocoder)))
    load_strict(model, read_state_dict(paths.vocoder), VOCODER_DIR, optional=OPTIONAL_VOCODER_KEYS)
    return model.eval()


def load_music_dcae(root: str | Path) -> MusicDCAE:
    paths = locate(root, (DCAE_DIR, VOCODER_DIR))
    dcae = build_autoencoder_dc(read_config(paths.dcae))
    load_strict(dcae, read_state_dict(paths.dcae), DCAE_DIR)
    return MusicDCAE(dcae.eval(), load_vocoder(root)).eval()


def load_text_encoder(root: str | Path) -> tuple[nn.Module, Any]:
    """The stock transformers ``UMT5EncoderModel`` and its tokenizer from ``umt5-base/``."""
    from transformers import AutoTokenizer, UMT5EncoderModel

    paths = locate(root, (TEXT_ENCODER_DIR,))
    read_config(paths.text_encoder)
    try:
        model = UMT5EncoderModel.from_pretrained(str(paths.text_encoder))
        tokenizer = AutoTokenizer.from_pretrained(str(paths.text_encoder))
    except (OSError, ValueError) as exc:
        raise CheckpointError(f"{TEXT_ENCODER_DIR}: cannot load the UMT5 encoder or its tokenizer: {exc}") from None
    return model.eval(), tokenizer
