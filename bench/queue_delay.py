"""Choose ``dit``'s ``max_queue_delay_microseconds`` by measurement: 8 concurrent tiny songs (one length bucket,
started together) for each delay; mean dit batch (rows per execution) and songs per minute, side by side, for the
sampler's step scheduler (its calls already hold every song's row; the window can only add waiting) and, unless
``--scheduler-only``, for the per-song threads that rely on the window (``step_scheduler: false``).

    .venv/bin/python -m bench.queue_delay [--delays 0,1000,2000,5000,10000,20000] [--scheduler-only]
"""

from __future__ import annotations

import argparse
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from bench.songs_per_minute import set_scheduler
from bench.stack import DEFAULT_REPOSITORY, dit_counts, machine, reload_dit, tiny_repository
from model_repository.launcher.server import TritonServer
from tests.model_repository.streaming import stream


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--delays", default="0,1000,2000,5000,10000,20000")
    parser.add_argument("--songs", type=int, default=8)
    parser.add_argument("--steps", type=int, default=8)
    parser.add_argument("--scheduler-only", action="store_true")
    parser.add_argument("--repository", type=Path, default=DEFAULT_REPOSITORY)
    args = parser.parse_args()
    repo = tiny_repository(args.repository)
    print(f"machine: {machine()}")
    print(f"{args.songs} concurrent songs, {args.steps} steps, 12-18 s (one 500-frame bucket)")
    print("sampler          delay_us  mean_dit_batch  songs/min  p50_song_s")
    modes = [("step scheduler", True)] + ([] if args.scheduler_only else [("thread per song", False)])
    with TritonServer(repo, load_models=["sampler", "text_encoder", "condition_encoder", "dit", "vae_decoder"]) as srv:
        for mode, enabled in modes:
            set_scheduler(srv, enabled)
            stream(srv.grpc_url, "sampler", {"duration": 12.0, "inference_steps": 2})
            for delay in (int(d) for d in args.delays.split(",")):
                sweep_row(srv, mode, delay, args.songs, args.steps)


def sweep_row(srv: TritonServer, mode: str, delay: int, songs: int, steps: int) -> None:
    reload_dit(srv, dynamic_batching={"max_queue_delay_microseconds": delay})
    requests = [{"duration": 12.0 + 0.75 * i, "inference_steps": steps, "seeds": [i]} for i in range(songs)]
    before = dit_counts(srv)

    def one(req: dict) -> float:
        t0 = time.perf_counter()
        result = stream(srv.grpc_url, "sampler", req)
        if result.error:
            raise RuntimeError(result.error)
        return time.perf_counter() - t0

    started = time.perf_counter()
    with ThreadPoolExecutor(songs) as pool:
        latencies = sorted(pool.map(one, requests))
    elapsed = time.perf_counter() - started
    inferences, executions = (a - b for a, b in zip(dit_counts(srv), before, strict=True))
    print(
        f"{mode:15s}  {delay:8d}  {inferences / executions:14.2f}  {songs / elapsed * 60:9.1f}  "
        f"{latencies[len(latencies) // 2]:10.2f}",
        flush=True,
    )

if __name__ == "__main__":
    main()
