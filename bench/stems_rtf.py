"""Seconds of audio separated per second, tiny HT-Demucs on CPU: the Triton ``separator`` (its segments batched in
the ``stems`` network) with 1 and 4 concurrent songs vs the reference ``demucs_infer.apply.apply_model`` in-process,
one song at a time, on the same tiny weights. One run, side by side; the mean ``stems`` batch (rows per execution,
from Triton's statistics) per served phase.

    .venv/bin/python -m bench.stems_rtf [--seconds 30] [--songs 4] [--repository PATH]

Both sides do the same work per song: 48 kHz in, resample to 44.1 kHz, 4 stems with overlap 0.25 and no random
shifts, resample back. The served side runs ONNX Runtime with 1 intra-op thread in one ``stems`` instance; the
in-process side is torch with ``--torch-threads`` (default 1, the same; on a machine shared with other work more
threads oversubscribe the cores and made it ~10x slower here). The repository is exported from the tiny presets
with ``tritone export --stems-checkpoint`` (stems models only) unless ``--repository`` names one that has them.

The GPU half (the real ``htdemucs`` shapes, TensorRT vs torch, a 240 s song) needs a CUDA device and TensorRT and is
not measured here.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import torch
import tritonclient.http as httpclient

from bench.stack import machine
from export.stems.checkpoint import load
from export.stems.presets import SIGNATURES, build_tiny
from model_repository.acestep_v1.resample import resample
from model_repository.launcher.server import TritonServer
from tests.model_repository.stems.support import song
from tests.model_repository.stems.test_served import separate

ROOT = Path(__file__).resolve().parents[1]
RATE = 48_000


def export_stems(work: Path) -> tuple[Path, Path]:
    """(repository, preset folder): the tiny stems presets and a repository holding only the stems models."""
    presets = work / "presets" / "stems-tiny"
    paths = [build_tiny(presets, sources=n) for n in sorted(SIGNATURES)]
    repo = work / "repository"
    cmd = [sys.executable, "-m", "orchestrator.cli", "export", "--out", str(repo), "--work", str(work), "--skip-llm"]
    for path in paths:
        cmd += ["--stems-checkpoint", str(path)]
    subprocess.run(cmd, check=True, cwd=ROOT, stdout=subprocess.DEVNULL)
    return repo, presets


def in_process(preset: Path, songs: list[np.ndarray]) -> float:
    """Wall seconds for ``apply_model`` over ``songs``, one after another (48 kHz -> 44.1 kHz -> 48 kHz)."""
    from demucs_infer.apply import apply_model

    model = load(preset).reference()
    started = time.perf_counter()
    with torch.no_grad():
        for audio in songs:
            mix = resample(torch.from_numpy(audio), RATE, 44100)[None]
            out = apply_model(model, mix, shifts=0, split=True, overlap=0.25)[0]
            resample(out, 44100, RATE)
    return time.perf_counter() - started


def _counts(url: str) -> tuple[int, int]:
    stats = httpclient.InferenceServerClient(url).get_inference_statistics("stems")["model_stats"][0]
    return int(stats["inference_count"]), int(stats["execution_count"])


def served(server: TritonServer, songs: list[np.ndarray], concurrency: int) -> tuple[float, float]:
    """(wall seconds, mean stems batch) for ``songs`` with ``concurrency`` in flight."""
    rows0, executions0 = _counts(server.http_url)
    started = time.perf_counter()
    with ThreadPoolExecutor(concurrency) as pool:
        results = list(pool.map(lambda a: separate(server.grpc_url, {"stems": 4}, a, timeout=1800), songs))
    wall = time.perf_counter() - started
    errors = [error for _, _, error in results if error]
    if errors:
        raise RuntimeError(f"separator failed: {errors[0]}")
    rows, executions = (a - b for a, b in zip(_counts(server.http_url), (rows0, executions0), strict=True))
    return wall, rows / max(executions, 1)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seconds", type=float, default=30.0, help="length of each song")
    parser.add_argument("--songs", type=int, default=4, help="songs per phase (the concurrent phase runs all at once)")
    parser.add_argument("--repository", type=Path, default=None, help="a repository with stems + separator")
    parser.add_argument("--torch-threads", type=int, default=1,
                        help="torch intra-op threads in-process (1: as ONNX Runtime in the served stems model)")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.torch_threads)
    print(f"machine: {machine()}", flush=True)
    with tempfile.TemporaryDirectory(prefix="stems-bench-") as tmp:
        if args.repository is None:
            repo, presets = export_stems(Path(tmp))
        else:
            repo = args.repository
            presets = repo.parent / f".{repo.name}-work" / "presets" / "stems-tiny"
        preset = next(presets.glob(f"{SIGNATURES[4]}-*.th"))
        songs = [song(args.seconds, rate=RATE, seed=i) for i in range(args.songs)]
        audio = args.seconds * len(songs)
        results: dict[str, dict[str, float]] = {}
        log = Path(tmp) / "tritonserver.log"
        with TritonServer(repo, log_path=log, load_models=["separator", "stems"]) as server:
            separate(server.grpc_url, {"stems": 4}, song(2.0, rate=RATE, seed=99))  # warm-up
            for concurrency in (1, len(songs)):
                wall, batch = served(server, songs, concurrency)
                results[f"served x{concurrency}"] = {"audio_s_per_s": audio / wall, "wall_s": wall, "mean_batch": batch}
                print(f"served, {concurrency} concurrent: {audio / wall:.2f} audio s/s ({wall:.1f} s), "
                      f"mean stems batch {batch:.2f}", flush=True)
        in_process(preset, [song(2.0, rate=RATE, seed=99)])  # warm-up
        wall = in_process(preset, songs)
        results["apply_model in-process x1"] = {"audio_s_per_s": audio / wall, "wall_s": wall}
        print(f"apply_model in-process, one at a time: {audio / wall:.2f} audio s/s ({wall:.1f} s)", flush=True)
    print(json.dumps({"machine": machine(), "songs": len(songs), "seconds": args.seconds, "results": results}))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
