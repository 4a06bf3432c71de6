"""``separator/1/assets/stems.json``: the stems networks a repository serves and the facts the separator needs about
each (written by ``tritone export``, read once when the separator loads). Standard library only."""

from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass
from pathlib import Path

FILE = "stems.json"


@dataclass(frozen=True)
class StemsNetwork:
    """One exported separation network (a Triton model) and its checkpoint's signal facts."""

    model: str  # Triton model name ("stems", "stems_6s")
    checkpoint: str  # htdemucs, htdemucs_6s, htdemucs_ft, tinyhtdemucs ...
    sources: tuple[str, ...]
    samplerate: int
    audio_channels: int
    segment_samples: int
    nfft: int
    hop_length: int
    max_batch_size: int
    version: int = 1

    @property
    def frames(self) -> int:
        return -(-self.segment_samples // self.hop_length)


def read(folder: Path) -> dict[str, StemsNetwork]:
    """Model name -> network; an empty dict when the repository has no stems networks."""
    path = Path(folder) / FILE
    if not path.is_file():
        return {}
    raw = json.loads(path.read_text())
    return {name: StemsNetwork(**(entry | {"sources": tuple(entry["sources"])})) for name, entry in raw.items()}


def write(folder: Path, networks: dict[str, StemsNetwork]) -> Path:
    """Merge ``networks`` into the folder's manifest (atomic); returns its path."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    merged = read(folder) | networks
    path = folder / FILE
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps({k: asdict(v) | {"sources": list(v.sources)} for k, v in sorted(merged.items())},
                              indent=2) + "\n")
    os.replace(tmp, path)
    return path
