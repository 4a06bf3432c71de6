"""The ``sampler`` model end to end through a real tritonserver serving the tiny repository.

Numerical reference: diffusers' ``AceStepPipeline`` on the same tiny weights, inputs, seeds and steps. Tolerance:
relative error (max |diff| / max |reference|) <= 1e-4. The served path runs every network in ONNX Runtime instead of
torch; each evaluation differs from torch by ~1e-6 relative (see the ONNX parity tests), and 6 Euler steps plus the
VAE decode keep that below 1e-5 (measured ~1.2e-6). A wrong schedule, seed, mask, prompt format or guidance formula
moves the audio by O(1), so 1e-4 separates "same computation" from "different computation" with a wide margin.
"""

from __future__ import annotations

import json
import shutil
import threading
import time
from pathlib import Path

import numpy as np
import pytest
import torch

from tests.model_repository.streaming import batch_counts, staggered_streams, stream

pytestmark = pytest.mark.triton

LYRICS = "[Verse 1]\n周末的风 吹起白衬衫\n[Chorus]\nride to the sea"
TOLERANCE = 1e-4


def _reference(preset: Path, request: dict, seeds: list[int]) -> np.ndarray:
    from export.acestep15.checkpoint import load_pipeline

    pipe = load_pipeline(preset)
    out = pipe(
        prompt=[request["caption"]] * len(seeds),
        lyrics=[request["lyrics"]] * len(seeds),
        audio_duration=request["duration"],
        vocal_language=request.get("vocal_language", "en"),
        num_inference_steps=request["inference_steps"],
        guidance_scale=request.get("guidance_scale", 7.0),
        shift=request.get("shift", 3.0),
        bpm=request.get("bpm"),
        keyscale=request.get("key_scale"),
        timesignature=request.get("time_signature"),
        cfg_interval_start=request.get("cfg_interval_start", 0.0),
        cfg_interval_end=request.get("cfg_interval_end", 1.0),
        generator=[torch.Generator().manual_seed(s) for s in seeds],
    )
    return out.audios.numpy()


def _rel(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.abs(a.astype(np.float64) - b).max() / np.abs(b).max())


@pytest.mark.parametrize(
    ("version_set", "extra"),
    [
        ("turbo", {}),
        ("sft", {"guidance_scale": 5.0, "cfg_interval_start": 0.1, "cfg_interval_end": 0.85}),
    ],
    ids=["turbo-no-cfg", "sft-apg-cfg-interval"],
)
def test_served_audio_equals_diffusers_pipeline(triton, tiny_preset_dirs, version_set, extra):
    seeds = [3, 11]
    request = {
        "caption": "sunny pop, acoustic guitar, female vocal",
        "lyrics": LYRICS,
        "vocal_language": "zh",
        "duration": 10.0,
        "inference_steps": 6,
        "bpm": 120,
        "key_scale": "C major",
        "time_signature": "4",
        "seeds": seeds,
        "batch_size": 2,
        "version_set": version_set,
    } | extra
    result = stream(triton.grpc_url, "sampler", request)
    assert result.error is None, result.error
    audio = result.outputs["audio"]
    assert audio.shape == (2, 2, 480_000)
    reference = _reference(tiny_preset_dirs[version_set], request, seeds)
    assert _rel(audio, reference) <= TOLERANCE
    # The two items really are different songs (different seeds), and the check above is not vacuous.
    assert _rel(audio[0], audio[1]) > 1e-2
    done = result.final
    assert done["type"] == "done" and done["seeds"] == seeds
    assert done["versions"]["dit"] == ("1" if version_set == "turbo" else "2")


def test_progress_streams_once_per_step_before_the_audio(triton):
    result = stream(triton.grpc_url, "sampler", {"caption": "lofi", "duration": 10.0, "inference_steps": 5})
    assert result.error is None
    diffusion = [e for e in result.events if e.get("stage") == "diffusion"]
    assert [e["step"] for e in diffusion] == [1, 2, 3, 4, 5]
    assert all(e["total"] == 5 for e in diffusion)
    assert result.events[-1]["type"] == "done"
    assert len(result.final["seeds"]) == 1
    assert result.outputs["audio"].shape == (1, 2, 480_000)
    peak = np.abs(result.outputs["audio"]).max()
    assert abs(peak - 10 ** (-1 / 20)) < 1e-4  # peak-normalised to -1 dBFS, never clipping


@pytest.mark.parametrize(
    ("request_fields", "tensors", "field"),
    [
        ({"inference_steps": 500}, None, "inference_steps"),
        ({"duration": 5}, None, "duration"),
        ({"batch_size": 9}, None, "batch_size"),
        ({"task_type": "remix"}, None, "task_type"),
        ({"audio_codes": "<|audio_code_70000|>"}, None, "audio_codes"),
        ({"task_type": "repaint"}, None, "src_audio"),
        ({"task_type": "cover"}, None, "audio_codes"),
        ({"guidance_scale": "high"}, None, "guidance_scale"),
        ({"version_set": "nope"}, None, "version_set"),
        ({"colour": "blue"}, None, "colour"),
        ({"task_type": "repaint"}, {"src_audio": np.zeros((1, 48_000), np.float32)}, "src_audio"),
    ],
)
def test_bad_input_names_the_field_and_the_server_keeps_serving(triton, request_fields, tensors, field):
    bad = stream(triton.grpc_url, "sampler", {"duration": 10.0, "inference_steps": 2} | request_fields, tensors=tensors)
    assert bad.error is not None and field in bad.error
    good = stream(triton.grpc_url, "sampler", {"duration": 10.0, "inference_steps": 2})
    assert good.error is None and good.outputs["audio"].shape == (1, 2, 480_000)


