"""GPU check: TensorRT engines for the real ACE-Step 1.5 2B turbo DiT and VAE decoder shapes, parity with torch, and
the DiT step latency torch eager vs TensorRT. Random weights; the real configs (sources below).

Usage (an NVIDIA GPU with the ``tensorrt`` wheel, e.g. inside docker/triton.Dockerfile)::

    python -m bench.gpu_check --out docs/gpu-check-results.md            # ~5-8 min: build, parity, step timing
    python -m bench.gpu_check --song --work /tmp/gpu-check               # + a 240 s song through the sampler

Steps: build diffusers' ``AceStepTransformer1DModel`` and ``AutoencoderOobleck`` with the real configs, wrap them as
served (``MaskedDiT``, ``VaeDecoderNet``), export ONNX (``export.onnx_export.export_onnx``) and build TensorRT engines
(``export.tensorrt.build_engine``) for the 30/120/240 s buckets (750/3000/6000 latent frames), check TensorRT vs torch
fp32 (relative error, NaN/Inf) and time one DiT step for batch 1/4/8 x 30/120/240 s. ``--song`` also runs a 240 s
song in-process: ``SamplerFamilies`` with a caller that runs ``dit`` and ``vae_decoder`` on the engines and the
encoders in torch. ``--work DIR`` keeps the ONNX files and engines, so a rerun skips the export and build.

Without a CUDA device or the ``tensorrt`` module it prints one line naming what is missing and exits with 2.

Real configs: DiT from ``ACE-Step/Ace-Step1.5`` ``config.json`` on Hugging Face (hidden 2048, intermediate 6144, 24
layers alternating sliding/full attention, 16 heads, head_dim 128, in_channels 192, acoustic dim 64, is_turbo) with
the rest (8 KV heads, patch 2, rope theta 1e6, sliding window 128) from diffusers' ``AceStepTransformer1DModel``
defaults, documented as the 2B model's; VAE from ``ACE-Step/Ace-Step1.5`` ``vae/config.json``. Song extras: the
condition encoder and audio (de)tokenizer at diffusers' defaults, the text encoder at Qwen3-0.6B size (28 layers,
hidden 1024), the tokenizer the tiny preset's byte-level one (no download).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import logging
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

logger = logging.getLogger(__name__)

EXIT_NO_GPU = 2
DIT_2B_TURBO: dict[str, Any] = dict(
    hidden_size=2048, intermediate_size=6144, num_hidden_layers=24, num_attention_heads=16, num_key_value_heads=8,
    head_dim=128, in_channels=192, audio_acoustic_hidden_dim=64, patch_size=2, rope_theta=1e6, sliding_window=128,
    encoder_hidden_size=2048, is_turbo=True, model_version="turbo",
)  # fmt: skip
VAE_15: dict[str, Any] = dict(
    encoder_hidden_size=128, downsampling_ratios=[2, 4, 4, 6, 10], channel_multiples=[1, 2, 4, 8, 16],
    decoder_channels=128, decoder_input_channels=64, audio_channels=2, sampling_rate=48000,
)  # fmt: skip
TEXT_ENCODER_06B: dict[str, Any] = dict(
    hidden_size=1024, intermediate_size=3072, num_hidden_layers=28, num_attention_heads=16, num_key_value_heads=8,
    head_dim=128, max_position_embeddings=32768,
)  # fmt: skip
SECONDS = (30, 120, 240)
FRAMES = tuple(25 * s for s in SECONDS)  # 750, 3000, 6000: all in export.acestep15.networks.FRAME_BUCKETS
BATCHES = (1, 4, 8)
ENCODER_LEN = 512  # packed condition tokens in the timed steps (lyrics + caption + timbre)
# bf16 engines vs fp32 torch; the fp32 VAE engine may use TF32.
MAX_REL_ERROR = {"dit": 5e-2, "vae_decoder": 1e-2}


def missing_requirements() -> list[str]:
    """What this machine lacks for the check (empty when it can run)."""
    missing = []
    try:
        import torch

        if not torch.cuda.is_available():
            missing.append(f"no CUDA device (torch {torch.__version__}: torch.cuda.is_available() is False)")
    except ImportError:
        missing.append("no torch module")
    try:
        import tensorrt  # noqa: F401
    except ImportError:
        missing.append("no tensorrt module (pip install tensorrt, or run inside docker/triton.Dockerfile's image)")
    return missing


def check_contracts(per_bucket_profiles: bool) -> dict[str, Any]:
    """The served contracts of ``dit`` and ``vae_decoder`` narrowed to the checked shapes: frames 750..6000, batch
    up to 8 (DiT; turbo sends one row per song) or 2 (VAE: 240 s of 48 kHz audio is large), one optimization profile
    (optimum 120 s) or one per bucket."""
    from export.acestep15.checkpoint import PipelineDims
    from export.acestep15.networks import build_contracts
    from export.contracts import Axis

    dims = PipelineDims(64, 1024, 2048, 151669, 2048, 5, 64000, 48000, 1920, True)
    served = build_contracts(dims)
    frames = Axis("frames", FRAMES[0], FRAMES[1], FRAMES[-1], FRAMES if per_bucket_profiles else ())
    encoder = Axis("encoder", 2, ENCODER_LEN, 2 * ENCODER_LEN)
    out = {}
    for name, batch in (("dit", 8), ("vae_decoder", 2)):
        c = served[name]
        axes = tuple(frames if a.name == "frames" else encoder if a.name == "encoder" else a for a in c.axes)
        out[name] = dataclasses.replace(c, axes=axes, max_batch_size=batch)
    return out


def build_modules(seed: int = 0) -> dict[str, Any]:
    """The real-config DiT and VAE (random weights, CPU, fp32) wrapped as served."""
    import torch
    from diffusers import AutoencoderOobleck
    from diffusers.models.transformers.ace_step_transformer import AceStepTransformer1DModel

    from export.acestep15.networks import MaskedDiT, VaeDecoderNet

    torch.manual_seed(seed)
    transformer = AceStepTransformer1DModel(**DIT_2B_TURBO).eval()
    vae = AutoencoderOobleck(**VAE_15).eval()
    for module in (transformer, vae):
        for p in module.parameters():  # a parameter left uninitialised would make every comparison meaningless
            if not bool(torch.isfinite(p).all()):
                p.data.normal_(0.0, 0.02)
    params = sum(p.numel() for p in transformer.parameters())
    logger.info("DiT %.2fB parameters, VAE %.0fM", params / 1e9, sum(p.numel() for p in vae.parameters()) / 1e6)
    return {"transformer": transformer, "vae": vae, "dit": MaskedDiT(transformer), "vae_decoder": VaeDecoderNet(vae)}


class TrtEngine:
    """One deserialized engine; call it with CUDA tensors by name, get CUDA tensors by name."""

    def __init__(self, trt: Any, plan: Path) -> None:
        import torch

        self.trt = trt
        self.engine = trt.Runtime(trt.Logger(trt.Logger.WARNING)).deserialize_cuda_engine(plan.read_bytes())
        if self.engine is None:
            raise RuntimeError(f"TensorRT could not deserialize {plan}; rebuild it (delete it and rerun)")
        self.context = self.engine.create_execution_context()
        names = [self.engine.get_tensor_name(i) for i in range(self.engine.num_io_tensors)]
        self.outputs = [n for n in names if self.engine.get_tensor_mode(n) == trt.TensorIOMode.OUTPUT]
        self.inputs = [n for n in names if n not in self.outputs]
        self.dtypes = {trt.float32: torch.float32, trt.float16: torch.float16, trt.bfloat16: torch.bfloat16,
                       trt.int32: torch.int32, trt.int64: torch.int64, trt.bool: torch.bool}  # fmt: skip
        self._profile = 0

    def _select_profile(self, inputs: dict[str, Any], stream: int) -> None:
        for k in range(self.engine.num_optimization_profiles):
            fits = True
            for name in self.inputs:
                lo, _, hi = self.engine.get_tensor_profile_shape(name, k)
                shape = tuple(inputs[name].shape)
                fits = fits and all(a <= s <= b for a, s, b in zip(lo, shape, hi, strict=True))
            if fits:
                if k != self._profile:
                    self.context.set_optimization_profile_async(k, stream)
                    self._profile = k
                return
        shapes = {n: tuple(inputs[n].shape) for n in self.inputs}
        raise ValueError(f"no optimization profile of the engine covers the shapes {shapes}; rebuild with them")

    def __call__(self, inputs: dict[str, Any]) -> dict[str, Any]:
        import torch

        stream = torch.cuda.current_stream().cuda_stream
        self._select_profile(inputs, stream)
        keep = []
        for name in self.inputs:
            t = inputs[name].contiguous().to(self.dtypes[self.engine.get_tensor_dtype(name)])
            keep.append(t)
            self.context.set_input_shape(name, tuple(t.shape))
            self.context.set_tensor_address(name, t.data_ptr())
        out = {}
        for name in self.outputs:
            shape = tuple(self.context.get_tensor_shape(name))
            out[name] = torch.empty(shape, dtype=self.dtypes[self.engine.get_tensor_dtype(name)], device="cuda")
            self.context.set_tensor_address(name, out[name].data_ptr())
        if not self.context.execute_async_v3(stream):
            raise RuntimeError("TensorRT execution failed (see the TensorRT log above)")
        return out


def cuda_inputs(contract: Any, sizes: dict[str, int], seed: int, dtype: Any = None) -> dict[str, Any]:
    import torch

    arrays = contract.sample_inputs(sizes, seed=seed)
    out = {k: torch.from_numpy(v).cuda() for k, v in arrays.items()}
    return {k: v.to(dtype) if dtype is not None and v.is_floating_point() else v for k, v in out.items()}


def median_ms(fn: Callable[[], Any], iters: int, warmup: int = 2) -> float:
    import torch

    times = []
    for i in range(warmup + iters):
        torch.cuda.synchronize()
        start = time.perf_counter()
        fn()
        torch.cuda.synchronize()
        if i >= warmup:
            times.append((time.perf_counter() - start) * 1000)
    return statistics.median(times)


def parity(name: str, module: Any, engine: TrtEngine, contract: Any, sizes: dict[str, int]) -> dict[str, Any]:
    import torch

    from export.onnx_export import relative_error

    inputs = cuda_inputs(contract, sizes, seed=7)
    with torch.inference_mode():
        want = module(*(inputs[n] for n in contract.input_names))
        got = engine(inputs)[contract.output_names[0]]
    finite = bool(torch.isfinite(got).all())
    err = relative_error(got.float().cpu().numpy(), want.float().cpu().numpy()) if finite else float("inf")
    ok = finite and err <= MAX_REL_ERROR[name]
    return {"network": name, "sizes": sizes, "rel_error": err, "finite": finite, "ok": ok}


def prepare(args: argparse.Namespace, work: Path, trt: Any) -> tuple[dict[str, Any], dict[str, Any], dict[str, Any]]:
    """Modules (GPU, fp32), contracts and engines, exporting and building what ``work`` does not hold yet."""
    import torch

    from export.onnx_export import export_onnx
    from export.tensorrt import build_engine

    contracts = check_contracts(args.per_bucket_profiles)
    modules = build_modules()
    # Trace with batch 2: torch.export specialises a dimension traced at size 1.
    trace = {"dit": {"batch": 2, "frames": 250, "encoder": 111}, "vae_decoder": {"batch": 2, "frames": 250}}
    engines = {}
    for name in ("dit", "vae_decoder"):
        onnx, plan = work / name / "model.onnx", work / name / "model.plan"
        if not plan.exists():
            if not onnx.exists():
                with phase(f"{name}: ONNX export"):
                    export_onnx(modules[name], contracts[name], onnx, sizes=trace[name])
            with phase(f"{name}: TensorRT build ({contracts[name].precision})"):
                build_engine(onnx, contracts[name], plan, timing_cache=work / "timing.cache")
        engines[name] = TrtEngine(trt, plan)
    torch.backends.cudnn.allow_tf32 = torch.backends.cuda.matmul.allow_tf32 = False  # fp32 reference really fp32
    for name in ("transformer", "vae"):
        modules[name].cuda()
    return modules, contracts, engines


class phase:
    """Log a phase's wall time; collected for the report."""

    times: dict[str, float] = {}

    def __init__(self, what: str) -> None:
        self.what = what

    def __enter__(self) -> None:
        self.start = time.perf_counter()
        print(f"gpu_check: {self.what} ...", file=sys.stderr, flush=True)

    def __exit__(self, *exc: object) -> None:
        phase.times[self.what] = time.perf_counter() - self.start
        print(f"gpu_check: {self.what}: {phase.times[self.what]:.1f} s", file=sys.stderr, flush=True)


