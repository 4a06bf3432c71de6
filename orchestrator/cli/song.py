"""``tritone song "theme" …``: create a song through the HTTP API, stream its lyrics, draw a progress bar for the
audio, download the audio and cover. One ``--flag`` per field of the song API's request."""

from __future__ import annotations

import argparse
import contextlib
import logging
import os
import sys
import types
import typing
from pathlib import Path
from typing import Any

DEFAULT_SERVER = "http://127.0.0.1:8080"

_SONG_FIELD_ALIASES = {"audio_format": ("--format",)}


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = subparsers.add_parser(
        "song",
        help="create a song through the HTTP API, stream its lyrics, download audio and cover",
        description="Create a song from a theme on a running Tritone service (`tritone serve`): lyrics are printed "
        "as they are written, a progress bar follows the audio, the files land in --out.",
    )
    parser.add_argument("theme", help='what the song is about, e.g. "周末骑单车去看海"')
    parser.add_argument(
        "--server", default=os.environ.get("TRITONE_SERVER", DEFAULT_SERVER), help=f"service URL ({DEFAULT_SERVER})"
    )
    parser.add_argument("--out", type=Path, default=Path("out/songs"), help="folder for the files (out/songs)")
    parser.add_argument("--no-events", action="store_true", help="poll /v1/song/status instead of the event stream")
    parser.add_argument("--timeout", type=float, default=3600.0, help="seconds to wait for the song (3600)")
    _add_auth(parser)
    _add_song_fields(parser)
    parser.set_defaults(func=run_song)


def _add_song_fields(parser: argparse.ArgumentParser) -> None:
    """One ``--flag`` per field of the song API's request (``orchestrator.schemas.song.SongCreate``), so the CLI
    follows the API. Only flags given are sent; the server applies its defaults and validation to the rest."""
    from orchestrator.schemas.song import SongCreate

    group = parser.add_argument_group("song fields (POST /v1/song/create; unset = server default)")
    for name, info in SongCreate.model_fields.items():
        if name == "theme":
            continue
        kind, choices, many = _flag_type(info.annotation)
        flags = [f"--{name.replace('_', '-')}", *_SONG_FIELD_ALIASES.get(name, ())]
        help_text = (info.description or "").replace("%", "%%")
        if many and choices:
            help_text = f"{help_text}; one or more of: {' '.join(choices)}".lstrip("; ")
        if info.default is not None and not callable(info.default):
            help_text = f"{help_text} (default {info.default})".strip()
        if kind is bool:
            group.add_argument(
                *flags, dest=name, action=argparse.BooleanOptionalAction, default=argparse.SUPPRESS, help=help_text
            )
        else:
            group.add_argument(
                *flags,
                dest=name,
                type=kind,
                choices=choices,
                nargs="+" if many else None,
                default=argparse.SUPPRESS,
                metavar=name.upper() if many or not choices else None,
                help=help_text,
            )


def _flag_type(annotation: Any) -> tuple[type, list[str] | None, bool]:
    """(python type, choices, is-list) for a pydantic field annotation like ``int | None``, ``Literal[...]``,
    ``list[Literal[...]] | None`` or ``Annotated[str | None, ...]``."""
    many = False
    tp = annotation
    for _ in range(6):
        origin = typing.get_origin(tp)
        if origin is typing.Annotated:
            tp = typing.get_args(tp)[0]
        elif origin in (typing.Union, types.UnionType):
            rest = [a for a in typing.get_args(tp) if a is not type(None)]
            tp = rest[0] if len(rest) == 1 else str
        elif origin is list:
            many = True
            tp = typing.get_args(tp)[0]
        else:
            break
    if typing.get_origin(tp) is typing.Literal:
        values = [str(v) for v in typing.get_args(tp)]
        return str, values, many
    if tp in (bool, int, float, str):
        return tp, None, many
    return str, None, many


def _add_auth(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("authentication (one of)")
    group.add_argument("--user", default=os.environ.get("TRITONE_USER"), help="username for POST /auth/login")
    group.add_argument(
        "--password",
        default=None,
        help="password (default: $TRITONE_PASSWORD, else asked on the terminal; avoid passing it on the command line)",
    )
    group.add_argument("--api-key", default=None, help="API key sent as X-API-Key (default: $TRITONE_API_KEY)")
    group.add_argument("--token", default=None, help="a bearer token from POST /auth/login")


def _song_request(args: argparse.Namespace) -> dict[str, Any]:
    from orchestrator.schemas.song import SongCreate

    request: dict[str, Any] = {"theme": args.theme}
    for name in SongCreate.model_fields:
        if name != "theme" and name in vars(args):
            request[name] = getattr(args, name)
    return request


def _client_for(args: argparse.Namespace):  # -> SongClient
    import getpass

    from orchestrator.cli.client import SongClient

    api_key = args.api_key or os.environ.get("TRITONE_API_KEY")
    client = SongClient(args.server, token=args.token, api_key=None if args.token else api_key)
    if not args.token and not api_key:
        if not args.user:
            client.close()
            raise ValueError(
                "say who you are: --user NAME (password from $TRITONE_PASSWORD or a prompt), --api-key or --token"
            )
        password = args.password or os.environ.get("TRITONE_PASSWORD")
        if password is None:
            if not sys.stdin.isatty():
                client.close()
                raise ValueError("no password: pass --password or set TRITONE_PASSWORD (stdin is not a terminal)")
            password = getpass.getpass(f"password for {args.user}: ")
        client.login(args.user, password)
    return client


def quiet_http_logs() -> None:
    # One INFO line per HTTP request would interleave with the lyrics on the terminal.
    for name in ("httpx", "httpcore"):
        logging.getLogger(name).setLevel(logging.WARNING)


def create_and_follow(
    client, request: dict[str, Any], out_dir: Path, *, timeout_s: float, use_events: bool = True
) -> int:
    """Create a song, stream it to the terminal, save its files. Returns a process exit code."""
    from orchestrator.cli.client import TerminalView, save_results

    quiet_http_logs()
    created = client.create(request)
    intent = created["intent_id"]
    interval = float((created.get("next_step") or {}).get("poll_interval_sec") or 2)
    print(f"song {intent}: {created.get('status')}", file=sys.stderr, flush=True)
    view = TerminalView()
    final = client.follow(intent, view, poll_interval_s=min(interval, 2.0), timeout_s=timeout_s, use_events=use_events)
    view.finish_bar()
    if view.lyrics and not view.lyrics.endswith("\n"):
        print(flush=True)
    status = final.get("status")
    if status != "succeeded":
        message = final.get("error") or f"the song ended as {status}"
        print(f"song {intent} {status}: {message}", file=sys.stderr, flush=True)
        return 1
    written = save_results(client, final, out_dir)
    title = final.get("title") or (final.get("metadata") or {}).get("title") or ""
    print(f"\n♪ {title}".rstrip(), flush=True)
    for path in written:
        print(f"  {path}", flush=True)
    return 0


def run_song(args: argparse.Namespace) -> int:
    from orchestrator.cli.client import ApiCallError

    try:
        with contextlib.closing(_client_for(args)) as client:
            return create_and_follow(
                client, _song_request(args), args.out, timeout_s=args.timeout, use_events=not args.no_events
            )
    except ApiCallError as exc:
        print(f"tritone song: {exc}", file=sys.stderr)
        return 2
