"""ACE-Step 1.5 track extraction through a real tritonserver (tiny repository): the requested classes
(``track_names``) run as one batch of sampler work on the base DiT — one ``dit`` call per step holding every class's
conditional and unconditional rows — and a class extracted alone (``track_name``) equals that class in the batch.
Turbo and SFT sets refuse the track tasks, naming the variant and the set that has it (upstream: base only)."""

from __future__ import annotations

import numpy as np
import pytest

from model_repository.facts.families import TRACK_CLASSES
from tests.model_repository.sampler.live import delta, dit_counts
from tests.model_repository.streaming import stream

pytestmark = pytest.mark.triton

BASE_DIT = "3"  # the tiny export's base set: dit version 3
# Alone vs inside the batch the condition rows are padded to other lengths (masked): the same computation, so the
# difference is float rounding at most.
ALONE_TOLERANCE = 1e-5


def _source(seconds: float = 10.0) -> np.ndarray:
    rng = np.random.default_rng(11)
    return (0.1 * rng.standard_normal((2, int(48_000 * seconds)))).astype(np.float32)


def _rel(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.abs(a.astype(np.float64) - b).max() / np.abs(b).max())


def test_all_twelve_classes_share_every_dit_step_and_one_alone_equals_its_row(triton):
    src, steps = _source(), 3
    request = {"task_type": "extract", "track_names": list(TRACK_CLASSES), "version_set": "base",
               "inference_steps": steps, "seeds": [7]}
    before = dit_counts(triton, version=BASE_DIT)
    batch = stream(triton.grpc_url, "sampler", request, tensors={"src_audio": src})
    assert batch.error is None, batch.error
    inferences, executions = delta(triton, before, version=BASE_DIT)
    # guided (base): a conditional and an unconditional row per class, all 24 in one call per step
    assert inferences == steps * 2 * len(TRACK_CLASSES)
    assert executions == steps, f"{executions} dit calls for {steps} steps"
    audio = batch.outputs["audio"]
    assert audio.shape == (12, 2, src.shape[1]) and np.isfinite(audio).all()
    assert batch.final["track_names"] == list(TRACK_CLASSES) and batch.final["seeds"] == [7] * 12
    assert batch.final["version_set"] == "base" and batch.final["versions"]["dit"] == BASE_DIT

    drums = TRACK_CLASSES.index("drums")
    alone = stream(
        triton.grpc_url,
        "sampler",
        {"task_type": "extract", "track_name": "drums", "version_set": "base", "inference_steps": steps, "seeds": [7]},
        tensors={"src_audio": src},
    )
    assert alone.error is None, alone.error
    same = _rel(alone.outputs["audio"][0], audio[drums])
    assert same <= ALONE_TOLERANCE
    # Each class is its own instruction, so every pair of items differs: the tiny random DiT answers a few changed
    # caption tokens weakly (measured: ~2e-4 .. 1.4e-3 relative after 3 steps), yet far above the float noise that
    # separates the same class alone and in the batch.
    gaps = [_rel(audio[i], audio[j]) for i in range(12) for j in range(i + 1, 12)]
    assert min(gaps) > 10 * max(same, 1e-6), f"two classes came out alike (min gap {min(gaps):.2e}, noise {same:.1e})"


def test_a_few_classes_make_a_few_items(triton):
    tracks = ["vocals", "bass", "fx"]
    result = stream(
        triton.grpc_url,
        "sampler",
        {"task_type": "extract", "track_names": tracks, "version_set": "base", "inference_steps": 2, "seeds": [1]},
        tensors={"src_audio": _source()},
    )
    assert result.error is None, result.error
    assert result.outputs["audio"].shape[0] == 3 and result.final["track_names"] == tracks


@pytest.mark.parametrize(
    ("version_set", "task", "message"),
    [
        ("turbo", "extract", "extract needs a base checkpoint (version set 'base'); the served set 'turbo' is a turbo"),
        ("sft", "extract", "extract needs a base checkpoint (version set 'base'); the served set 'sft' is a sft DiT"),
        (None, "lego", "lego needs a base checkpoint (version set 'base'); the served set 'turbo' is a turbo DiT"),
        ("sft", "complete", "complete needs a base checkpoint"),
    ],
)
def test_turbo_and_sft_refuse_the_track_tasks_naming_the_variant(triton, version_set, task, message):
    request = {"task_type": task, "inference_steps": 2}
    request |= {"track_names": ["drums", "bass"]} if task == "extract" else {"track_name": "drums"}
    if version_set:
        request["version_set"] = version_set
    before = dit_counts(triton)
    result = stream(triton.grpc_url, "sampler", request, tensors={"src_audio": _source()})
    assert result.error is not None and "field 'task_type'" in result.error and message in result.error
    assert dit_counts(triton) == before  # refused before any work


def test_base_runs_lego_and_complete(triton):
    for fields in ({"task_type": "lego", "track_name": "guitar"}, {"task_type": "complete",
                                                                   "complete_track_classes": ["drums", "bass"]}):
        result = stream(triton.grpc_url, "sampler", {**fields, "version_set": "base", "inference_steps": 2},
                        tensors={"src_audio": _source()})
        assert result.error is None, (fields, result.error)
        assert result.final["task_type"] == fields["task_type"]
