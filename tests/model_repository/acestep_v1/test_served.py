"""The ``sampler`` model serving ACE-Step v1 (``"family": "acestep_v1"``) through a real tritonserver on the tiny
repository, beside ACE-Step 1.5.

Two references for the served audio:

* the same runner in-process (:class:`V1SongRunner` over :class:`OrtNetworkCaller`, the repository's ONNX files):
  identical computation, but Triton batches the rows of concurrent calls differently, which changes ONNX Runtime's
  float32 summation order: relative error (max |diff| / max |reference|) <= ``SAME_GRAPHS`` = 1e-5 (measured ~1e-7);
* an independent torch reference written here from the ``export/acestep_v1`` modules and
  ``acestep_v1_sampling`` as the original pipeline does it: unpadded tensors, ERG as forward hooks on the weakened
  ``to_q``/``linear_q``/UMT5 ``q`` projections, ``MusicDCAE.decode``. Relative error <= ``TORCH`` = 1e-4: each ONNX
  network differs from torch by ~1e-6 relative (the export parity tests), guidance and 6-8 Euler steps plus the DCAE
  and the vocoder grow that to ~1e-5 at most (measured: see the assertion messages). A wrong memory layout, schedule,
  seed, ERG row or guidance formula moves the audio by O(0.1..1), so 1e-4 separates "same computation" from
  "different computation" with a wide margin.
"""

from __future__ import annotations

import json
import math
import os
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

from tests.model_repository.streaming import batch_counts, staggered_streams, stream

pytestmark = pytest.mark.triton

SAME_GRAPHS = 1e-5
TORCH = 1e-4
LYRICS = "[verse]\n周末的风 吹起白衬衫\n\n[chorus]\nride to the sea, ride to the sea"
CAPTION = "pop, acoustic guitar, female vocal, 120 bpm"
SR = 48_000


def _rel(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.abs(a.astype(np.float64) - b).max() / np.abs(b).max())


@pytest.fixture(scope="module")
def v1_preset(tiny_repository: Path, tiny_work: Path) -> Path:
    reuse = os.environ.get("TRITONE_TEST_REPOSITORY")
    work = Path(reuse).parent / f".{Path(reuse).name}-work" if reuse else tiny_work
    return work / "presets" / "acestep_v1-tiny"


class Recorder:
    """An in-process network caller that keeps every call's inputs and outputs (per network, in order)."""

    def __init__(self, repository: Path) -> None:
        from model_repository.onnx.inprocess import OrtNetworkCaller

        self.inner = OrtNetworkCaller(repository)
        self.calls: dict[str, list[tuple[dict[str, np.ndarray], dict[str, np.ndarray]]]] = {}

    def __call__(self, model: str, version: str, inputs: dict[str, np.ndarray], outputs: list[str]):
        result = self.inner(model, version, inputs, outputs)
        self.calls.setdefault(model, []).append((inputs, result))
        return result


@pytest.fixture(scope="module")
def inprocess(tiny_repository: Path):
    """Run a request dict through the v1 runner in this process; returns (audio, seeds, info, recorder)."""
    from model_repository.sampler.registry import SamplerFamilies

    def run(request: dict[str, Any], src_audio: np.ndarray | None = None):
        recorder = Recorder(tiny_repository)
        families = SamplerFamilies(tiny_repository / "sampler" / "1" / "assets", recorder)
        req = families.parse(json.dumps(request), has_src_audio=src_audio is not None)
        audio, seeds, info = families.runner(req).run(req, src_audio=src_audio)
        return audio, seeds, info, recorder

    return run


# ----------------------------------------------------------------------------------------------------------------------
# The independent torch reference (the original text2music recipe)


class _Hooks:
    """Forward hooks that scale the outputs of the given modules by 0.01 (the original's ERG), removed on exit."""

    def __init__(self, modules: list[torch.nn.Module]) -> None:
        self.modules, self.handles = modules, []

    def __enter__(self) -> None:
        self.handles = [m.register_forward_hook(lambda _m, _i, out: out * 0.01) for m in self.modules]

    def __exit__(self, *exc: object) -> None:
        for h in self.handles:
            h.remove()