def step_timings(modules: dict[str, Any], contracts: dict[str, Any], engines: dict[str, Any], iters: int) -> list:
    import copy

    import torch

    dit = contracts["dit"]
    bf16 = copy.deepcopy(modules["dit"]).to(torch.bfloat16)
    rows = []
    for seconds, frames in zip(SECONDS, FRAMES, strict=True):
        for batch in BATCHES:
            sizes = {"batch": batch, "frames": frames, "encoder": ENCODER_LEN}
            fp32 = cuda_inputs(dit, sizes, seed=3)
            half = {k: v.to(torch.bfloat16) if v.is_floating_point() else v for k, v in fp32.items()}
            with torch.inference_mode():
                eager = median_ms(lambda: bf16(*(half[n] for n in dit.input_names)), iters)  # noqa: B023
                trt_ms = median_ms(lambda: engines["dit"](fp32), iters)  # noqa: B023
            rows.append({"seconds": seconds, "batch": batch, "torch_bf16_ms": eager, "trt_ms": trt_ms})
    return rows


def song(modules: dict[str, Any], contracts: dict[str, Any], engines: dict[str, Any], work: Path) -> dict[str, Any]:
    """A 240 s turbo song (8 steps) through ``SamplerFamilies``: ``dit`` and ``vae_decoder`` on TensorRT, the
    encoders in torch fp32 (real sizes, random weights)."""
    import types

    import numpy as np
    import torch
    from diffusers.pipelines.ace_step.modeling_ace_step import AceStepConditionEncoder
    from transformers import Qwen3Config, Qwen3Model

    from export.acestep15.checkpoint import PipelineDims
    from export.acestep15.networks import build_contracts, wrappers
    from export.acestep15.presets import build_tiny_tokenizer
    from export.acestep15.repository import NETWORKS, write_sampler
    from model_repository.sampler.registry import SamplerFamilies

    tokenizer = build_tiny_tokenizer()
    text = Qwen3Model(Qwen3Config(vocab_size=len(tokenizer), **TEXT_ENCODER_06B)).eval()
    condition = AceStepConditionEncoder().eval()
    pipe = types.SimpleNamespace(
        tokenizer=tokenizer,
        text_encoder=text,
        condition_encoder=condition,
        transformer=modules["transformer"],
        vae=modules["vae"],
    )
    dims = PipelineDims(64, 1024, 2048, len(tokenizer), 2048, 5, 64000, 48000, 1920, True)
    repo = work / "song-repo"
    versions = {n: 1 for n in NETWORKS}
    write_sampler(repo=repo, pipe=pipe, dims=dims, version_set="turbo", versions=versions, variant="turbo")
    served = build_contracts(dims)
    torch_nets = {n: wrappers(pipe)[n]().cuda() for n in ("text_encoder", "condition_encoder")}
    spent: dict[str, list[float]] = {}

    def call(model: str, version: str, inputs: dict[str, np.ndarray], outputs: list[str]) -> dict[str, np.ndarray]:
        torch.cuda.synchronize()
        start = time.perf_counter()
        tensors = {k: torch.from_numpy(np.ascontiguousarray(v)).cuda() for k, v in inputs.items()}
        with torch.inference_mode():
            if model in engines:
                result = engines[model](tensors)
            elif model in torch_nets:
                values = torch_nets[model](*(tensors[n] for n in served[model].input_names))
                result = dict(zip(served[model].output_names, values, strict=True))
            else:
                raise ValueError(f"gpu_check: the song needs network {model!r}, which this check does not provide")
        out = {k: result[k].cpu().numpy() for k in outputs}
        spent.setdefault(model, []).append(time.perf_counter() - start)
        return out

    families = SamplerFamilies(repo / "sampler" / "1" / "assets", call)
    raw = json.dumps({"caption": "upbeat pop, bright synths", "lyrics": "[Verse]\nla la la\n", "duration": 240,
                      "inference_steps": 8, "seeds": [1]})  # fmt: skip
    req = families.parse(raw, has_src_audio=False)
    start = time.perf_counter()
    audio, _, _ = families.runner(req).run(req)
    total = time.perf_counter() - start
    return {"total_s": total, "audio_s": audio.shape[-1] / 48000, "finite": bool(np.isfinite(audio).all()),
            "calls": {k: (len(v), sum(v)) for k, v in spent.items()}}  # fmt: skip


