"""The ACE-Step 1.5 family's served assets: ``assets/pipeline.json`` and each version set's tokenizer, null condition
embedding and silence latent, loaded once and shared by all songs."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from model_repository.facts.families import variant_kind
from model_repository.facts.manifest import VersionSetEntry
from model_repository.sampler.assets import FamilyAssets


@dataclass
class VersionSet:
    name: str
    versions: dict[str, str]
    is_turbo: bool
    # The DiT variant as upstream names it (facts.families.variant_kind): turbo, sft, base.
    kind: str
    tokenizer: Any
    null_condition_emb: np.ndarray  # [1, 1, H]
    silence_latent: np.ndarray  # [N, C]


class Assets(FamilyAssets[VersionSet]):
    def __init__(self, root: Any) -> None:
        super().__init__(root)
        # The contracts' limits the networks were exported with.
        self.max_text_tokens = int(self.manifest.dim("max_text_tokens"))
        self.max_lyric_tokens = int(self.manifest.dim("max_lyric_tokens"))
        self.timbre_frames = int(self.manifest.dim("timbre_frames"))

    @property
    def frames_per_second(self) -> float:
        return self.dims["sample_rate"] / self.dims["samples_per_frame"]

    @property
    def codebook_size(self) -> int:
        return int(self.dims["codebook_size"])

    def set_kinds(self) -> dict[str, str]:
        """Every served version set -> its DiT variant (without loading the sets)."""
        return {name: variant_kind(e.variant, is_turbo=e.is_turbo) for name, e in self.manifest.version_sets.items()}

    def load_set(self, name: str, entry: VersionSetEntry) -> VersionSet:
        from transformers import AutoTokenizer

        folder = self.root / name
        return VersionSet(
            name=name,
            versions=dict(entry.versions),
            is_turbo=bool(entry.is_turbo),
            kind=variant_kind(entry.variant, is_turbo=entry.is_turbo),
            tokenizer=AutoTokenizer.from_pretrained(folder / "tokenizer"),
            null_condition_emb=np.load(folder / "null_condition_emb.npy"),
            silence_latent=np.load(folder / "silence_latent.npy"),
        )
