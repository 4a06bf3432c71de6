"""Seconds of audio per second (RTF) for ACE-Step v1, tiny preset on CPU: the Triton sampler (``"family":
"acestep_v1"``; concurrent songs share every ``v1_dit`` step) vs the same runner in-process over the repository's ONNX
files, one song at a time (ONNX Runtime with 1 intra-op thread per network on both sides). Both in one run, side by
side. The recipe is the original pipeline's: 60 Euler steps, APG 15 in the middle half, omega 10, ERG on.

    .venv/bin/python -m bench.v1_rtf [--duration 30] [--steps 60] [--songs 8] [--concurrency 1,8]
    .venv/bin/python -m bench.v1_rtf --delays 0,5000,10000,15000,20000,25000,50000

``--delays`` sweeps ``v1_dit``'s ``max_queue_delay_microseconds`` instead: 8 concurrent 10.5-16.8 s songs (one
216-frame bucket), 8 unguided steps, started 10 ms apart; mean v1_dit batch and wall time per delay, twice each.

The GPU half of the issue (the real 3.5B shapes' DiT step in torch vs TensorRT, a 240 s song end to end against the
upstream README's 27x real time on an A100 at 27 steps) needs a CUDA device and TensorRT; this script says "not
measured" without one.
"""

from __future__ import annotations

import argparse
import json
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from bench.stack import DEFAULT_REPOSITORY, machine, tiny_repository
from model_repository.launcher.server import TritonServer
from tests.model_repository.streaming import stream

V1_MODELS = ["sampler", "v1_text_encoder", "v1_condition_encoder", "v1_dit", "v1_dcae_decoder", "v1_vocoder",
             "v1_dcae_encoder"]
LYRICS = "[verse]\nthe night is young and so are we\n[chorus]\nsing it loud, sing it free"


def _request(i: int, duration: float, steps: int) -> dict:
    return {"family": "acestep_v1", "caption": f"pop, piano, song {i}", "lyrics": LYRICS, "duration": duration,
            "inference_steps": steps, "seeds": [i]}


def in_process(repository: Path, songs: int, duration: float, steps: int) -> tuple[float, float]:
    """(audio seconds, wall seconds) for ``songs`` songs one after another."""
    from model_repository.onnx.inprocess import OrtNetworkCaller
    from model_repository.sampler.registry import SamplerFamilies

    families = SamplerFamilies(repository / "sampler" / "1" / "assets", OrtNetworkCaller(repository, threads=1))
    warm = families.parse(json.dumps(_request(99, 10.0, 2)), has_src_audio=False)
    families.runner(warm).run(warm)
    audio = 0.0
    started = time.perf_counter()
    for i in range(songs):
        req = families.parse(json.dumps(_request(i, duration, steps)), has_src_audio=False)
        out, _, _ = families.runner(req).run(req)
        audio += out.shape[0] * out.shape[-1] / 48_000
    return audio, time.perf_counter() - started


def _v1_dit_counts(server: TritonServer) -> tuple[int, int]:
    stats = server.model_statistics("v1_dit", "1")["model_stats"][0]
    return int(stats["inference_count"]), int(stats["execution_count"])


def served(server: TritonServer, concurrency: int, songs: int, duration: float, steps: int
           ) -> tuple[float, float, float]:
    """(audio seconds, wall seconds, mean v1_dit batch) for ``songs`` songs, ``concurrency`` at a time."""
    before = _v1_dit_counts(server)
    started = time.perf_counter()
    with ThreadPoolExecutor(concurrency) as pool:
        results = list(pool.map(lambda i: stream(server.grpc_url, "sampler", _request(i, duration, steps),
                                                 timeout=1800), range(songs)))
    elapsed = time.perf_counter() - started
    errors = [r.error for r in results if r.error]
    if errors:
        raise RuntimeError(f"served songs failed: {errors[:3]}")
    audio = sum(r.outputs["audio"].shape[0] * r.outputs["audio"].shape[-1] / 48_000 for r in results)
    inferences, executions = (a - b for a, b in zip(_v1_dit_counts(server), before, strict=True))
    return audio, elapsed, inferences / max(executions, 1)


