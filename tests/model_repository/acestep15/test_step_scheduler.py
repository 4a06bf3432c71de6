"""The sampler's step scheduler through a real tritonserver (tiny repository, ACE-Step 1.5): songs that run together
take each DiT step in one ``dit`` call, a song that joins a running batch mid-way gets the same audio as alone, and a
cancelled song leaves the batch without touching the others.

"Same audio": ONNX Runtime computes each row of a batched call independently of the other rows (measured: the audio
of a song that shared its calls with 3 other songs at other steps equals its audio alone bit for bit), so these tests
assert bitwise equality.
"""

from __future__ import annotations

import re
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import numpy as np
import pytest

from tests.model_repository.sampler.live import Live, delta, dit_counts
from tests.model_repository.streaming import stream

pytestmark = pytest.mark.triton


def song(i: int, steps: int, **extra: Any) -> dict[str, Any]:
    """12-17.6 s: one 500-frame bucket; captions of equal token length: one condition bucket."""
    return {"caption": f"song {i}", "duration": 12.0 + 0.7 * i, "inference_steps": steps, "seeds": [i],
            "version_set": "turbo"} | extra


def test_a_song_that_joins_a_running_batch_mid_way_gets_its_audio_alone(triton):
    late = song(7, 6)
    alone = stream(triton.grpc_url, "sampler", late)
    assert alone.error is None, alone.error
    before = dit_counts(triton)
    running = [Live(triton.grpc_url, song(i, 20)) for i in range(3)]
    for live in running:
        live.wait_step(4)
    joined = stream(triton.grpc_url, "sampler", late)
    results = [live.join() for live in running]
    assert joined.error is None and all(r.error is None for r in results)
    inferences, executions = delta(triton, before)
    assert inferences == 3 * 20 + 6
    # The three started together and took all 20 steps in one call each; the late song's 6 rode along.
    assert executions <= 21, f"{executions} dit calls for 3 x 20 + 6 rows"
    assert np.array_equal(joined.outputs["audio"], alone.outputs["audio"])
    assert [e["step"] for e in joined.events if e.get("stage") == "diffusion"] == [1, 2, 3, 4, 5, 6]


@pytest.mark.parametrize(
    ("extra", "rows_per_song", "target"),
    [({}, 1, 7.5), ({"version_set": "sft", "guidance_scale": 5.0}, 2, 15.0)],
    ids=["turbo-8-rows", "sft-guided-16-rows"],
)
def test_eight_concurrent_songs_take_each_dit_step_in_one_call(triton, extra, rows_per_song, target):
    version = "2" if extra else "1"
    before = dit_counts(triton, version=version)
    requests = [song(i, 8, **extra) for i in range(8)]
    with ThreadPoolExecutor(8) as pool:
        errors = [r.error for r in pool.map(lambda req: stream(triton.grpc_url, "sampler", req), requests)]
    assert errors == [None] * 8
    inferences, executions = delta(triton, before, version=version)
    assert inferences == 8 * 8 * rows_per_song
    assert inferences / executions >= target, f"mean dit rows per call {inferences / executions:.2f} < {target}"


def test_cancelling_a_song_mid_batch_leaves_the_others_exact(triton):
    requests = [song(i, 12) for i in range(3)]
    alone = [stream(triton.grpc_url, "sampler", r) for r in requests[:2]]
    before = dit_counts(triton)
    lives = [Live(triton.grpc_url, r) for r in requests]
    lives[2].wait_step(3)
    lives[2].cancel()
    kept = [live.join() for live in lives[:2]]
    inferences, _ = delta(triton, before)
    for got, ref in zip(kept, alone, strict=True):
        assert got.error is None, got.error
        assert np.array_equal(got.outputs["audio"], ref.outputs["audio"])
    assert 2 * 12 + 3 <= inferences < 3 * 12, f"the cancelled song kept stepping: {inferences} dit rows"
    after = stream(triton.grpc_url, "sampler", song(5, 2))
    assert after.error is None


def test_a_two_instance_decoder_takes_the_cohort_in_two_calls_with_the_same_audio(triton, repository_copy):
    """``vae_decoder`` with 2 instances and no dynamic batcher (the config ``CpuServing(instances=2)`` writes): four
    songs that decode together go as two 2-row calls, one per instance (no 4-row batch), and each song's audio equals
    its audio from the one-instance server bit for bit."""
    from model_repository.launcher.server import TritonServer

    requests = [song(i, 4, duration=12.0) for i in range(4)]
    alone = [stream(triton.grpc_url, "sampler", r).outputs["audio"] for r in requests]
    config = repository_copy / "vae_decoder" / "config.pbtxt"
    text = re.sub(r"count: \d+ kind: KIND_CPU", "count: 2 kind: KIND_CPU", config.read_text())
    text = re.sub(r"dynamic_batching \{[^}]*\}\n", "", text)
    assert "dynamic_batching" not in text
    config.write_text(text)
    models = ["sampler", "text_encoder", "condition_encoder", "dit", "vae_decoder"]
    with TritonServer(repository_copy, load_models=models) as server, ThreadPoolExecutor(4) as pool:
        results = list(pool.map(lambda r: stream(server.grpc_url, "sampler", r), requests))
        stats = server.model_statistics("vae_decoder")["model_stats"][0]
    assert [r.error for r in results] == [None] * 4
    sizes = {int(b["batch_size"]): int(b["compute_infer"]["count"]) for b in stats["batch_stats"]}
    assert int(stats["inference_count"]) == 4 and max(sizes) <= 2 and sizes.get(2, 0) >= 1, sizes
    for got, ref in zip(results, alone, strict=True):
        assert np.array_equal(got.outputs["audio"], ref)
