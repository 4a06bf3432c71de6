"""Export time per network for the tiny ACE-Step 1.5 preset on this machine: one network at a time (per-network
seconds), then the same export with 2 forked workers (total), side by side in one run.

    .venv/bin/python -m bench.export_time
"""

from __future__ import annotations

import tempfile
import time
from pathlib import Path

from bench.stack import machine
from export.acestep15.checkpoint import load_pipeline, read_dims
from export.acestep15.networks import build_contracts, wrappers
from export.acestep15.presets import build_tiny
from export.acestep15.repository import NETWORKS, TRACE_SIZES
from export.repository import export_networks


def main() -> None:
    print(f"machine: {machine()}")
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        started = time.perf_counter()
        preset = build_tiny(root / "preset")
        pipe, dims = load_pipeline(preset), read_dims(preset)
        build = time.perf_counter() - started
        rows = {}
        for jobs in (1, 2):
            t0 = time.perf_counter()
            rows[jobs] = export_networks(
                contracts=build_contracts(dims),
                factories=wrappers(pipe),
                networks=NETWORKS,
                trace_sizes=TRACE_SIZES,
                repo=root / f"repo{jobs}",
                work=root / "work",
                version=1,
                target="cpu",
                jobs=jobs,
            )
            rows[jobs]["total"] = time.perf_counter() - t0
    print(f"build + load tiny preset: {build:.1f} s")
    print("| network | seconds (1 worker) |")
    print("|---|---:|")
    for name in NETWORKS:
        print(f"| {name} | {rows[1][name]:.1f} |")
    print(f"| total, 1 worker | {rows[1]['total']:.1f} |")
    print(f"| total, 2 workers | {rows[2]['total']:.1f} ({rows[1]['total'] / rows[2]['total']:.2f}x) |")


if __name__ == "__main__":
    main()
