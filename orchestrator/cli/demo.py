"""``tritone demo THEME``: the README's first command — from a fresh clone: export the tiny presets (with the export's
own command line, ``export.cli.tiny_export_argv``), start tritonserver and the orchestrator on free ports, make one
song with its lyrics streamed here, and stop everything.

A dev-machine convenience: ``export`` is imported here, inside the command, never by the service code.
"""

from __future__ import annotations

import argparse
import contextlib
import secrets
import subprocess
import sys
import time
from pathlib import Path

from orchestrator.cli.serve import DEFAULT_REPOSITORY, orchestrator_process, triton_server
from orchestrator.cli.song import create_and_follow, quiet_http_logs
from orchestrator.families import MAX_DURATION, MIN_DURATION

# Models the demo needs from the exported repository (their config.pbtxt proves the export finished).
DEMO_MODELS = ("lyricist", "lm", "sampler")
# The tiny preset sings short songs: the demo asks for this much audio and this many DiT steps unless told otherwise.
DEMO_DURATION_S = 20.0
DEMO_STEPS = 8


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = subparsers.add_parser(
        "demo",
        help="from a fresh clone: export tiny models, start everything, make one song, stop everything",
        description="Export the tiny presets (if missing), start tritonserver and the orchestrator on free ports, "
        "create a song from THEME with the lyrics streamed here, write audio + cover + lyrics.txt + metadata.json "
        "to --out, and stop the servers.",
    )
    parser.add_argument("theme", help="what the song is about")
    parser.add_argument("--out", type=Path, default=Path("out/demo"), help="folder for the results (out/demo)")
    parser.add_argument(
        "--repository", type=Path, default=DEFAULT_REPOSITORY, help=f"model repository ({DEFAULT_REPOSITORY})"
    )
    parser.add_argument(
        "--preset", default="tiny", choices=["tiny"], help="export preset when the repository is missing (tiny)"
    )
    parser.add_argument("--format", dest="audio_format", default="flac", choices=["flac", "wav", "wav32", "mp3"])
    parser.add_argument(
        "--duration", type=float, default=DEMO_DURATION_S, help=f"seconds of audio ({DEMO_DURATION_S:g})"
    )
    parser.add_argument("--steps", type=int, default=DEMO_STEPS, help=f"DiT steps ({DEMO_STEPS})")
    parser.add_argument("--seed", type=int, default=0, help="seed for a repeatable song (0)")
    parser.add_argument("--timeout", type=float, default=1800.0, help="seconds to wait for the song (1800)")
    parser.add_argument("--verbose", action="store_true", help="show the export's third-party warnings and progress")
    parser.set_defaults(func=run_demo)


def _repository_ready(repository: Path) -> bool:
    return all((repository / m / "config.pbtxt").is_file() for m in DEMO_MODELS)


def _export(repository: Path, preset: str, *, verbose: bool = False) -> None:
    from export.cli import tiny_export_argv

    # The export silences third-party warnings at their source unless --verbose (export/cli.py quiet_third_party).
    argv = [*tiny_export_argv(repository), *(["--verbose"] if verbose else [])]
    print(f"exporting the {preset} presets to {repository} (first run only) …", file=sys.stderr, flush=True)
    started = time.monotonic()
    result = subprocess.run(argv, check=False)
    if result.returncode != 0:
        raise RuntimeError(f"`{' '.join(argv[2:])}` failed with exit code {result.returncode}")
    if not _repository_ready(repository):
        raise RuntimeError(f"the export finished but {repository} lacks one of {', '.join(DEMO_MODELS)}")
    print(f"exported in {time.monotonic() - started:.0f} s", file=sys.stderr, flush=True)


def run_demo(args: argparse.Namespace) -> int:
    from orchestrator.cli.client import ApiCallError, SongClient

    if not MIN_DURATION <= args.duration <= MAX_DURATION:
        raise ValueError(f"--duration must be within {MIN_DURATION}..{MAX_DURATION} seconds, got {args.duration:g}")
    quiet_http_logs()
    started = time.monotonic()
    repository: Path = args.repository
    out: Path = args.out
    if not _repository_ready(repository):
        _export(repository, args.preset, verbose=getattr(args, "verbose", False))
    logs = out / "logs"
    api_key = secrets.token_urlsafe(24)  # lives only as long as this demo's orchestrator
    request = {
        "theme": args.theme,
        "language": "zh" if any("\u4e00" <= ch <= "\u9fff" for ch in args.theme) else "en",
        "duration_hint": max(args.duration, 15.0),  # the lyricist's target must be > 10 s; `duration` binds anyway
        "duration": args.duration,
        "inference_steps": args.steps,
        "audio_format": args.audio_format,
        "seed": args.seed,
        "generate_cover": True,
    }
    with contextlib.ExitStack() as stack:
        triton = stack.enter_context(triton_server(repository, log_path=logs / "tritonserver.log", models=None))
        base = stack.enter_context(
            orchestrator_process(
                triton_urls=[triton.grpc_url],
                data_dir=out / ".data",
                api_key=api_key,
                log_path=logs / "orchestrator.log",
            )
        )
        print(f"orchestrator ready: {base}/ (web page), {base}/docs (API)", flush=True)
        print(f"\n主题 theme: {args.theme}\n", flush=True)
        try:
            with SongClient(base, api_key=api_key) as client:
                code = create_and_follow(client, request, out, timeout_s=args.timeout)
        except ApiCallError as exc:
            print(f"tritone demo: {exc}", file=sys.stderr)
            code = 2
    elapsed = time.monotonic() - started
    if code == 0:
        print(f"\ndone in {elapsed:.0f} s; servers stopped. Your song is in {out.resolve()}/", flush=True)
        print(
            f"web page: run `tritone serve --repository {repository}` (users: TRITONE_USERS or TRITONE_API_KEYS) and "
            "open the orchestrator URL it prints, e.g. http://127.0.0.1:8080/",
            flush=True,
        )
    else:
        print(f"\nthe demo failed after {elapsed:.0f} s; logs in {logs.resolve()}/", file=sys.stderr, flush=True)
    return code
