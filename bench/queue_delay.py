"""Choose ``dit``'s ``max_queue_delay_microseconds`` by measurement: 8 concurrent tiny songs (one length bucket, started
together, so they drift to different steps) for each delay; mean dit batch and songs per minute, side by side.

    .venv/bin/python -m bench.queue_delay [--delays 0,1000,2000,5000,10000,20000]
"""

from __future__ import annotations

import argparse
import time
from concurrent.futures import ThreadPoolExecutor

from bench.stack import dit_counts, machine, reload_dit, tiny_repository
from model_repository.server import TritonServer
from tests.model_repository.streaming import stream


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--delays", default="0,1000,2000,5000,10000,20000")
    parser.add_argument("--songs", type=int, default=8)
    parser.add_argument("--steps", type=int, default=8)
    args = parser.parse_args()
    repo = tiny_repository()
    print(f"machine: {machine()}")
    print(f"{args.songs} concurrent songs, {args.steps} steps, 12-18 s (one 500-frame bucket)")
    print("delay_us  mean_dit_batch  songs/min  p50_song_s")
    with TritonServer(repo, load_models=["sampler", "text_encoder", "condition_encoder", "dit", "vae_decoder"]) as srv:
        stream(srv.grpc_url, "sampler", {"duration": 12.0, "inference_steps": 2})
        for delay in (int(d) for d in args.delays.split(",")):
            reload_dit(srv, dynamic_batching={"max_queue_delay_microseconds": delay})
            requests = [
                {"duration": 12.0 + 0.75 * i, "inference_steps": args.steps, "seeds": [i]} for i in range(args.songs)
            ]
            before = dit_counts(srv)

            def one(req: dict) -> float:
                t0 = time.perf_counter()
                result = stream(srv.grpc_url, "sampler", req)
                if result.error:
                    raise RuntimeError(result.error)
                return time.perf_counter() - t0

            started = time.perf_counter()
            with ThreadPoolExecutor(args.songs) as pool:
                latencies = sorted(pool.map(one, requests))
            elapsed = time.perf_counter() - started
            inferences, executions = (a - b for a, b in zip(dit_counts(srv), before, strict=True))
            print(
                f"{delay:8d}  {inferences / executions:14.2f}  {args.songs / elapsed * 60:9.1f}  "
                f"{latencies[len(latencies) // 2]:10.2f}"
            )


if __name__ == "__main__":
    main()