@torch.no_grad()
def torch_reference(preset: Path, request: dict[str, Any]) -> np.ndarray:
    from export.acestep_v1.checkpoint import load_music_dcae, load_text_encoder, load_transformer
    from export.acestep_v1.lyric_tokenizer import LyricTokenizer
    from model_repository.acestep_v1 import sampling as S

    dit, (umt5, tok), music = load_transformer(preset), load_text_encoder(preset), load_music_dcae(preset)
    cfg = dit.config
    seeds = request["seeds"]
    batch = len(seeds)
    steps, scale = request["inference_steps"], request.get("guidance_scale", 15.0)
    erg_tag, erg_lyric = request.get("use_erg_tag", True), request.get("use_erg_lyric", True)
    erg_diffusion = request.get("use_erg_diffusion", True)
    cfg_type, interval = request.get("guidance_type", "apg"), request.get("guidance_interval", 0.5)
    decay, min_scale = request.get("guidance_interval_decay", 0.0), request.get("min_guidance_scale", 3.0)
    omega = request.get("omega_scale", 10.0)

    inputs = tok([request["caption"]], return_tensors="pt", padding=True, truncation=True, max_length=256)
    text = umt5(**inputs).last_hidden_state.repeat(batch, 1, 1)
    text_mask = inputs["attention_mask"].repeat(batch, 1)
    with _Hooks([umt5.encoder.block[i].layer[0].SelfAttention.q for i in cfg.erg_text_layers]):
        null_text = umt5(**inputs).last_hidden_state.repeat(batch, 1, 1) if erg_tag else None
    ids = LyricTokenizer().tokenize_lyrics(request["lyrics"]).ids
    lyric = torch.tensor([ids]).repeat(batch, 1)
    lyric_mask = torch.ones_like(lyric)
    speaker = torch.zeros(batch, cfg.speaker_embedding_dim)
    memory, memory_mask = dit.encode(text, text_mask, speaker, lyric, lyric_mask)
    if erg_lyric:
        weak_lyric = [dit.lyric_encoder.encoders[i].self_attn.linear_q for i in cfg.erg_lyric_layers]
        with _Hooks(weak_lyric):
            null_memory, _ = dit.encode(null_text if null_text is not None else torch.zeros_like(text), text_mask,
                                        torch.zeros_like(speaker), lyric, lyric_mask)
    else:
        null_memory, _ = dit.encode(torch.zeros_like(text), text_mask, torch.zeros_like(speaker),
                                    torch.zeros_like(lyric), lyric_mask)

    frames = int(request["duration"] * 44100 / 512 / 8)
    schedule = S.flow_match_schedule(steps)
    x = S.seeded_noise((batch, 8, 16, frames), seeds)
    ones = torch.ones(batch, frames)
    start, end = S.guidance_interval(steps, interval)
    momentum = S.MomentumBuffer()
    weak_dit = [m for i in cfg.erg_dit_blocks for m in (dit.transformer_blocks[i].attn.to_q,
                                                        dit.transformer_blocks[i].cross_attn.to_q)]
    for i, t in enumerate(schedule.timesteps):
        tt = t.expand(batch)
        cond = dit.decode(x, ones, memory, memory_mask, tt, output_length=frames)
        if scale not in (0.0, 1.0) and start <= i < end:
            with _Hooks(weak_dit if erg_diffusion else []):
                uncond = dit.decode(x, ones, null_memory, memory_mask, tt, output_length=frames)
            current = S.guidance_scale_at(i, start, end, scale, decay, min_scale)
            v = S.guide(cfg_type, cond, uncond, current, i, momentum_buffer=momentum)
        else:
            v = cond
        x = S.euler_step(x, v, schedule.sigmas[i], schedule.sigmas[i + 1], omega=omega)
    return music.decode(x, sample_rate=SR).numpy()


