"""Benchmark of the LLM stage through a real tritonserver: time to first lyric line and tokens/s of ``lyricist``,
codes/s of ``lm`` (thinking), at several concurrency levels, with the engine's prefill ``serial`` (one prompt per
forward pass, the engine before batched prefill) and ``batched`` (the prompts waiting to join share one pass), side
by side in one run.

Usage (tiny presets on this machine's CPU; builds the repository when --repo is not given)::

    .venv/bin/python -m bench.llm_bench --concurrency 1 8 --requests 8 --out out/llm-bench.json

``--prefill serial batched`` (the default) measures both modes, one server each (the repository's models are linked
into a scratch repository whose ``config.pbtxt`` sets the ``prefill`` parameter); ``--rounds 2`` alternates them
(serial, batched, batched, serial) so a change in the machine's load does not favour one mode.

With a real model (e.g. a GPU repository written by ``tritone export --target gpu --lyricist-dir ... --lm-dir ...``)::

    .venv/bin/python -m bench.llm_bench --repo /models --max-new-tokens 2048 --lm-duration 30

Per request: ``ttft`` (first streamed event), ``ttfl`` (first complete lyric line visible in ``lyrics_so_far``),
total latency and completion tokens. Per level: their medians, aggregate tokens/s (all tokens / wall time) and the
mean number of rows that shared the model's decode steps (the model's own counter). The load average is recorded
around each mode (the machine may be shared). At the end a markdown table compares the modes.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import platform
import queue
import shutil
import statistics
import sys
import tempfile
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

logger = logging.getLogger(__name__)

THEMES = (
    "周末骑单车去看海 风把白衬衫吹起来",
    "Weekend cycling to the sea, wind in the open shirt",
    "雨夜的霓虹和一个人的地铁",
    "A lighthouse keeper writes letters to the moon",
)


@dataclass
class RequestTiming:
    sent: float
    first_event: float | None = None
    first_line: float | None = None
    done: float | None = None
    tokens: int = 0
    rows_mean: float = 0.0
    prefill_rows: int = 0
    error: str | None = None


PREFILL_MODES = ("serial", "batched")


@dataclass
class LevelResult:
    model: str
    concurrency: int
    requests: int
    wall_s: float
    errors: int
    ttft_median_s: float
    ttfl_median_s: float | None
    latency_median_s: float
    tokens_total: int
    tokens_per_s: float  # aggregate: all completion tokens / wall time
    tokens_per_s_per_request: float  # median of each request's tokens / its latency
    batch_rows_mean: float
    prefill_rows_mean: float = 0.0  # prompt rows that shared the prefill pass of a request's (last) generation
    prefill: str = ""
    round: int = 0
    extra: dict[str, Any] = field(default_factory=dict)


def _first_lyric_line(lyrics: str) -> bool:
    """True once the partial lyrics hold a complete sung line (not a [tag])."""
    lines = lyrics.split("\n")[:-1]  # the last piece may still be growing
    return any(line.strip() and not line.strip().startswith("[") for line in lines)


def run_level(url: str, model: str, payloads: list[dict[str, Any]], concurrency: int) -> LevelResult:
    import tritonclient.grpc as grpcclient

    client = grpcclient.InferenceServerClient(url)
    events: queue.Queue[tuple[float, Any, Any]] = queue.Queue()
    client.start_stream(callback=lambda result, error: events.put((time.perf_counter(), result, error)))
    timings: dict[str, RequestTiming] = {}
    pending = list(enumerate(payloads))
    in_flight: list[str] = []

    def send() -> None:
        i, payload = pending.pop(0)
        tensor = grpcclient.InferInput("request", [1], "BYTES")
        tensor.set_data_from_numpy(np.array([json.dumps(payload).encode()], dtype=np.object_))
        rid = str(i)
        timings[rid] = RequestTiming(sent=time.perf_counter())
        in_flight.append(rid)
        client.async_stream_infer(model, [tensor], request_id=rid, enable_empty_final_response=True)

    started = time.perf_counter()
    try:
        while pending and len(in_flight) < concurrency:
            send()
        while in_flight:
            now, result, error = events.get(timeout=600)
            if error is not None:
                rid = in_flight[0]  # tritonclient does not say which request failed
                timings[rid].error, timings[rid].done = error.message(), now
                in_flight.remove(rid)
            else:
                response = result.get_response()
                rid = response.id
                t = timings[rid]
                data = result.as_numpy("event")
                if data is not None:
                    event = json.loads(data[0])
                    t.first_event = t.first_event or now
                    if t.first_line is None and _first_lyric_line(event.get("lyrics_so_far", "")):
                        t.first_line = now
                    if event["type"] in ("plan", "result"):
                        usage = event["usage"]
                        t.tokens = int(usage.get("completion_tokens", 0))
                        t.rows_mean = float(usage.get("batch_rows_mean") or _phase_rows(usage))
                        t.prefill_rows = int(usage.get("prefill_rows") or _phase_rows(usage, "prefill_rows"))
                if response.parameters["triton_final_response"].bool_param:
                    t.done = now
                    in_flight.remove(rid)
            while pending and len(in_flight) < concurrency:
                send()
    finally:
        client.stop_stream()
        client.close()
    wall = time.perf_counter() - started
    ok = [t for t in timings.values() if t.error is None and t.done is not None]
    if not ok:
        raise RuntimeError(f"{model}: every request failed: {[t.error for t in timings.values()][:3]}")
    tokens = sum(t.tokens for t in ok)
    lines = [t.first_line - t.sent for t in ok if t.first_line is not None]
    return LevelResult(
        model=model,
        concurrency=concurrency,
        requests=len(payloads),
        wall_s=round(wall, 3),
        errors=len(timings) - len(ok),
        ttft_median_s=round(statistics.median((t.first_event or t.done) - t.sent for t in ok), 4),  # type: ignore[operator]
        ttfl_median_s=round(statistics.median(lines), 4) if lines else None,
        latency_median_s=round(statistics.median(t.done - t.sent for t in ok), 4),  # type: ignore[operator]
        tokens_total=tokens,
        tokens_per_s=round(tokens / wall, 1),
        tokens_per_s_per_request=round(statistics.median(t.tokens / (t.done - t.sent) for t in ok), 1),  # type: ignore[operator]
        batch_rows_mean=round(statistics.mean(t.rows_mean for t in ok), 2),
        prefill_rows_mean=round(statistics.mean(t.prefill_rows for t in ok), 2),
    )


def _phase_rows(usage: dict[str, Any], key: str = "batch_rows_mean") -> float:
    phases = usage.get("phases") or {}
    codes = phases.get("codes") or phases.get("metadata") or {}
    return float(codes.get(key, 0.0))


def prefill_view(repo: Path, models: list[str], mode: str, dest: Path) -> Path:
    """A repository at ``dest`` serving ``models`` of ``repo`` with the config parameter ``prefill`` = ``mode``: the
    version folders are hard-linked (copied across file systems), ``config.pbtxt`` gets one more parameter entry."""
    if mode not in PREFILL_MODES:
        raise ValueError(f"prefill mode {mode!r}; allowed: {', '.join(PREFILL_MODES)}")
    for name in models:
        source = repo / name
        config = source / "config.pbtxt"
        if not config.is_file():
            raise FileNotFoundError(f"{config} is missing: is {repo} a repository with the {name!r} model?")
        target = dest / name
        for child in source.iterdir():
            if child.is_dir():
                shutil.copytree(child, target / child.name, copy_function=_link_or_copy, dirs_exist_ok=True)
        text = config.read_text()
        text += f'\nparameters {{ key: "prefill" value {{ string_value: "{mode}" }} }}\n'
        (target / "config.pbtxt").write_text(text)
    return dest


def _link_or_copy(src: str, dst: str) -> None:
    try:
        os.link(src, dst)
    except OSError:
        shutil.copy2(src, dst)


def run_mode(
    repo: Path, models: list[str], args: argparse.Namespace, scratch: Path, mode: str, rnd: int
) -> list[LevelResult]:
    from model_repository.launcher.server import TritonServer

    view = prefill_view(repo, models, mode, scratch / f"repo-{mode}-{rnd}")
    results: list[LevelResult] = []
    load_before = _loadavg()
    with TritonServer(view, load_models=models, log_path=scratch / f"triton-{mode}-{rnd}.log") as server:
        # Warm-up: first requests pay for lazy initialisation (grammar tokenizer, allocator).
        run_level(server.grpc_url, "lyricist", [{"theme": "warm up", "max_new_tokens": 200}], 1)
        for c in args.concurrency:
            payloads = [
                {"theme": THEMES[i % len(THEMES)], "seed": i, "max_new_tokens": args.max_new_tokens}
                for i in range(args.requests)
            ]
            results.append(run_level(server.grpc_url, "lyricist", payloads, c))
        if not args.skip_lm:
            for c in args.concurrency:
                payloads = [
                    {"mode": "thinking", "caption": "pop", "bpm": 100, "key_scale": "C major",
                     "time_signature": 4, "duration": args.lm_duration, "seed": i}
                    for i in range(args.requests)
                ]  # fmt: skip
                results.append(run_level(server.grpc_url, "lm", payloads, c))
    load = {"before": load_before, "after": _loadavg()}
    for r in results:
        r.prefill, r.round = mode, rnd
        r.extra["loadavg"] = load
        print(json.dumps(asdict(r), ensure_ascii=False), flush=True)
    return results


def markdown_table(results: list[LevelResult]) -> str:
    """One row per model x concurrency x prefill mode (medians over rounds), serial and batched next to each other."""
    rows = [
        "| model | concurrency | prefill | rounds | ttft median | ttfl median | latency median | tokens/s aggregate "
        "| tokens/s per request | rows per step | rows per prefill | load avg (1 min) |",
        "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    keys = sorted({(r.model, r.concurrency) for r in results}, key=lambda k: (k[0] != "lyricist", k[0], k[1]))
    for model, c in keys:
        for mode in PREFILL_MODES:
            runs = [r for r in results if (r.model, r.concurrency, r.prefill) == (model, c, mode)]
            if not runs:
                continue
            ttfl = [r.ttfl_median_s for r in runs if r.ttfl_median_s is not None]
            loads = [v for r in runs for v in (r.extra["loadavg"]["before"], r.extra["loadavg"]["after"])]
            rows.append(
                f"| {model} | {c} | {mode} | {len(runs)} | {_ms(statistics.median(r.ttft_median_s for r in runs))} "
                f"| {_ms(statistics.median(ttfl)) if ttfl else '–'} "
                f"| {statistics.median(r.latency_median_s for r in runs):.2f} s "
                f"| {statistics.median(r.tokens_per_s for r in runs):.0f} "
                f"| {statistics.median(r.tokens_per_s_per_request for r in runs):.0f} "
                f"| {statistics.median(r.batch_rows_mean for r in runs):.1f} "
                f"| {statistics.median(r.prefill_rows_mean for r in runs):.1f} | {min(loads):.1f}–{max(loads):.1f} |"
            )
    return "\n".join(rows)


def _ms(seconds: float) -> str:
    return f"{seconds * 1000:.0f} ms"


def _loadavg() -> float:
    return round(os.getloadavg()[0], 2) if hasattr(os, "getloadavg") else -1.0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repo", type=Path, default=None, help="model repository (default: build the tiny presets)")
    parser.add_argument("--concurrency", type=int, nargs="+", default=[1, 8])
    parser.add_argument("--requests", type=int, default=8, help="requests per concurrency level")
    parser.add_argument("--max-new-tokens", type=int, default=300, help="lyricist plan budget per request")
    parser.add_argument("--lm-duration", type=int, default=20, help="seconds of audio per lm thinking request")
    parser.add_argument("--skip-lm", action="store_true")
    parser.add_argument(
        "--prefill", nargs="+", choices=PREFILL_MODES, default=list(PREFILL_MODES), help="engine prefill modes"
    )
    parser.add_argument("--rounds", type=int, default=1, help="repeat the modes, alternating their order")
    parser.add_argument("--out", type=Path, default=None, help="write the results as JSON here")
    args = parser.parse_args(argv)
    if args.rounds < 1:
        parser.error(f"--rounds {args.rounds}: give at least 1")
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")

    with tempfile.TemporaryDirectory(prefix="llm-bench-") as scratch_name:
        scratch = Path(scratch_name)
        repo = args.repo
        if repo is None:
            from export.llm import add_llm_models

            repo = scratch / "repo"
            add_llm_models(repo, preset="tiny")
        models = ["lyricist"] + ([] if args.skip_lm else ["lm"])
        results: list[LevelResult] = []
        for rnd in range(args.rounds):
            modes = list(args.prefill) if rnd % 2 == 0 else list(reversed(args.prefill))
            for mode in modes:
                results.extend(run_mode(repo, models, args, scratch, mode, rnd))
    table = markdown_table(results)
    print(table, flush=True)
    report = {
        "machine": {"platform": platform.platform(), "python": sys.version.split()[0], "cpus": _cpu_count()},
        "repo": str(args.repo or "tiny presets (built)"),
        "results": [asdict(r) for r in results],
        "table": table,
    }
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(report, indent=2, ensure_ascii=False))
    return 0


def _cpu_count() -> int:
    import os

    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 0)


if __name__ == "__main__":
    sys.exit(main())
