"""The stem sets the service offers and how each is made from a model's sources (standard library only).

``2``: vocals + instrumental (the sum of every other source, as Demucs' ``--two-stems vocals``); ``4``: drums, bass,
other, vocals; ``6``: those plus guitar and piano (needs a 6-source checkpoint, ``htdemucs_6s``). A 6-source model
also answers 4 (guitar and piano fold into ``other``) and 2. Every combination is a 0/1 matrix over the model's
sources, applied per segment before the overlap-add (both are linear, so the order does not matter).
"""

from __future__ import annotations

from model_repository.facts.stems import MAX_SECONDS, SERVICE_RATE, STEM_SETS

__all__ = [
    "KNOWN_SIGNATURES", "MAX_SECONDS", "REQUIRED_SOURCES", "SERVICE_RATE", "STEM_SETS", "SUPPORTED_SOURCE_COUNTS",
    "StemsError", "stem_matrix",
]

SUPPORTED_SOURCE_COUNTS = (4, 6)
REQUIRED_SOURCES = ("drums", "bass", "other", "vocals")
# The released checkpoints by signature (demucs_infer/remote/*.yaml), for names in manifests and messages.
KNOWN_SIGNATURES = {"955717e8": "htdemucs", "5c90dfd2": "htdemucs_6s"}


class StemsError(ValueError):
    """A stems request the served models cannot answer; the message names the field."""


def stem_matrix(stems: int, sources: tuple[str, ...]) -> tuple[tuple[str, ...], list[list[float]]]:
    """(stem names, matrix [len(names), len(sources)]) that turns the model's sources into stem set ``stems``."""
    if stems not in STEM_SETS:
        raise StemsError(f"stems: {stems!r} is not a stem set; choose one of {sorted(STEM_SETS)}")
    names = STEM_SETS[stems]
    rows: list[list[float]] = []
    for name in names:
        if name == "instrumental":
            rows.append([0.0 if s == "vocals" else 1.0 for s in sources])
        elif name == "other" and "other" in sources and stems < len(sources):
            folded = set(sources) - set(names) | {"other"}
            rows.append([1.0 if s in folded else 0.0 for s in sources])
        elif name in sources:
            rows.append([1.0 if s == name else 0.0 for s in sources])
        else:
            raise StemsError(
                f"stems: {stems} needs a '{name}' source, which the served model ({', '.join(sources)}) lacks; "
                "export a 6-source checkpoint (htdemucs_6s) for 6 stems"
            )
    return names, rows
