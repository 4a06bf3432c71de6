"""Songs per minute at 1, 4, 8 and 16 concurrent tiny songs on CPU, in one run, side by side:

* ``AceStepPipeline`` called in-process one request at a time (what the upstream ACE-Step API server does: one
  worker, no batching across requests) -- the baseline;
* the Triton sampler with its step scheduler (one loop for all songs: one ``dit`` call per step for all of them);
* the Triton sampler with ``step_scheduler: false`` (one thread per song, songs meet only in ``dit``'s dynamic batcher
  within its queue window: the path before the scheduler), for comparison.

For every row it prints songs/min, mean ``dit`` rows per call (Triton's statistics: inferences / executions), DiT
song-steps per second, p50 song latency, and where a song's time goes: the wall time of the run per song split into
the networks' execution time (Triton's compute statistics: encoders = ``text_encoder`` + ``condition_encoder``, DiT
steps = ``dit``, decode = ``vae_decoder``) and the rest (sampler Python, BLS transport, waiting). The baseline's split
comes from timing hooks on the pipeline's modules.

``--decoder 1x1,1x2,2x1`` adds step-scheduler rows for other ``vae_decoder`` placements (instances x ONNX Runtime
threads per instance, written into a copy of the repository's config), side by side with the exported one.

    .venv/bin/python -m bench.songs_per_minute [--steps 8] [--duration 30] [--songs 16] [--concurrency 1,4,8,16]
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import statistics
import tempfile
import time
from collections import defaultdict
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import torch

from bench.stack import DEFAULT_REPOSITORY, dit_counts, machine, tiny_repository
from model_repository.launcher.server import TritonServer
from tests.model_repository.streaming import stream

STAGES = {"encoders": ("text_encoder", "condition_encoder"), "dit": ("dit",), "decode": ("vae_decoder",)}
MODELS = ["sampler", "text_encoder", "condition_encoder", "dit", "vae_decoder"]


def compute_seconds(server: TritonServer, model: str) -> float:
    """Execution time of all versions of ``model`` so far (input + infer + output), seconds: from the per-batch
    statistics, which count each execution once (the per-request ones count a batch of N requests N times)."""
    total = 0
    for entry in server.model_statistics(model)["model_stats"]:
        for batch in entry.get("batch_stats", []):
            total += sum(int(batch[k]["ns"]) for k in ("compute_input", "compute_infer", "compute_output"))
    return total / 1e9


def split(stage_seconds: dict[str, float], wall: float, songs: int) -> str:
    """Seconds per song: each stage's execution time, then the rest of the run's wall time (sampler Python,
    transport, waiting; negative when stages ran in parallel)."""
    per = {k: v / songs for k, v in stage_seconds.items()}
    rest = wall / songs - sum(per.values())
    return "  ".join(f"{per[k]:6.3f}" for k in STAGES) + f"  {rest:7.3f}"


def served(server: TritonServer, concurrency: int, songs: int, steps: int, duration: float) -> dict[str, Any]:
    requests = [
        {"caption": f"song {i}", "duration": duration, "inference_steps": steps, "seeds": [i], "version_set": "turbo"}
        for i in range(songs)
    ]
    before = dit_counts(server)
    compute = {model: compute_seconds(server, model) for models in STAGES.values() for model in models}
    latencies: list[float] = []

    def one(req: dict) -> str | None:
        t0 = time.perf_counter()
        error = stream(server.grpc_url, "sampler", req).error
        latencies.append(time.perf_counter() - t0)
        return error

    started = time.perf_counter()
    with ThreadPoolExecutor(concurrency) as pool:
        errors = list(pool.map(one, requests))
    elapsed = time.perf_counter() - started
    if any(errors):
        raise RuntimeError(f"served songs failed: {errors}")
    inferences, executions = (a - b for a, b in zip(dit_counts(server), before, strict=True))
    stages = {
        stage: sum(compute_seconds(server, m) - compute[m] for m in models) for stage, models in STAGES.items()
    }
    return {
        "rate": songs / elapsed * 60.0,
        "rows": inferences / max(executions, 1),
        "steps_per_s": songs * steps / elapsed,
        "dit_steps_per_s": songs * steps / max(stages["dit"], 1e-9),
        "p50": statistics.median(latencies),
        "split": split(stages, elapsed, songs),
        "load": os.getloadavg()[0],
    }


class _Timer:
    """Wall time of the pipeline's module calls, by stage."""

    def __init__(self) -> None:
        self.seconds: dict[str, float] = defaultdict(float)

    def hook(self, module: torch.nn.Module, stage: str) -> None:
        starts: list[float] = []
        module.register_forward_pre_hook(lambda *_: starts.append(time.perf_counter()))
        module.register_forward_hook(lambda *_: self._add(stage, starts))

    def wrap(self, fn: Callable[..., Any], stage: str) -> Callable[..., Any]:
        def timed(*args: Any, **kwargs: Any) -> Any:
            t0 = time.perf_counter()
            try:
                return fn(*args, **kwargs)
            finally:
                self.seconds[stage] += time.perf_counter() - t0

        return timed

    def _add(self, stage: str, starts: list[float]) -> None:
        self.seconds[stage] += time.perf_counter() - starts.pop()