def delay_sweep(server: TritonServer, delays: list[int], repeats: int = 2) -> None:
    import tritonclient.http as httpclient

    config = httpclient.InferenceServerClient(server.http_url).get_model_config("v1_dit")
    print("| max_queue_delay_us | mean v1_dit batch | wall s (8 songs) |")
    print("|---:|---|---|")
    for delay in delays:
        config["dynamic_batching"] = {"max_queue_delay_microseconds": delay}
        server.load("v1_dit", config=json.dumps(config))
        batches, walls = [], []
        for _ in range(repeats):
            requests = [{"family": "acestep_v1", "caption": f"song {i}", "duration": 10.5 + 0.9 * i,
                         "inference_steps": 8, "seeds": [i], "guidance_scale": 1.0} for i in range(8)]

            def one(req: dict) -> str | None:
                time.sleep(0.01 * req["seeds"][0])
                return stream(server.grpc_url, "sampler", req).error

            before = _v1_dit_counts(server)
            started = time.perf_counter()
            with ThreadPoolExecutor(8) as pool:
                errors = [e for e in pool.map(one, requests) if e]
            walls.append(time.perf_counter() - started)
            if errors:
                raise RuntimeError(f"songs failed: {errors[:3]}")
            inferences, executions = (a - b for a, b in zip(_v1_dit_counts(server), before, strict=True))
            batches.append(inferences / max(executions, 1))
        print(f"| {delay} | {', '.join(f'{b:.2f}' for b in batches)} | {', '.join(f'{w:.2f}' for w in walls)} |")


def gpu_note() -> str:
    try:
        import torch

        if torch.cuda.is_available():
            return f"CUDA device {torch.cuda.get_device_name(0)} present: GPU measurements are not scripted here yet"
    except ImportError:
        pass
    return "no CUDA device: the real 3.5B DiT step (torch vs TensorRT) and the 240 s end-to-end song are not measured"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--duration", type=float, default=30.0)
    parser.add_argument("--steps", type=int, default=60)
    parser.add_argument("--songs", type=int, default=8, help="songs per measurement")
    parser.add_argument("--concurrency", default="1,8")
    parser.add_argument("--repository", type=Path, default=DEFAULT_REPOSITORY)
    parser.add_argument("--delays", default=None, help="comma-separated v1_dit queue delays (us) to sweep instead")
    args = parser.parse_args()
    repository = tiny_repository(args.repository)
    print(f"machine: {machine()}")
    if args.delays:
        with TritonServer(repository, load_models=V1_MODELS) as server:
            stream(server.grpc_url, "sampler", _request(99, 12.0, 2))
            delay_sweep(server, [int(d) for d in args.delays.split(",")])
        return
    print(f"tiny ACE-Step v1, {args.songs} songs of {args.duration:g} s, {args.steps} steps (APG 15, ERG, omega 10)")
    rows = []
    audio, wall = in_process(repository, args.songs, args.duration, args.steps)
    rows.append(("in-process, one at a time", 1, audio, wall, None))
    with TritonServer(repository, load_models=V1_MODELS) as server:
        stream(server.grpc_url, "sampler", _request(99, 10.0, 2))
        for concurrency in (int(c) for c in args.concurrency.split(",")):
            audio, wall, batch = served(server, concurrency, args.songs, args.duration, args.steps)
            rows.append(("served (Triton sampler)", concurrency, audio, wall, batch))
    print("| path | concurrent songs | audio s | wall s | audio s per s | mean v1_dit batch |")
    print("|---|---:|---:|---:|---:|---:|")
    for name, concurrency, audio, wall, batch in rows:
        mean = "-" if batch is None else f"{batch:.2f}"
        print(f"| {name} | {concurrency} | {audio:.0f} | {wall:.1f} | {audio / wall:.1f} | {mean} |")
    print(f"GPU: {gpu_note()}")


if __name__ == "__main__":
    main()
