"""The ACE-Step v1 family's served assets: ``assets/acestep_v1/pipeline.json``, each version set's UMT5 caption
tokenizer, and the lyric tokenizer (the same for every checkpoint), loaded once and shared by all songs."""

from __future__ import annotations

import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from model_repository.acestep_v1.decode import SAMPLES_PER_LATENT, VOCODER_SAMPLE_RATE
from model_repository.facts.families import ACESTEP_V1_FACTS
from model_repository.facts.manifest import VersionSetEntry
from model_repository.sampler.assets import FamilyAssets

# The original pipeline's defaults.
DEFAULT_STEPS = ACESTEP_V1_FACTS.default_steps


@dataclass
class V1VersionSet:
    name: str
    versions: dict[str, str]
    tokenizer: Any  # the UMT5 caption tokenizer
    lock: threading.Lock  # fast tokenizers are not safe to call from several threads at once


class V1Assets(FamilyAssets[V1VersionSet]):
    """``assets/acestep_v1/pipeline.json`` and each version set's tokenizer, loaded once and shared by all songs."""

    def __init__(self, root: Path) -> None:
        super().__init__(root)
        self._lyrics_lock = threading.Lock()
        self._lyrics: Any = None

    @property
    def max_frames(self) -> int:
        """Frames the DiT takes at once (the trained 240 s)."""
        return int(self.dims["trained_frames"])

    def tokenize_lyrics(self, lyrics: str) -> Any:
        """Lyrics -> ids and mask. One song at a time: the Japanese romaniser (MeCab) is not thread-safe."""
        with self._lyrics_lock:
            if self._lyrics is None:
                from model_repository.acestep_v1.lyrics import LyricTokenizer

                self._lyrics = LyricTokenizer()
            return self._lyrics.tokenize_lyrics(lyrics)

    def load_set(self, name: str, entry: VersionSetEntry) -> V1VersionSet:
        from transformers import AutoTokenizer

        return V1VersionSet(
            name=name,
            versions=dict(entry.versions),
            tokenizer=AutoTokenizer.from_pretrained(self.root / name / "tokenizer"),
            lock=threading.Lock(),
        )

    def describe(self) -> dict[str, Any]:
        return super().describe() | {
            "max_duration": round(self.max_frames * SAMPLES_PER_LATENT / VOCODER_SAMPLE_RATE, 2),
            "default_steps": DEFAULT_STEPS,
        }
