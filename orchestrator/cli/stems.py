"""``tritone stems FILE --stems 2|4|6 --out DIR``: split a song into stems through the HTTP API (``POST /v1/stems``),
follow the job with a progress bar, download each stem (``vocals.wav``, ``drums.wav``, …) and ``stems.zip``.
``--tracks vocals,drums,...`` makes them with ACE-Step's base DiT instead (method ``acestep``, one per track class).
Same server and authentication flags as ``tritone song``."""

from __future__ import annotations

import argparse
import contextlib
import os
import sys
import time
from pathlib import Path
from typing import Any

from orchestrator.cli.song import DEFAULT_SERVER, _add_auth, _client_for, quiet_http_logs
from orchestrator.schemas.common import TRACK_CLASSES


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = subparsers.add_parser(
        "stems",
        help="split a song into stems (vocals, drums, ...) through the HTTP API and download them",
        description="Upload FILE (WAV, FLAC, OGG, MP3, AIFF; at most 600 s) to a running Tritone service, follow the "
        "separation, and write one 48 kHz WAV per stem plus stems.zip to --out.",
    )
    parser.add_argument("file", type=Path, help="the song to split")
    parser.add_argument(
        "--stems", type=int, choices=(2, 4, 6), default=None,
        help="2: vocals + instrumental; 4: drums, bass, other, vocals; 6: adds guitar and piano (default 4)",
    )
    parser.add_argument(
        "--tracks", type=_track_list, default=None,
        help="ACE-Step's method instead of HT-Demucs: these track classes (comma-separated, e.g. vocals,drums,bass; "
        "needs a served base checkpoint)",
    )
    parser.add_argument("--steps", type=int, default=None, help="with --tracks: DiT steps (default: the base DiT's)")
    parser.add_argument(
        "--server", default=os.environ.get("TRITONE_SERVER", DEFAULT_SERVER), help=f"service URL ({DEFAULT_SERVER})"
    )
    parser.add_argument("--out", type=Path, default=Path("out/stems"), help="folder for the files (out/stems)")
    parser.add_argument("--timeout", type=float, default=3600.0, help="seconds to wait for the stems (3600)")
    _add_auth(parser)
    parser.set_defaults(func=run_stems)


def _track_list(value: str) -> list[str]:
    names = [v.strip() for v in value.split(",") if v.strip()]
    unknown = [n for n in names if n not in TRACK_CLASSES]
    if not names or unknown:
        raise argparse.ArgumentTypeError(f"{unknown or value!r}: track classes are {', '.join(TRACK_CLASSES)}")
    return names


def follow_job(client: Any, job_id: str, *, timeout_s: float, poll_s: float = 1.0) -> dict[str, Any]:
    """Poll ``GET /v1/jobs/{job_id}`` until it ends, drawing its progress; returns the final job."""
    from orchestrator.cli.client import TERMINAL_STATUSES, SongEvent, TerminalView

    view = TerminalView()
    deadline = time.monotonic() + timeout_s
    while True:
        job = client.job(job_id)
        progress = job.get("progress") or {}
        if int(progress.get("total") or 0) > 0:
            view(SongEvent("progress", progress))
        if job.get("status") in TERMINAL_STATUSES:
            view.finish_bar()
            return dict(job)
        if time.monotonic() > deadline:
            raise TimeoutError(f"stems job {job_id} did not finish within {timeout_s:g} s")
        time.sleep(poll_s)


def run_stems(args: argparse.Namespace) -> int:
    from orchestrator.cli.client import ApiCallError

    if not args.file.is_file():
        raise FileNotFoundError(f"no such file: {args.file}")
    if (args.tracks and args.stems is not None) or (args.steps is not None and not args.tracks):
        bad = "--stems" if args.tracks else "--steps"
        print(f"tritone stems: {bad} does not go with {'--tracks' if args.tracks else 'HT-Demucs (no --tracks)'}: "
              "--tracks makes one stem per class, --stems picks HT-Demucs' stem set", file=sys.stderr)
        return 2
    args.stems = args.stems or 4
    quiet_http_logs()
    try:
        with contextlib.closing(_client_for(args)) as client:
            created = client.stems(args.file, args.stems, tracks=args.tracks, steps=args.steps)
            job_id = created["job_id"]
            what = f"tracks {','.join(args.tracks)}" if args.tracks else f"{args.stems} stems"
            print(f"stems {job_id}: queued ({what} of {args.file.name})", file=sys.stderr, flush=True)
            job = follow_job(client, job_id, timeout_s=args.timeout)
            if job.get("status") != "succeeded":
                print(f"stems {job_id} {job.get('status')}: {job.get('error') or ''}".rstrip(), file=sys.stderr)
                return 1
            result = job["result"]
            args.out.mkdir(parents=True, exist_ok=True)
            written = [client.download(stem["url"], args.out / stem["file"]) for stem in result["items"]]
            written.append(client.download(result["zip_url"], args.out / result["zip_file"]))
    except ApiCallError as exc:
        print(f"tritone stems: {exc}", file=sys.stderr)
        return 2
    for path in written:
        print(f"  {path}", flush=True)
    return 0