def in_process(preset: Path, songs: int, steps: int, duration: float) -> dict[str, Any]:
    from export.acestep15.checkpoint import load_pipeline

    pipe = load_pipeline(preset)
    pipe.set_progress_bar_config(disable=True)
    timer = _Timer()
    timer.hook(pipe.text_encoder, "encoders")
    timer.hook(pipe.condition_encoder, "encoders")
    timer.hook(pipe.transformer, "dit")
    pipe.vae.decode = timer.wrap(pipe.vae.decode, "decode")
    latencies = []
    started = time.perf_counter()
    for i in range(songs):
        t0 = time.perf_counter()
        pipe(
            prompt=f"song {i}",
            audio_duration=duration,
            num_inference_steps=steps,
            generator=torch.Generator().manual_seed(i),
        )
        latencies.append(time.perf_counter() - t0)
    elapsed = time.perf_counter() - started
    return {
        "rate": songs / elapsed * 60.0,
        "rows": 1.0,
        "steps_per_s": songs * steps / elapsed,
        "dit_steps_per_s": songs * steps / max(timer.seconds["dit"], 1e-9),
        "p50": statistics.median(latencies),
        "split": split({k: timer.seconds[k] for k in STAGES}, elapsed, songs),
        "load": os.getloadavg()[0],
    }


def placed(repo: Path, placement: str, work: Path) -> Path:
    """A copy of ``repo`` whose ``vae_decoder`` runs ``placement`` ("INSTANCESxTHREADS", e.g. "2x1")."""
    try:
        instances, threads = (int(v) for v in placement.lower().split("x"))
    except ValueError:
        raise SystemExit(f"--decoder: {placement!r} is not INSTANCESxTHREADS, e.g. 2x1") from None
    copy = work / f"repository-{instances}x{threads}"
    shutil.copytree(repo, copy, symlinks=True)
    path = copy / "vae_decoder" / "config.pbtxt"
    text = re.sub(r"(instance_group \[ \{ count: )\d+", rf"\g<1>{instances}", path.read_text())
    if instances > 1:  # as the config writer does (export.contracts.CpuServing): no batcher merging the calls
        text = re.sub(r"dynamic_batching \{[^}]*\}\n", "", text)
    text = re.sub(r'^parameters: \{ key: "intra_op_num_threads".*\n', "", text, flags=re.MULTILINE)
    path.write_text(text + f'parameters: {{ key: "intra_op_num_threads" value: {{ string_value: "{threads}" }} }}\n')
    return copy


