"""Stem separation facts shared by export, the ``separator`` and the orchestrator (standard library only).

The stem sets the service offers (``2``: vocals + instrumental, ``4``: drums/bass/other/vocals, ``6``: those plus
guitar and piano), the longest song the separator takes, the rate stems enter and leave at, and the Triton model
names: one ``stems`` network per source count and the decoupled ``separator`` in front of them.
"""

from __future__ import annotations

SERVICE_RATE = 48_000
MAX_SECONDS = 600
STEM_SETS: dict[int, tuple[str, ...]] = {
    2: ("vocals", "instrumental"),
    4: ("drums", "bass", "other", "vocals"),
    6: ("drums", "bass", "other", "vocals", "guitar", "piano"),
}
SEPARATOR_MODEL = "separator"
# One network per source count; a 4-source and a 6-source checkpoint can be served side by side.
NETWORK_FOR_SOURCES = {4: "stems", 6: "stems_6s"}
# The stem sets each network answers (a 6-source model also answers 4 and 2: guitar and piano fold into "other").
STEM_SETS_FOR_SOURCES = {4: (2, 4), 6: (2, 4, 6)}
