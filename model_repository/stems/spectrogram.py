"""The complex half of ``HTDemucs.forward``, outside the exported graph, run with the model's own methods.

``HTDemucs._spec`` (reflect re-padding + ``demucs_infer.spec.spectro``), ``_magnitude`` (complex as channels),
``_mask`` (channels back to complex) and ``_ispec`` (``ispectro`` + trimming) read only ``nfft``, ``hop_length``,
``cac`` and ``wiener_iters`` from the model, so they are called unbound on a small object that carries those four:
the served numerics are the library's, line for line, with no weights loaded here.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from demucs_infer.htdemucs import HTDemucs


@dataclass(frozen=True)
class _Settings:
    nfft: int
    hop_length: int
    cac: bool = True
    wiener_iters: int = 0
    training: bool = False


class Spectrogram:
    """Segment -> the network's ``spec`` input; the network's outputs -> the segment's sources."""

    def __init__(self, nfft: int, hop_length: int) -> None:
        if hop_length != nfft // 4:
            raise ValueError(f"HT-Demucs needs hop_length == nfft // 4, got nfft={nfft} hop_length={hop_length}")
        self._model = _Settings(nfft, hop_length)

    def forward(self, mix: torch.Tensor) -> torch.Tensor:
        """[B, C, L] -> [B, 2C, nfft/2, ceil(L/hop)] (``_magnitude(_spec(mix))``)."""
        return HTDemucs._magnitude(self._model, HTDemucs._spec(self._model, mix))  # type: ignore[arg-type]

    def inverse(self, spec_out: torch.Tensor, wave_out: torch.Tensor) -> torch.Tensor:
        """The network's outputs [B, S, 2C, F, T] and [B, S, C, L] -> the sources [B, S, C, L], as ``forward``
        ends: ``_ispec(_mask(z, x), length) + xt``."""
        length = wave_out.shape[-1]
        z = HTDemucs._mask(self._model, None, spec_out)  # type: ignore[arg-type]
        return wave_out + HTDemucs._ispec(self._model, z, length)  # type: ignore[arg-type]
