"""The Triton entry points: ``<name>/model.py`` for each Python-backend model (``sampler``, ``lm``, ``lyricist`` and
the generic ``onnx_runtime`` network model).

Export copies a source into each model's version folder (``<repo>/<model>/<version>/model.py``); the copy imports
its library code from the installed ``model_repository`` package, so it only translates tensors. Nothing here is
imported by library code.
"""

from __future__ import annotations

import shutil
from pathlib import Path

SOURCES = Path(__file__).resolve().parent
ENTRY_POINTS = tuple(sorted(p.parent.name for p in SOURCES.glob("*/model.py")))


def model_source(name: str) -> Path:
    """The ``model.py`` of entry point ``name``; ``FileNotFoundError`` naming the known ones otherwise."""
    path = SOURCES / name / "model.py"
    if not path.is_file():
        raise FileNotFoundError(f"no Triton entry point {name!r} under {SOURCES}; known: {', '.join(ENTRY_POINTS)}")
    return path


def install_entry_point(name: str, version_dir: Path) -> Path:
    """Copy entry point ``name`` into a model's version folder; returns the copy."""
    version_dir = Path(version_dir)
    version_dir.mkdir(parents=True, exist_ok=True)
    dest = version_dir / "model.py"
    shutil.copyfile(model_source(name), dest)
    return dest
