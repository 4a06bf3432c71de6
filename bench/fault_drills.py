"""Fault drills at larger counts (issue 14): jobs submitted / succeeded / failed / lost per drill.

- ``triton``   — the only tritonserver (a toy sampler that sleeps ``--step-s`` per step: the drill is about the
  orchestrator, not the models) SIGKILLed under load, restarted on the same ports after ``--triton-outage-s``;
- ``database`` — a private PostgreSQL (``initdb`` + ``pg_ctl`` in a temp folder; never the machine's own server)
  stopped under load and started again after ``--db-outage-s``; the jobs run on the in-process stage runner.

    .venv/bin/python -m bench.fault_drills [--drill all|triton|database] [--jobs 16] [--triton-outage-s 40]
                                          [--db-outage-s 10] [--json]

Exit status 1 when any job failed or was lost. The drills at small counts are tests
(``tests/orchestrator/test_triton_outage.py``, ``test_database_outage.py``).
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import json
import logging
import sys
import tempfile
from pathlib import Path

from bench.stack import machine
from tests.markers import triton_missing
from tests.orchestrator.drills import (
    DrillResult,
    database_outage_drill,
    postgres_instance,
    postgres_missing,
    triton_outage_drill,
)


async def _run(args: argparse.Namespace) -> list[DrillResult]:
    results = []
    with tempfile.TemporaryDirectory(prefix="tritone-drills-") as folder:
        if args.drill in ("all", "triton"):
            if (why := triton_missing()) is not None:
                print(f"triton drill skipped: {why}", file=sys.stderr)
            else:
                results.append(
                    await triton_outage_drill(
                        Path(folder) / "triton",
                        jobs=args.jobs,
                        outage_s=args.triton_outage_s,
                        step_s=args.step_s,
                        steps=args.steps,
                    )
                )
        if args.drill in ("all", "database"):
            if (why := postgres_missing()) is not None:
                print(f"database drill skipped: {why}", file=sys.stderr)
            else:
                with postgres_instance() as postgres:
                    results.append(
                        await database_outage_drill(
                            Path(folder) / "database", postgres, jobs=args.jobs, outage_s=args.db_outage_s
                        )
                    )
    return results


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--drill", choices=["all", "triton", "database"], default="all")
    parser.add_argument("--jobs", type=int, default=16, help="jobs submitted per drill (16)")
    parser.add_argument("--triton-outage-s", type=float, default=40.0, help="seconds the Triton server stays down")
    parser.add_argument("--db-outage-s", type=float, default=10.0, help="seconds PostgreSQL stays down")
    parser.add_argument("--step-s", type=float, default=0.2, help="toy sampler: seconds per step (0.2)")
    parser.add_argument("--steps", type=int, default=10, help="toy sampler: steps per job (10)")
    parser.add_argument("--json", action="store_true", help="print one JSON object per drill")
    args = parser.parse_args()
    logging.basicConfig(level=logging.ERROR)
    print(f"machine: {machine()}", file=sys.stderr)
    results = asyncio.run(_run(args))
    for result in results:
        print(json.dumps(dataclasses.asdict(result)) if args.json else result.line())
        for error in result.errors[:5]:
            print(f"  error: {error}")
    return 1 if any(r.failed or r.lost for r in results) else 0


if __name__ == "__main__":
    sys.exit(main())