# ----------------------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "extra",
    [
        {"guidance_interval": 0.75, "guidance_interval_decay": 0.5, "min_guidance_scale": 4.0},
        {"guidance_type": "cfg_star", "guidance_interval": 1.0, "omega_scale": 4.0, "use_erg_tag": False,
         "use_erg_lyric": False, "use_erg_diffusion": False},
    ],
    ids=["apg-interval-decay-erg", "cfg-zero-star-no-erg"],
)
def test_served_v1_audio_equals_the_runner_and_the_torch_reference(triton, inprocess, v1_preset, extra):
    request = {
        "family": "acestep_v1",
        "caption": CAPTION,
        "lyrics": LYRICS,
        "duration": 10.0,
        "inference_steps": 8,
        "guidance_scale": 12.0,
        "seeds": [3, 11],
        "batch_size": 2,
    } | extra
    served = stream(triton.grpc_url, "sampler", request)
    assert served.error is None, served.error
    audio = served.outputs["audio"]
    frames = int(10.0 * 44100 / 4096)  # 107 latent frames
    assert audio.shape == (2, 2, math.ceil(frames * 4096 * SR / 44100))
    local, seeds, info, _ = inprocess(request)
    reference = torch_reference(v1_preset, request)
    same, ref = _rel(audio, local), _rel(audio, reference)
    assert same <= SAME_GRAPHS, f"served vs in-process runner: {same:.2e}"
    assert ref <= TORCH, f"served vs torch reference: {ref:.2e}"
    assert _rel(audio[0], audio[1]) > 1e-2  # two seeds, two songs: the comparisons above are not vacuous
    done = served.final
    assert done["type"] == "done" and done["seeds"] == [3, 11] and done["family"] == "acestep_v1"
    assert done["sample_rate"] == SR and done["version_set"] == "base" and done["steps"] == 8
    diffusion = [e["step"] for e in served.events if e.get("stage") == "diffusion"]
    assert diffusion == list(range(1, 9))


def test_guidance_and_erg_change_the_song(inprocess):
    base = {"family": "acestep_v1", "caption": CAPTION, "lyrics": LYRICS, "duration": 10.0, "inference_steps": 6,
            "seeds": [2], "guidance_interval": 1.0}
    guided, *_ = inprocess(base)
    plain, *_ = inprocess(base | {"guidance_scale": 1.0})
    no_erg, *_ = inprocess(base | {"use_erg_diffusion": False})
    cfg, *_ = inprocess(base | {"guidance_type": "cfg"})
    for other in (plain, no_erg, cfg):
        assert _rel(other, guided) > 1e-3


def test_unguided_steps_send_one_row_per_song_and_guided_steps_two(inprocess):
    _, _, _, rec = inprocess({"family": "acestep_v1", "duration": 10.0, "inference_steps": 8, "seeds": [1, 2],
                              "batch_size": 2, "guidance_interval": 0.5})
    rows = [inputs["hidden_states"].shape[0] for inputs, _ in rec.calls["v1_dit"]]
    assert rows == [2, 2, 4, 4, 4, 4, 2, 2]  # the centred half of 8 steps is guided: [2, 6)
    ergs = [inputs["erg"].reshape(-1).tolist() for inputs, _ in rec.calls["v1_dit"]]
    assert ergs[2] == [0, 0, 1, 1] and ergs[0] == [0, 0]
    first = rec.calls["v1_dit"][0][0]
    assert first["hidden_states"].shape[-1] == 108 and first["latent_mask"].sum(axis=1).tolist() == [107, 107]


def test_heun_takes_two_evaluations_per_step(inprocess):
    request = {"family": "acestep_v1", "duration": 10.0, "inference_steps": 4, "seeds": [4], "guidance_scale": 1.0}
    heun, _, info, rec = inprocess(request | {"scheduler": "heun"})
    euler, *_ = inprocess(request)
    assert len(rec.calls["v1_dit"]) == 2 * 4 - 1 and info["steps"] == 7
    timesteps = [float(inputs["timestep"][0, 0]) for inputs, _ in rec.calls["v1_dit"]]
    assert timesteps[1] == timesteps[2] and timesteps[3] == timesteps[4]
    assert np.isfinite(heun).all() and _rel(heun, euler) > 1e-3