def test_dit_rejects_a_wrong_dtype_with_its_name(triton):
    import tritonclient.grpc as grpcclient
    from tritonclient.utils import InferenceServerException

    client = grpcclient.InferenceServerClient(triton.grpc_url)
    inp = grpcclient.InferInput("hidden_states", [1, 250, 8], "FP64")
    inp.set_data_from_numpy(np.zeros((1, 250, 8)))
    with pytest.raises(InferenceServerException, match="hidden_states"):
        client.infer("dit", [inp])


def test_eight_concurrent_songs_share_dit_batches(triton):
    """Songs of different lengths in one bucket (12-18.3 s -> 500 frames), at different steps, meet in dit's dynamic
    batcher: mean batch >= 4."""
    before = batch_counts(triton, "dit")
    requests = [
        {"caption": f"song {i}", "duration": 12.0 + 0.9 * i, "inference_steps": 8, "seeds": [i], "version_set": "turbo"}
        for i in range(8)
    ]
    assert staggered_streams(triton.grpc_url, requests) == [None] * 8
    inferences, executions = (a - b for a, b in zip(batch_counts(triton, "dit"), before, strict=True))
    assert inferences == 8 * 8
    assert executions * 4 <= inferences, f"mean dit batch {inferences / executions:.2f} < 4"


def test_version_pinning(triton):
    sft_with_turbo_dit = stream(
        triton.grpc_url,
        "sampler",
        {"duration": 10.0, "inference_steps": 2, "version_set": "sft", "versions": {"dit": "1"}, "seeds": [5]},
    )
    turbo = stream(triton.grpc_url, "sampler", {"duration": 10.0, "inference_steps": 2, "seeds": [5]})
    assert sft_with_turbo_dit.final["versions"]["dit"] == "1"
    assert sft_with_turbo_dit.final["version_set"] == "sft"
    # Same DiT weights; the sft set runs guidance with the learned null condition, so the audio differs from turbo.
    assert _rel(sft_with_turbo_dit.outputs["audio"], turbo.outputs["audio"]) > 1e-3
    unknown = stream(triton.grpc_url, "sampler", {"duration": 10.0, "versions": {"dit": "9"}})
    assert unknown.error is not None and "dit" in unknown.error


def test_edit_tasks_and_adg_run(triton):
    rng = np.random.default_rng(0)
    src = (0.1 * rng.standard_normal((2, 48_000 * 12))).astype(np.float32)
    repaint = stream(
        triton.grpc_url,
        "sampler",
        {"task_type": "repaint", "repainting_start": 2.0, "repainting_end": 5.0, "inference_steps": 3, "seeds": [1]},
        tensors={"src_audio": src},
    )
    assert repaint.error is None, repaint.error
    assert repaint.outputs["audio"].shape == (1, 2, 12 * 48_000)  # the source's length
    cover = stream(
        triton.grpc_url,
        "sampler",
        {"task_type": "cover", "audio_cover_strength": 0.6, "inference_steps": 3, "duration": 10.0},
        tensors={"src_audio": src, "reference_audio": src},
    )
    assert cover.error is None, cover.error
    codes = "".join(f"<|audio_code_{(i * 7919) % 64000}|>" for i in range(60))  # 12 s of 5 Hz codes
    from_codes = stream(triton.grpc_url, "sampler", {"audio_codes": codes, "inference_steps": 3})
    assert from_codes.error is None
    assert from_codes.final["task_type"] == "cover"
    assert from_codes.outputs["audio"].shape == (1, 2, 60 * 5 * 1920)
    adg = stream(
        triton.grpc_url,
        "sampler",
        {"version_set": "sft", "use_adg": True, "guidance_scale": 6.0, "inference_steps": 4, "duration": 10.0},
    )
    assert adg.error is None and np.isfinite(adg.outputs["audio"]).all()


@pytest.mark.slow
def test_dit_version_swap_under_load_fails_no_request(repository_copy, tmp_path):
    """Roll a new dit version in and the old one out through the repository API while songs keep coming."""
    from model_repository.launcher.server import TritonServer

    shutil.copytree(repository_copy / "dit" / "2", repository_copy / "dit" / "4")  # 1-3: the tiny sets' DiTs
    with TritonServer(repository_copy, log_path=tmp_path / "triton.log") as server:
        stop = threading.Event()
        outcomes: list[str | None] = []

        def load() -> None:
            while not stop.is_set():
                outcomes.append(stream(server.grpc_url, "sampler", {"duration": 10.0, "inference_steps": 2}).error)

        workers = [threading.Thread(target=load) for _ in range(2)]
        for w in workers:
            w.start()
        time.sleep(1.0)
        config = json.loads(_config_json(server, "dit"))
        config["version_policy"] = {"specific": {"versions": [1, 2, 3, 4]}}
        server.load("dit", config=json.dumps(config))
        time.sleep(1.0)
        pinned = stream(server.grpc_url, "sampler", {"duration": 10.0, "inference_steps": 2, "versions": {"dit": "4"}})
        config["version_policy"] = {"specific": {"versions": [1, 3, 4]}}
        server.load("dit", config=json.dumps(config))
        time.sleep(1.0)
        stop.set()
        for w in workers:
            w.join(timeout=120)
        gone = stream(server.grpc_url, "sampler", {"duration": 10.0, "inference_steps": 2, "version_set": "sft"})
    assert pinned.error is None and pinned.final["versions"]["dit"] == "4"
    assert len(outcomes) >= 4 and outcomes.count(None) == len(outcomes), outcomes
    assert gone.error is not None and "dit" in gone.error  # version 2 was rolled out


def _config_json(server, model: str) -> str:
    import tritonclient.http as httpclient

    client = httpclient.InferenceServerClient(server.http_url)
    return json.dumps(client.get_model_config(model))
