"""Where the shared ACE-Step v1 reference data lives (configs, key lists, tiny fixtures).

``$TRITONE_SHARED_DIR/reference/acestep-v1`` when the variable is set, else ``<repo>/../shared/reference/acestep-v1``.
Only tests and developer tools read it; nothing at serving time does.
"""

from __future__ import annotations

import os
from pathlib import Path

_REPO_ROOT = Path(__file__).resolve().parents[2]


def shared_dir() -> Path:
    env = os.environ.get("TRITONE_SHARED_DIR")
    return Path(env) if env else _REPO_ROOT / ".." / "shared"


def reference_dir() -> Path | None:
    """The v1 reference folder, or ``None`` when it is absent (tests then skip)."""
    path = shared_dir() / "reference" / "acestep-v1"
    return path if (path / "README.md").is_file() else None
