"""Load tests with Triton's own perf_analyzer against the tiny repository: ``dit`` (one DiT step per request, one
length bucket) with dynamic batching on and off, and ``sampler`` (whole songs, gRPC streaming). Prints throughput and
p50/p95/p99 latency per concurrency, and the exact perf_analyzer command lines.

    make perf-analyzer && .venv/bin/python -m bench.perf_analyzer.run [--out build/perf]
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import subprocess
from pathlib import Path

from bench.stack import ROOT, machine, reload_dit, tiny_repository
from export.acestep15.networks import build_contracts
from model_repository.launcher.server import TritonServer

PERF = ROOT / ".tools" / "perf_analyzer" / "bin" / "perf_analyzer"
CUDART = ROOT / ".tools" / "cudart" / "nvidia" / "cuda_runtime" / "lib"
HERE = Path(__file__).resolve().parent


def dit_input_data(repo: Path, path: Path, frames: int = 500, encoder: int = 128) -> Path:
    """perf_analyzer input JSON for ``dit``: one row per request at one bucket, masks with a valid prefix."""
    from export.acestep15.checkpoint import PipelineDims

    dims = json.loads((repo / "sampler" / "1" / "assets" / "pipeline.json").read_text())["dims"]
    contract = build_contracts(PipelineDims(**dims, is_turbo=True))["dit"]
    rows = []
    for seed in range(4):
        sample = contract.sample_inputs({"batch": 1, "frames": frames, "encoder": encoder}, seed=seed)
        rows.append({k: {"content": v[0].reshape(-1).tolist(), "shape": list(v.shape[1:])} for k, v in sample.items()})
    path.write_text(json.dumps({"data": rows}))
    return path


def perf(args: list[str], csv_path: Path) -> list[dict[str, str]]:
    env = dict(os.environ, LD_LIBRARY_PATH=str(CUDART))
    cmd = [str(PERF), *args, "-f", str(csv_path)]
    print("$ " + " ".join(cmd[0:1] + [a if " " not in a else repr(a) for a in cmd[1:]]), flush=True)
    subprocess.run(cmd, check=True, env=env, stdout=subprocess.DEVNULL)
    with csv_path.open() as handle:
        return list(csv.DictReader(handle))


def report(title: str, rows: list[dict[str, str]]) -> None:
    print(f"\n{title}")
    print("| concurrency | infer/s | p50 ms | p95 ms | p99 ms |")
    print("|---:|---:|---:|---:|---:|")
    for row in sorted(rows, key=lambda r: int(r["Concurrency"])):
        ms = {k: float(row[f"p{k} latency"]) / 1000 for k in (50, 95, 99)}
        print(
            f"| {row['Concurrency']} | {float(row['Inferences/Second']):.1f} "
            f"| {ms[50]:.1f} | {ms[95]:.1f} | {ms[99]:.1f} |"
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, default=ROOT / "build" / "perf")
    parser.add_argument("--interval-ms", type=int, default=4000)
    args = parser.parse_args()
    if not PERF.exists():
        raise SystemExit("perf_analyzer is not installed: run `make perf-analyzer` first")
    args.out.mkdir(parents=True, exist_ok=True)
    repo = tiny_repository()
    data = dit_input_data(repo, args.out / "dit_input.json")
    print(f"machine: {machine()}")
    with TritonServer(repo, load_models=["sampler", "text_encoder", "condition_encoder", "dit", "vae_decoder"]) as srv:
        # A shared 2-core machine is noisy: accept +-50 % between windows rather than fail to measure.
        common = ["-u", srv.grpc_url, "-i", "grpc", "-s", "50", "-r", "6"]
        timed = ["--measurement-interval", str(args.interval_ms)]
        dit_args = ["-m", "dit", "--input-data", str(data), "--concurrency-range", "1:8:1", *common, *timed]
        on = perf(dit_args, args.out / "dit_batching_on.csv")
        reload_dit(srv, dynamic_batching=None)
        off = perf(dit_args, args.out / "dit_batching_off.csv")
        reload_dit(srv, dynamic_batching={"max_queue_delay_microseconds": 10_000})
        sampler = perf(
            [
                "-m",
                "sampler",
                "--streaming",
                "--input-data",
                str(HERE / "sampler_input.json"),
                "--concurrency-range",
                "1:8:3",
                "--measurement-mode",
                "count_windows",
                "--measurement-request-count",
                "8",
                *common,
            ],
            args.out / "sampler.csv",
        )
    report("dit, dynamic batching on (max_queue_delay 10 ms)", on)
    report("dit, dynamic batching off", off)
    report("sampler (whole 12-18 s songs, 8 steps, gRPC streaming)", sampler)


if __name__ == "__main__":
    main()