def test_per_item_seeds_and_retake_variance(inprocess):
    base = {"family": "acestep_v1", "caption": CAPTION, "duration": 10.0, "inference_steps": 6, "guidance_scale": 1.0}
    pair, seeds, _, _ = inprocess(base | {"seeds": [5, 6], "batch_size": 2})
    again, *_ = inprocess(base | {"seeds": [5, 6], "batch_size": 2})
    assert seeds == [5, 6] and np.array_equal(pair, again) and _rel(pair[0], pair[1]) > 1e-2
    song, *_ = inprocess(base | {"seeds": [5]})
    keep, _, info, _ = inprocess(base | {"seeds": [5], "task_type": "retake", "retake_seeds": [9],
                                         "retake_variance": 0.0})
    assert np.array_equal(keep, song) and info["retake_seeds"] == [9]  # variance 0: the same noise
    full, *_ = inprocess(base | {"seeds": [5], "task_type": "retake", "retake_seeds": [9], "retake_variance": 1.0})
    other, *_ = inprocess(base | {"seeds": [9]})
    assert _rel(full, other) < 1e-5  # variance 1: the retake seed's noise (cos(pi/2) = -4e-8 of the original)
    half, *_ = inprocess(base | {"seeds": [5], "task_type": "retake", "retake_seeds": [9]})
    assert _rel(half, song) > 1e-2 and _rel(half, other) > 1e-2


def _source(seconds: float) -> np.ndarray:
    t = np.arange(int(seconds * SR)) / SR
    tone = 0.3 * np.sin(2 * np.pi * 220 * t) * (1 + 0.5 * np.sin(2 * np.pi * 0.5 * t))
    return np.stack([tone, np.roll(tone, 100)]).astype(np.float32)


def test_repaint_keeps_the_latents_outside_the_window(triton, inprocess):
    src = _source(12.0)
    request = {"family": "acestep_v1", "task_type": "repaint", "repaint_start": 3.0, "repaint_end": 6.0,
               "inference_steps": 8, "seeds": [7], "retake_seeds": [17], "retake_variance": 0.5}
    audio, _, info, rec = inprocess(request, src_audio=src)
    source = rec.calls["v1_dcae_encoder"][0][1]["latents"]  # [1, 8, 16, 130]
    final = rec.calls["v1_dcae_decoder"][0][0]["latents"]
    frames = source.shape[-1]
    start, end = int(3.0 * 44100 / 4096), int(6.0 * 44100 / 4096)
    assert final.shape == source.shape and frames == math.ceil(12.0 * 44100 / 4096)
    outside = np.r_[0:start, end:frames]
    assert np.array_equal(final[..., outside], source[..., outside])
    assert np.abs(final[..., start:end] - source[..., start:end]).max() > 0.1
    assert len(rec.calls["v1_dit"]) == 4 and info["steps"] == 4  # the first int(8 * (1 - 0.5)) steps are skipped
    served = stream(triton.grpc_url, "sampler", request, tensors={"src_audio": src})
    assert served.error is None, served.error
    assert _rel(served.outputs["audio"], audio) <= SAME_GRAPHS


@pytest.mark.parametrize(
    ("start", "end", "left", "right"),
    [(-3.0, 12.0, 32, 0), (0.0, 16.0, 0, 172 - 130)],
    ids=["before", "after"],
)
def test_extend_keeps_the_source_latents_and_grows_the_song(inprocess, start, end, left, right):
    src = _source(12.0)
    request = {"family": "acestep_v1", "task_type": "extend", "repaint_start": start, "repaint_end": end,
               "inference_steps": 6, "seeds": [8]}
    audio, _, info, rec = inprocess(request, src_audio=src)
    source = rec.calls["v1_dcae_encoder"][0][1]["latents"]
    final = rec.calls["v1_dcae_decoder"][0][0]["latents"]
    frames = source.shape[-1]
    assert final.shape[-1] == frames + left + right == info["latent_frames"]
    assert np.array_equal(final[..., left : left + frames], source)
    grown = np.r_[0:left, left + frames : final.shape[-1]]
    assert np.abs(final[..., grown]).max() > 0.1  # generated where the source was zero-padded
    assert audio.shape[-1] == math.ceil((frames + left + right) * 4096 * SR / 44100)


def test_eight_concurrent_v1_songs_share_dit_batches(triton):
    """Songs of 10.5-16.8 s (113-180 frames: one 216-frame bucket), started 10 ms apart so they are at different
    steps, meet in v1_dit's dynamic batcher: mean batch >= 4 (unguided: one row per song per step)."""
    before = batch_counts(triton, "v1_dit")
    requests = [
        {"family": "acestep_v1", "caption": f"song {i}", "duration": 10.5 + 0.9 * i, "inference_steps": 8,
         "seeds": [i], "guidance_scale": 1.0}
        for i in range(8)
    ]
    assert staggered_streams(triton.grpc_url, requests) == [None] * 8
    inferences, executions = (a - b for a, b in zip(batch_counts(triton, "v1_dit"), before, strict=True))
    assert inferences == 8 * 8
    assert executions * 4 <= inferences, f"mean v1_dit batch {inferences / executions:.2f} < 4"


