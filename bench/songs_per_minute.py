"""Songs per minute at 1, 4 and 8 concurrent tiny songs on CPU: the Triton sampler (songs share every DiT step) vs
``AceStepPipeline`` called in-process one request at a time (what the upstream ACE-Step API server does: one worker,
no batching across requests). Both sides run in this one process run, side by side, so the ratio is what counts.

    .venv/bin/python -m bench.songs_per_minute [--steps 8] [--duration 30]
"""

from __future__ import annotations

import argparse
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import torch

from bench.stack import DEFAULT_REPOSITORY, dit_counts, machine, tiny_repository
from model_repository.server import TritonServer
from tests.model_repository.streaming import stream


def served(server: TritonServer, concurrency: int, songs: int, steps: int, duration: float) -> tuple[float, float]:
    requests = [
        {"caption": f"song {i}", "duration": duration, "inference_steps": steps, "seeds": [i], "version_set": "turbo"}
        for i in range(songs)
    ]
    before = dit_counts(server)
    started = time.perf_counter()
    with ThreadPoolExecutor(concurrency) as pool:
        errors = [r.error for r in pool.map(lambda req: stream(server.grpc_url, "sampler", req), requests)]
    elapsed = time.perf_counter() - started
    if any(errors):
        raise RuntimeError(f"served songs failed: {errors}")
    inferences, executions = (a - b for a, b in zip(dit_counts(server), before, strict=True))
    return songs / elapsed * 60.0, inferences / max(executions, 1)


def in_process(preset: Path, songs: int, steps: int, duration: float) -> float:
    from export.acestep15.checkpoint import load_pipeline

    pipe = load_pipeline(preset)
    pipe.set_progress_bar_config(disable=True)
    started = time.perf_counter()
    for i in range(songs):
        pipe(
            prompt=f"song {i}",
            audio_duration=duration,
            num_inference_steps=steps,
            generator=torch.Generator().manual_seed(i),
        )
    return songs / (time.perf_counter() - started) * 60.0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--steps", type=int, default=8)
    parser.add_argument("--duration", type=float, default=30.0)
    parser.add_argument("--songs", type=int, default=16, help="songs per measurement")
    parser.add_argument("--repository", type=Path, default=DEFAULT_REPOSITORY)
    args = parser.parse_args()
    repo = tiny_repository(args.repository)
    preset = repo.parent / f".{repo.name}-work" / "presets" / "acestep15-tiny-turbo"
    torch.set_num_threads(2)
    print(f"machine: {machine()}")
    print(f"tiny turbo, {args.steps} steps, {args.duration:.0f} s songs, {args.songs} songs per row")
    baseline = in_process(preset, args.songs, args.steps, args.duration)
    print(f"AceStepPipeline in-process, one at a time: {baseline:7.1f} songs/min")
    with TritonServer(
        repo, load_models=["sampler", "text_encoder", "condition_encoder", "dit", "vae_decoder"]
    ) as server:
        stream(server.grpc_url, "sampler", {"duration": args.duration, "inference_steps": 2})  # warm-up
        print("concurrency  served songs/min  mean dit batch  ratio vs in-process")
        for concurrency in (1, 4, 8):
            rate, batch = served(server, concurrency, args.songs, args.steps, args.duration)
            print(f"{concurrency:11d}  {rate:16.1f}  {batch:14.2f}  {rate / baseline:19.2f}x")


if __name__ == "__main__":
    main()