def decoder_placement(repo: Path) -> str:
    """The exported ``vae_decoder`` placement, "INSTANCESxTHREADS"."""
    text = (repo / "vae_decoder" / "config.pbtxt").read_text()
    instances = re.search(r"instance_group \[ \{ count: (\d+)", text)
    threads = re.search(r'key: "intra_op_num_threads" value: \{ string_value: "(\d+)"', text)
    return f"{instances.group(1) if instances else 1}x{threads.group(1) if threads else 1}"


def set_scheduler(server: TritonServer, enabled: bool) -> None:
    """Reload ``sampler`` with ``step_scheduler`` on or off (repository API)."""
    import tritonclient.http as httpclient

    config = httpclient.InferenceServerClient(server.http_url).get_model_config("sampler")
    config.setdefault("parameters", {})["step_scheduler"] = {"string_value": "true" if enabled else "false"}
    server.load("sampler", config=json.dumps(config))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--steps", type=int, default=8)
    parser.add_argument("--duration", type=float, default=30.0)
    parser.add_argument("--songs", type=int, default=16, help="songs per measurement")
    parser.add_argument("--concurrency", default="1,4,8,16")
    parser.add_argument("--no-thread-per-song", action="store_true", help="skip the pre-scheduler comparison rows")
    parser.add_argument("--decoder", default="", help="more vae_decoder placements for step-scheduler rows, "
                        "INSTANCESxTHREADS,... (e.g. 1x1,1x2,2x1)")
    parser.add_argument("--repository", type=Path, default=DEFAULT_REPOSITORY)
    args = parser.parse_args()
    repo = tiny_repository(args.repository)
    preset = repo.parent / f".{repo.name}-work" / "presets" / "acestep15-tiny-turbo"
    levels = [int(c) for c in args.concurrency.split(",")]
    torch.set_num_threads(2)
    print(f"machine: {machine()}")
    print(f"tiny turbo, {args.steps} steps, {args.duration:.0f} s songs, {args.songs} songs per row")
    exported = decoder_placement(repo)
    print(f"vae_decoder as exported: {exported} (instances x ONNX Runtime threads)")
    rows: list[tuple[str, int, dict[str, Any]]] = [("AceStepPipeline in-process", 1, in_process(
        preset, args.songs, args.steps, args.duration))]
    extra = [p for p in args.decoder.split(",") if p and p != exported]
    with tempfile.TemporaryDirectory(prefix="songs-per-minute-") as work:
        for placement in [exported, *extra]:
            where = repo if placement == exported else placed(repo, placement, Path(work))
            with TritonServer(where, load_models=MODELS) as server:
                modes = [("step scheduler", True)]
                if placement == exported and not args.no_thread_per_song:
                    modes.append(("thread per song", False))
                for name, enabled in modes:
                    label = f"{name}, vae_decoder {placement}"
                    set_scheduler(server, enabled)
                    stream(server.grpc_url, "sampler", {"duration": args.duration, "inference_steps": 2})  # warm-up
                    for concurrency in levels:
                        if concurrency > args.songs:
                            continue
                        result = served(server, concurrency, args.songs, args.steps, args.duration)
                        rows.append((label, concurrency, result))
                        print(f"  measured {label} at {concurrency}", flush=True)
    base = rows[0][2]["rate"]
    print(f"machine after: {machine()}")
    print("| path | concurrency | songs/min | vs baseline | mean dit rows/call | song-steps/s | per s of DiT time "
          "| p50 song s | s/song: encoders | DiT | decode | rest | load (1 min) |")
    print("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    for name, concurrency, r in rows:
        parts = " | ".join(r["split"].split())
        print(f"| {name} | {concurrency} | {r['rate']:.1f} | {r['rate'] / base:.2f}x | {r['rows']:.2f} | "
              f"{r['steps_per_s']:.1f} | {r['dit_steps_per_s']:.0f} | {r['p50']:.2f} | {parts} | {r['load']:.1f} |")


if __name__ == "__main__":
    main()