def test_describe_lists_both_families(triton):
    result = stream(triton.grpc_url, "sampler", {"describe": True}, outputs=())
    assert result.error is None, result.error
    families = result.final["families"]
    assert set(families) == {"acestep15", "acestep_v1"} and result.final["default_family"] == "acestep15"
    assert set(families["acestep15"]["version_sets"]) == {"turbo", "sft", "base"}
    v1 = families["acestep_v1"]
    assert v1["default_version_set"] == "base" and v1["version_sets"]["base"]["versions"]["v1_dit"] == "1"
    assert v1["max_duration"] == pytest.approx(240.0, abs=0.1)


@pytest.mark.parametrize(
    ("fields", "tensors", "named"),
    [
        ({"guidance_type": "pag"}, None, "guidance_type"),
        ({"scheduler": "ddim"}, None, "scheduler"),
        ({"task_type": "cover"}, None, "task_type"),
        ({"task_type": "repaint", "repaint_start": 1.0, "repaint_end": 2.0}, None, "src_audio"),
        ({"task_type": "repaint"}, {"src_audio": _source(11.0)}, "repaint_start"),
        ({"task_type": "repaint", "repaint_start": 2.0, "repaint_end": 30.0}, {"src_audio": _source(11.0)},
         "repaint_end"),
        ({"task_type": "extend", "repaint_start": 1.0, "repaint_end": 5.0}, {"src_audio": _source(11.0)}, "extend"),
        ({"use_adg": True}, None, "use_adg"),
        ({"family": "acestep15", "omega_scale": 5.0}, None, "omega_scale"),
        ({"duration": 300.0}, None, "duration"),
        ({"retake_variance": 2.0}, None, "retake_variance"),
        ({}, {"reference_audio": _source(11.0)}, "reference_audio"),
        ({"family": "acestep_v2"}, None, "family"),
        ({"version_set": "turbo"}, None, "version_set"),
        ({"versions": {"dit": "1"}}, None, "versions"),
    ],
)
def test_bad_v1_input_names_the_field_and_the_server_keeps_serving(triton, fields, tensors, named):
    base = {"family": "acestep_v1", "duration": 10.0, "inference_steps": 2}
    bad = stream(triton.grpc_url, "sampler", base | fields, tensors=tensors)
    assert bad.error is not None and named in bad.error, bad.error
    good = stream(triton.grpc_url, "sampler", base | {"guidance_scale": 1.0})
    assert good.error is None and good.outputs["audio"].shape[0] == 1


@pytest.mark.slow
def test_extend_past_240_s_keeps_the_far_source_aside_and_decodes_in_windows(inprocess):
    """236 s of source + 10 s after it: the DiT sees the last 2583 frames, the first source frames are kept aside
    unchanged, and the 246 s result is decoded in overlapped windows (the decoder's contract ends at 240 s)."""
    src = _source(236.0)
    request = {"family": "acestep_v1", "task_type": "extend", "repaint_start": 0.0, "repaint_end": 246.0,
               "inference_steps": 4, "seeds": [1], "guidance_scale": 1.0}
    audio, _, info, rec = inprocess(request, src_audio=src)
    source = rec.calls["v1_dcae_encoder"][0][1]["latents"]
    frames = int(246.0 * 44100 / 4096)  # the song now ends at repaint_end
    assert info["latent_frames"] == frames == 2648
    assert all(inputs["hidden_states"].shape[-1] == 2584 for inputs, _ in rec.calls["v1_dit"])
    assert int(rec.calls["v1_dit"][0][0]["latent_mask"].sum()) == 2583
    windows = [inputs["latents"] for inputs, _ in rec.calls["v1_dcae_decoder"]]
    assert len(windows) > 1 and all(w.shape[-1] <= 512 for w in windows)
    assert np.array_equal(windows[0], source[..., :512])  # the kept-aside source frames, unchanged
    assert audio.shape == (1, 2, math.ceil(frames * 4096 * SR / 44100)) and np.isfinite(audio).all()
