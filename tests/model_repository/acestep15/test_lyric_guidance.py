"""ACE-Step 1.5 lyric guidance (``lyric_guidance``, what the edits' ``lyrics_strength`` maps to) through a real
tritonserver on the tiny repository: 1 (or unset) is the plain sampler, bit for bit; any other value adds one DiT row
per step (the prompt without its lyrics) and changes the audio; v1 refuses the field."""

from __future__ import annotations

import numpy as np
import pytest

from tests.model_repository.sampler.live import delta, dit_counts
from tests.model_repository.streaming import stream

pytestmark = pytest.mark.triton

TURBO_DIT = "1"
SONG = {"caption": "pop", "lyrics": "[Verse]\nla la la\nsing it", "duration": 10, "inference_steps": 2, "seeds": [3]}


def _audio(triton, **fields) -> np.ndarray:  # type: ignore[no-untyped-def]
    result = stream(triton.grpc_url, "sampler", {**SONG, **fields})
    assert result.error is None, result.error
    return result.outputs["audio"]


def test_lyric_guidance_is_off_at_one_and_changes_the_audio_otherwise(triton) -> None:
    plain = _audio(triton)
    assert np.array_equal(_audio(triton, lyric_guidance=1.0), plain)
    before = dit_counts(triton, version=TURBO_DIT)
    louder = _audio(triton, lyric_guidance=3.0)
    inferences, _ = delta(triton, before, version=TURBO_DIT)
    assert inferences == 2 * SONG["inference_steps"]  # turbo: the conditional row + the row without lyrics
    silent = _audio(triton, lyric_guidance=0.0)
    for other in (louder, silent):
        assert float(np.abs(other - plain).max()) > 1e-5
    result = stream(triton.grpc_url, "sampler", {**SONG, "family": "acestep_v1", "lyric_guidance": 2.0})
    assert result.error is not None and "'lyric_guidance' applies to family 'acestep15' only" in result.error
