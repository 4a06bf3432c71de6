"""ACE-Step v1 through the sampler's step scheduler (real tritonserver, tiny repository): v1 songs share every
``v1_dit`` step, a v1 song that joins a running batch mid-way (guided: its conditional and unconditional rows in one
request, at other steps than the others) gets its audio alone bit for bit, and 1.5 and v1 songs run side by side."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from typing import Any

import numpy as np
import pytest

from tests.model_repository.sampler.live import Live, delta, dit_counts
from tests.model_repository.streaming import stream

pytestmark = pytest.mark.triton


def v1_song(i: int, steps: int, **extra: Any) -> dict[str, Any]:
    """10.5-16 s: 113-172 frames, one 216-frame bucket; unguided unless ``extra`` says otherwise."""
    return {"family": "acestep_v1", "caption": f"song {i}", "duration": 10.5 + 0.8 * i, "inference_steps": steps,
            "seeds": [i], "guidance_scale": 1.0} | extra


def test_eight_concurrent_v1_songs_take_each_step_in_one_call(triton):
    before = dit_counts(triton, "v1_dit")
    requests = [v1_song(i, 8) for i in range(8)]
    with ThreadPoolExecutor(8) as pool:
        errors = [r.error for r in pool.map(lambda req: stream(triton.grpc_url, "sampler", req), requests)]
    assert errors == [None] * 8
    inferences, executions = delta(triton, before, "v1_dit")
    assert inferences == 8 * 8
    assert inferences / executions >= 7.5, f"mean v1_dit rows per call {inferences / executions:.2f} < 7.5"


def test_a_guided_v1_song_joining_mid_way_gets_its_audio_alone_beside_a_15_song(triton):
    late = v1_song(6, 6, guidance_scale=12.0, guidance_interval=0.5)
    alone = stream(triton.grpc_url, "sampler", late)
    assert alone.error is None, alone.error
    before = dit_counts(triton, "v1_dit")
    running = [Live(triton.grpc_url, v1_song(i, 16)) for i in range(2)]
    other_family = Live(triton.grpc_url, {"caption": "lofi", "duration": 12.0, "inference_steps": 16, "seeds": [1]})
    for live in running:
        live.wait_step(3)
    joined = stream(triton.grpc_url, "sampler", late)
    results = [live.join() for live in [*running, other_family]]
    assert joined.error is None and all(r.error is None for r in results), [r.error for r in results]
    inferences, executions = delta(triton, before, "v1_dit")
    assert inferences == 2 * 16 + 6 + 3  # guided: the centred half of 6 steps has two rows
    assert executions <= 17, f"{executions} v1_dit calls: the late song did not ride the running batch"
    assert np.array_equal(joined.outputs["audio"], alone.outputs["audio"])
