"""The exported separation network: HT-Demucs over one training segment, with the spectrogram outside the graph.

``HTDemucs.forward`` is STFT -> (complex as channels) -> the two U-Nets and the cross-transformer -> iSTFT + time
branch. Two parts of it do not export: ``_spec`` pads with a data-dependent reflect check (``torch.export`` stops at
an ``aten.item``) and the STFT/iSTFT are complex. :class:`SeparationNet` runs the model's own ``forward`` with those
four spectrogram methods (``_spec``, ``_magnitude``, ``_mask``, ``_ispec``) replaced by pass-throughs of real
tensors, so the graph holds every layer, both normalizations and the de-normalization, and nothing complex:

* in: ``mix`` [B, 2, L] (one padded segment) and ``spec`` [B, 4, F, T], the mixture's spectrogram as the model's
  ``_magnitude`` lays it out with ``cac=True`` (real and imaginary parts of each channel as channels);
* out: ``spec_out`` [B, S, 4, F, T], what ``_mask`` would turn into complex stems, and ``wave_out`` [B, S, 2, L],
  the time branch (already de-normalized).

The separator computes ``spec`` with ``HTDemucs._spec``/``_magnitude`` and finishes each segment with ``_mask``/
``_ispec`` + ``wave_out`` (:mod:`model_repository.stems.spectrogram`): the exact ``forward``, split at the complex
boundary. A bag of models (``htdemucs_ft``) is one graph: each member's outputs weighted per source as
``BagOfModels``/``apply_model`` weight them (linear, so weighting before the iSTFT and the overlap-add is the same).
"""

from __future__ import annotations

import threading
from collections.abc import Callable

import torch
from torch import nn

from export.contracts import NetworkContract, TensorSpec
from export.stems.checkpoint import SeparationModel
from model_repository.facts.stems import NETWORK_FOR_SOURCES

MAX_BATCH = 8
_OVERRIDE_LOCK = threading.RLock()


def _real_valued_forward(model: nn.Module, mix: torch.Tensor, spec: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    captured: list[torch.Tensor] = []

    def mask(_z: torch.Tensor, out: torch.Tensor) -> torch.Tensor:
        captured.append(out)
        return out

    overrides = {
        "_spec": lambda _x: spec,
        "_magnitude": lambda z: z,
        "_mask": mask,
        # The frequency branch's waveform is added outside (after the iSTFT); here it contributes nothing.
        "_ispec": lambda _z, length=None, scale=0: torch.zeros((), dtype=mix.dtype, device=mix.device),
    }
    # The overrides live on the instance for the duration of one call: one call at a time per process.
    with _OVERRIDE_LOCK:
        model.__dict__.update(overrides)
        try:
            wave = model(mix)
        finally:
            for key in overrides:
                del model.__dict__[key]
    return captured[0], wave


class SeparationNet(nn.Module):
    """``HTDemucs.forward`` of one model or a weighted bag, spectrogram in and out as real tensors."""

    def __init__(self, models: list[nn.Module], weights: list[list[float]]) -> None:
        super().__init__()
        self.members = nn.ModuleList(models)
        w = torch.tensor(weights, dtype=torch.float32)
        self.single = len(models) == 1 and bool((w == 1).all())
        # [members, S] normalized so each source's weights sum to 1 (apply_model divides by the total).
        self.register_buffer("weights", w / w.sum(dim=0, keepdim=True), persistent=False)

    def forward(self, mix: torch.Tensor, spec: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        if self.single:
            return _real_valued_forward(self.members[0], mix, spec)
        spec_out = wave_out = None
        for k, member in enumerate(self.members):
            s, w = _real_valued_forward(member, mix, spec)
            weights: torch.Tensor = self.weights  # type: ignore[assignment]  # a registered buffer
            weight = weights[k]
            s, w = s * weight[None, :, None, None, None], w * weight[None, :, None, None]
            spec_out = s if spec_out is None else spec_out + s
            wave_out = w if wave_out is None else wave_out + w
        assert spec_out is not None and wave_out is not None
        return spec_out, wave_out


def build_contract(model: SeparationModel) -> NetworkContract:
    """The contract of ``model``'s network: every dimension fixed by the checkpoint but the batch."""
    sources, channels = len(model.sources), model.audio_channels
    length, freqs, frames = model.segment_samples, model.freqs, model.frames
    return NetworkContract(
        name=NETWORK_FOR_SOURCES[sources],
        inputs=(
            TensorSpec("mix", "float32", ("batch", channels, length)),
            TensorSpec("spec", "float32", ("batch", 2 * channels, freqs, frames)),
        ),
        outputs=(
            TensorSpec("spec_out", "float32", ("batch", sources, 2 * channels, freqs, frames)),
            TensorSpec("wave_out", "float32", ("batch", sources, channels, length)),
        ),
        axes=(),
        max_batch_size=MAX_BATCH,
        # Stems are returned to users and must sum back to the mix: fp32 end to end (see docs/stems.md).
        precision="fp32",
        preferred_batch_sizes=(4, 8),
        max_queue_delay_us=5000,
        description=f"{model.name}: HT-Demucs over one {length}-sample segment at {model.samplerate} Hz "
        f"(sources {', '.join(model.sources)}); spectrogram in/out as real channels",
    )


def wrapper(model: SeparationModel) -> Callable[[], nn.Module]:
    return lambda: SeparationNet(model.models, model.weights).eval()
