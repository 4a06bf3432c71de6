"""Skip markers shared by the test tree: each names why it skips."""

from __future__ import annotations

import functools

import pytest

from model_repository.launcher.server import find_triton


@functools.cache
def triton_missing() -> str | None:
    """Why no tritonserver can start here, or None when one can."""
    try:
        find_triton()
    except RuntimeError as exc:
        return str(exc)
    return None


needs_triton = pytest.mark.skipif(triton_missing() is not None, reason=f"no tritonserver: {triton_missing()}")