def report(checks: list[dict[str, Any]], steps: list[dict[str, Any]], song_result: dict[str, Any] | None) -> str:
    lines = ["## TensorRT vs torch fp32 (random weights, real shapes)", "",
             "| network | shape | relative error | finite | limit | ok |", "|---|---|---|---|---|---|"]  # fmt: skip
    for c in checks:
        shape = " × ".join(f"{k} {v}" for k, v in c["sizes"].items())
        lim = MAX_REL_ERROR[c["network"]]
        lines.append(f"| {c['network']} | {shape} | {c['rel_error']:.2e} | {c['finite']} | {lim:g} | {c['ok']} |")
    lines += ["", f"## One DiT step (2B turbo, encoder {ENCODER_LEN} tokens), median ms", "",
              "| song | batch | torch eager bf16 | TensorRT bf16 | speed-up |", "|---|---|---|---|---|"]  # fmt: skip
    for r in steps:
        lines.append(f"| {r['seconds']} s | {r['batch']} | {r['torch_bf16_ms']:.1f} | {r['trt_ms']:.1f} "
                     f"| {r['torch_bf16_ms'] / r['trt_ms']:.2f}× |")  # fmt: skip
    if song_result is not None:
        calls = ", ".join(f"{k} {n}× {s:.2f} s" for k, (n, s) in song_result["calls"].items())
        lines += ["", "## 240 s song, 8 turbo steps, in-process sampler", "",
                  f"{song_result['total_s']:.2f} s for {song_result['audio_s']:.0f} s of audio "
                  f"(finite: {song_result['finite']}); {calls}"]  # fmt: skip
    lines += ["", "## Phases", "", *(f"- {k}: {v:.1f} s" for k, v in phase.times.items())]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, default=None, help="also write the markdown table here")
    parser.add_argument("--work", type=Path, default=None, help="keep ONNX files and engines here (reused)")
    parser.add_argument("--song", action="store_true", help="also run a 240 s song through the sampler")
    parser.add_argument("--per-bucket-profiles", action="store_true", help="one TensorRT profile per bucket")
    parser.add_argument("--iters", type=int, default=5, help="timed iterations per DiT step shape")
    args = parser.parse_args(argv)
    missing = missing_requirements()
    if missing:
        print(f"gpu_check: cannot run here: {'; '.join(missing)}", file=sys.stderr)
        return EXIT_NO_GPU
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    import tensorrt as trt

    with tempfile.TemporaryDirectory(prefix="gpu-check-") as scratch:
        work = args.work or Path(scratch)
        modules, contracts, engines = prepare(args, work, trt)
        cases = [
            ("dit", {"batch": 2, "frames": 750, "encoder": 300}),
            ("dit", {"batch": 1, "frames": 6000, "encoder": ENCODER_LEN}),
            ("vae_decoder", {"batch": 1, "frames": 750}),
        ]
        with phase("parity"):
            checks = [parity(n, modules[n], engines[n], contracts[n], sizes) for n, sizes in cases]
        with phase("DiT step timing"):
            steps = step_timings(modules, contracts, engines, args.iters)
        song_result = None
        if args.song:
            with phase("240 s song"):
                song_result = song(modules, contracts, engines, work)
    table = report(checks, steps, song_result)
    print(table)
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(table)
    song_ok = song_result is None or song_result["finite"]
    return 0 if song_ok and all(c["ok"] for c in checks) else 1


if __name__ == "__main__":
    sys.exit(main())
