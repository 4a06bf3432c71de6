"""Added time per song for lyric timing (``align_lyrics``), side by side with the same song without it.

In-process ONNX Runtime (the served networks' files, one call at a time), ACE-Step 1.5 tiny turbo, 8 steps; the
added time is the ``dit_align`` call plus the sampler's numpy (DTW etc.), each timed directly (the wall-time
difference of the two songs is reported too, but on a shared VM the decode's noise is larger than the timing)::

    .venv/bin/python -m bench.lyric_alignment --repository build/repository [--duration 30 --runs 3]
"""

from __future__ import annotations

import argparse
import json
import logging
import statistics
import time
from pathlib import Path
from typing import Any

from model_repository.acestep15 import alignment, lyric_timing
from model_repository.acestep15.runner import SongRunner
from model_repository.onnx.inprocess import OrtNetworkCaller
from model_repository.sampler.request import parse_request

logger = logging.getLogger(__name__)

LYRICS = "\n".join(
    ["[Verse]"] + [f"line {i} of the verse where the singer holds a note" for i in range(8)]
    + ["", "[Chorus]"] + [f"chorus line {i} we sing it all together" for i in range(8)]
)


class TimedCaller:
    """The in-process caller, with the seconds spent per model."""

    def __init__(self, inner: OrtNetworkCaller) -> None:
        self.inner = inner
        self.seconds: dict[str, float] = {}

    def __call__(self, model: str, version: str, inputs: Any, outputs: list[str]) -> Any:
        started = time.perf_counter()
        try:
            return self.inner(model, version, inputs, outputs)
        finally:
            self.seconds[model] = self.seconds.get(model, 0.0) + time.perf_counter() - started


def run(repository: Path, duration: float, runs: int) -> dict[str, Any]:
    numpy_s: list[float] = []
    plain_align = alignment.align

    def timed_align(*args: Any, **kwargs: Any) -> dict[str, Any]:
        started = time.perf_counter()
        try:
            return plain_align(*args, **kwargs)
        finally:
            numpy_s.append(time.perf_counter() - started)

    lyric_timing.alignment.align = timed_align  # type: ignore[assignment]
    caller = TimedCaller(OrtNetworkCaller(repository))
    runner = SongRunner(repository / "sampler" / "1" / "assets", caller)
    rows: dict[bool, list[tuple[float, float]]] = {False: [], True: []}
    for i in range(runs + 1):  # the first round warms the sessions up and is not counted
        for align in (False, True):
            body = {"caption": "pop", "lyrics": LYRICS, "duration": duration, "inference_steps": 8, "seeds": [i],
                    "version_set": "turbo", "align_lyrics": align}
            req = parse_request(json.dumps(body), codebook_size=runner.assets.codebook_size, has_src_audio=False)
            caller.seconds.clear()
            started = time.perf_counter()
            runner.run(req)
            if i:
                rows[align].append((time.perf_counter() - started, caller.seconds.get("dit_align", 0.0)))
    plain = statistics.median(t for t, _ in rows[False])
    timed = statistics.median(t for t, _ in rows[True])
    network = statistics.median(n for _, n in rows[True])
    lyric_timing.alignment.align = plain_align  # type: ignore[assignment]
    math_s = statistics.median(numpy_s[1:])
    return {
        "duration_s": duration,
        "lyric_tokens": len(LYRICS.encode()),
        "song_s": round(plain, 3),
        "song_with_timing_s": round(timed, 3),
        "wall_difference_s": round(timed - plain, 3),
        "dit_align_call_s": round(network, 4),
        "alignment_numpy_s": round(math_s, 4),
        "added_s": round(network + math_s, 3),
        "added_fraction": round((network + math_s) / plain, 3),
        "dtw_patches": int(duration * 25 / 2),
        "method": f"median of {runs} runs, in-process ONNX Runtime, tiny turbo, 8 steps",
        "alignment_module": alignment.__name__,
    }


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--repository", type=Path, required=True)
    parser.add_argument("--duration", type=float, default=30.0)
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args(argv)
    print(json.dumps(run(args.repository, args.duration, args.runs), indent=2))


if __name__ == "__main__":
    main()
