"""User-facing ``tritone`` subcommands: ``song``, ``serve``, ``models`` and ``demo``.

- ``tritone song "theme" …``: create a song through the HTTP API, stream its lyrics, draw a progress bar for the
  audio, download the audio and cover.
- ``tritone serve``: tritonserver on a model repository (unless ``--triton-url`` points at running ones) plus the
  orchestrator under uvicorn; Ctrl-C stops both.
- ``tritone models list|load|unload``: what Triton serves, and rolling a model version in or out.
- ``tritone demo THEME``: the README's first command, everything above on free ports from a fresh clone.

Heavy imports (uvicorn, tritonclient, the app) happen inside the command functions.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import logging
import os
import secrets
import signal
import subprocess
import sys
import time
import types
import typing
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

logger = logging.getLogger(__name__)

DEFAULT_SERVER = "http://127.0.0.1:8080"
DEFAULT_TRITON_GRPC = "127.0.0.1:8001"
DEFAULT_REPOSITORY = Path("build/repository")
DEMO_USER = "demo"
# Models the demo needs from the exported repository (their config.pbtxt proves the export finished).
DEMO_MODELS = ("lyricist", "lm", "sampler")
# The tiny preset sings short songs: the demo asks for this much audio and this many DiT steps unless told otherwise.
DEMO_DURATION_S = 20.0
DEMO_STEPS = 8

_SONG_FIELD_ALIASES = {"audio_format": ("--format",)}


# ===================================================================================================== register
def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    _register_song(subparsers)
    _register_serve(subparsers)
    _register_models(subparsers)
    _register_demo(subparsers)


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


def _register_song(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
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


def _register_serve(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = subparsers.add_parser(
        "serve",
        help="run the stack: tritonserver on a model repository + the orchestrator (API and web page)",
        description="Start tritonserver on --repository (unless --triton-url names running servers), then the "
        "orchestrator with uvicorn. Ctrl-C stops both. Other settings come from TRITONE_* environment variables.",
    )
    parser.add_argument(
        "--repository", type=Path, default=DEFAULT_REPOSITORY, help=f"model repository ({DEFAULT_REPOSITORY})"
    )
    parser.add_argument("--host", default="127.0.0.1", help="address for the orchestrator (127.0.0.1; 0.0.0.0: all)")
    parser.add_argument("--port", type=int, default=8080, help="orchestrator port (8080; 0: a free port)")
    parser.add_argument(
        "--triton-url",
        action="append",
        dest="triton_urls",
        metavar="HOST:PORT",
        help="gRPC address of a running tritonserver (repeatable); skips starting one",
    )
    parser.add_argument("--data-dir", type=Path, default=None, help="audio, covers and SQLite (TRITONE_DATA_DIR)")
    parser.add_argument("--triton-log", type=Path, default=None, help="tritonserver log file (default: temp folder)")
    parser.add_argument("--model", action="append", dest="models", metavar="NAME", help="load only these models")
    parser.add_argument("--log-level", default="info", choices=["debug", "info", "warning", "error"])
    parser.set_defaults(func=run_serve)


def _register_models(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = subparsers.add_parser(
        "models",
        help="list model versions on Triton; roll a version in or out",
        description="List what Triton's model repository holds, and load or unload models or single versions "
        "through the repository API (a version change reloads the model with version_policy { specific { … } }, "
        "so in-flight requests finish on the versions they started on).",
    )
    parser.add_argument(
        "--server",
        default=os.environ.get("TRITONE_TRITON_URL", DEFAULT_TRITON_GRPC),
        help=f"tritonserver gRPC address ({DEFAULT_TRITON_GRPC})",
    )
    parser.add_argument(
        "--repository", type=Path, default=None, help="repository folder, to read config.pbtxt of unloaded models"
    )
    actions = parser.add_subparsers(dest="action", metavar="ACTION", required=True)
    listing = actions.add_parser("list", help="every model and version with its state")
    listing.add_argument("--json", action="store_true", help="print JSON instead of a table")
    load = actions.add_parser("load", help="load a model, or add versions to the ones it serves")
    load.add_argument("name")
    load.add_argument("--version", action="append", type=int, dest="versions", metavar="V", help="version to add")
    load.add_argument("--exclusive", action="store_true", help="serve exactly --version(s), dropping the others")
    unload = actions.add_parser("unload", help="unload a model, or remove single versions from it")
    unload.add_argument("name")
    unload.add_argument("--version", action="append", type=int, dest="versions", metavar="V", help="version to drop")
    parser.set_defaults(func=run_models)


def _register_demo(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
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
    parser.add_argument("--preset", default="tiny", help="export preset when the repository is missing (tiny)")
    parser.add_argument("--format", dest="audio_format", default="flac", choices=["flac", "wav", "wav32", "mp3"])
    parser.add_argument(
        "--duration", type=float, default=DEMO_DURATION_S, help=f"seconds of audio ({DEMO_DURATION_S:g})"
    )
    parser.add_argument("--steps", type=int, default=DEMO_STEPS, help=f"DiT steps ({DEMO_STEPS})")
    parser.add_argument("--seed", type=int, default=0, help="seed for a repeatable song (0)")
    parser.add_argument("--timeout", type=float, default=1800.0, help="seconds to wait for the song (1800)")
    parser.set_defaults(func=run_demo)


# ========================================================================================================= song
def _song_request(args: argparse.Namespace) -> dict[str, Any]:
    from orchestrator.schemas.song import SongCreate

    request: dict[str, Any] = {"theme": args.theme}
    for name in SongCreate.model_fields:
        if name != "theme" and name in vars(args):
            request[name] = getattr(args, name)
    return request


def _client_for(args: argparse.Namespace):  # -> SongClient
    import getpass

    from orchestrator.song_client import SongClient

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


def _quiet_http_logs() -> None:
    # One INFO line per HTTP request would interleave with the lyrics on the terminal.
    for name in ("httpx", "httpcore"):
        logging.getLogger(name).setLevel(logging.WARNING)


def create_and_follow(
    client, request: dict[str, Any], out_dir: Path, *, timeout_s: float, use_events: bool = True
) -> int:
    """Create a song, stream it to the terminal, save its files. Returns a process exit code."""
    from orchestrator.song_client import TerminalView, save_results

    _quiet_http_logs()
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
    from orchestrator.song_client import ApiCallError

    try:
        with contextlib.closing(_client_for(args)) as client:
            return create_and_follow(
                client, _song_request(args), args.out, timeout_s=args.timeout, use_events=not args.no_events
            )
    except ApiCallError as exc:
        print(f"tritone song: {exc}", file=sys.stderr)
        return 2


# ======================================================================================================== serve
def _settings(**overrides: Any):  # -> Settings
    """Settings from TRITONE_* environment variables, with the command line's values on top."""
    from orchestrator.settings import Settings

    # Keyword arguments win over the environment; the environment fills in everything else.
    return Settings(**{k: v for k, v in overrides.items() if v is not None})


def _make_app(settings):  # -> FastAPI
    try:
        from orchestrator.app import create_app
    except ImportError as exc:
        raise RuntimeError(f"the orchestrator app is not available ({exc}); is orchestrator/app.py installed?") from exc
    return create_app(settings)


@contextlib.contextmanager
def _triton(repository: Path, *, log_path: Path | None, models: Sequence[str] | None) -> Iterator[Any]:
    from model_repository.server import TritonServer

    if not repository.is_dir():
        raise FileNotFoundError(
            f"model repository {repository} does not exist; make one with "
            f"`tritone export --preset tiny --target cpu --out {repository}` or pass --triton-url"
        )
    server = TritonServer(repository, log_path=log_path, model_control="explicit", load_models=models or ("*",))
    print(f"starting tritonserver on {repository} …", file=sys.stderr, flush=True)
    try:
        server.start()
        print(f"tritonserver ready: grpc {server.grpc_url}, http {server.http_url}, log {server.log_path}", flush=True)
        yield server
    finally:
        server.stop()
        print("tritonserver stopped", file=sys.stderr, flush=True)


def run_serve(args: argparse.Namespace) -> int:
    import uvicorn

    from model_repository.server import free_port

    def interrupt(signum: int, frame: types.FrameType | None) -> None:
        raise KeyboardInterrupt

    port = args.port or free_port()
    # SIGTERM behaves like Ctrl-C: uvicorn shuts down gracefully and re-raises the signal; this handler turns it into
    # KeyboardInterrupt so that tritonserver is stopped too (the default action would kill only this process).
    previous = signal.signal(signal.SIGTERM, interrupt)
    try:
        with contextlib.ExitStack() as stack:
            urls = args.triton_urls
            if not urls:
                triton = stack.enter_context(_triton(args.repository, log_path=args.triton_log, models=args.models))
                urls = [triton.grpc_url]
            settings = _settings(triton_urls=urls, data_dir=args.data_dir)
            app = _make_app(settings)
            print(f"orchestrator: http://{args.host}:{port}/  (API docs /docs; Triton {', '.join(urls)})", flush=True)
            config = uvicorn.Config(app, host=args.host, port=port, log_level=args.log_level, lifespan="on")
            uvicorn.Server(config).run()
    except KeyboardInterrupt:
        pass  # a requested stop: everything above has been shut down by now
    finally:
        signal.signal(signal.SIGTERM, previous)
    print("stopped", flush=True)
    return 0


# ======================================================================================================= models
def _grpc_client(url: str):
    import tritonclient.grpc as grpcclient

    return grpcclient.InferenceServerClient(url=url.removeprefix("grpc://"))


def _index(client) -> list[dict[str, str]]:
    index = client.get_model_repository_index(as_json=True)
    rows = []
    for entry in index.get("models", []):
        rows.append(
            {
                "name": str(entry.get("name", "")),
                "version": str(entry.get("version", "")),
                "state": str(entry.get("state", "")) or "UNLOADED",
                "reason": str(entry.get("reason", "")),
            }
        )
    return sorted(rows, key=lambda r: (r["name"], int(r["version"]) if r["version"].isdigit() else -1))


def ready_versions(rows: Sequence[dict[str, str]], name: str) -> list[int]:
    return sorted(
        int(r["version"]) for r in rows if r["name"] == name and r["state"] == "READY" and r["version"].isdigit()
    )


def _print_rows(rows: Sequence[dict[str, str]]) -> None:
    if not rows:
        print("(the repository is empty)")
        return
    width = max(5, *(len(r["name"]) for r in rows))
    print(f"{'MODEL':<{width}}  {'VERSION':<7}  {'STATE':<12}  REASON")
    for r in rows:
        print(f"{r['name']:<{width}}  {r['version'] or '-':<7}  {r['state']:<12}  {r['reason']}")


def _config_for(client, name: str, repository: Path | None) -> dict[str, Any]:
    """The model's full configuration: from the server when loaded, else from ``<repository>/<name>/config.pbtxt``."""
    from tritonclient.utils import InferenceServerException

    try:
        return dict(client.get_model_config(name, as_json=True)["config"])
    except InferenceServerException as exc:
        if repository is None:
            raise RuntimeError(
                f"model {name!r} is not loaded, so Triton cannot tell its configuration ({exc.message()}); load it "
                f"first (`tritone models load {name}`) or pass --repository DIR to read its config.pbtxt"
            ) from exc
    from google.protobuf import json_format, text_format
    from tritonclient.grpc import model_config_pb2

    path = repository / name / "config.pbtxt"
    if not path.is_file():
        raise FileNotFoundError(f"{path} does not exist; is {name!r} in the repository {repository}?")
    message = text_format.Parse(path.read_text(), model_config_pb2.ModelConfig())
    config = json_format.MessageToDict(message, preserving_proto_field_name=True)
    config.setdefault("name", name)
    return config


def set_versions(client, name: str, versions: Sequence[int], *, repository: Path | None = None) -> None:
    """(Re)load ``name`` serving exactly ``versions``. Triton keeps versions present in both the old and the new
    set running, loads the new ones before unloading the dropped ones, and lets in-flight requests finish."""
    if not versions:
        raise ValueError(f"no versions left for {name!r}; to unload the whole model use `tritone models unload {name}`")
    config = _config_for(client, name, repository)
    config["version_policy"] = {"specific": {"versions": sorted({int(v) for v in versions})}}
    logger.info("loading %s with versions %s", name, sorted(versions))
    client.load_model(name, config=json.dumps(config))


def _check_ready(client, name: str, wanted: Sequence[int], *, previous: Sequence[int], repository: Path | None) -> None:
    """After a load: every wanted version must be READY. If one is not (no such folder, a broken artifact), go back
    to the versions served before and say why."""
    rows = _index(client)
    ready = ready_versions(rows, name)
    failed = sorted(set(wanted) - set(ready))
    if not failed:
        return
    reasons = "; ".join(
        f"v{r['version']}: {r['reason'] or r['state']}"
        for r in rows
        if r["name"] == name and r["version"] in map(str, failed)
    )
    if previous and set(ready) != set(previous):
        set_versions(client, name, previous, repository=repository)
    raise RuntimeError(
        f"{name} version(s) {failed} did not become ready ({reasons or 'no such version folder?'}); "
        f"{name} serves {ready_versions(_index(client), name) or 'nothing'}"
    )


def run_models(args: argparse.Namespace) -> int:
    from tritonclient.utils import InferenceServerException

    client = _grpc_client(args.server)
    try:
        if args.action == "list":
            rows = _index(client)
            if args.json:
                print(json.dumps(rows, indent=2))
            else:
                _print_rows(rows)
            return 0
        rows = _index(client)
        if args.name not in {r["name"] for r in rows}:
            known = ", ".join(sorted({r["name"] for r in rows})) or "none"
            raise ValueError(f"no model {args.name!r} in the repository; models: {known}")
        current = ready_versions(rows, args.name)
        if args.action == "load":
            if not args.versions:
                client.load_model(args.name)
            else:
                wanted = args.versions if args.exclusive else sorted(set(current) | set(args.versions))
                set_versions(client, args.name, wanted, repository=args.repository)
                _check_ready(client, args.name, wanted, previous=current, repository=args.repository)
        else:  # unload
            if not args.versions:
                client.unload_model(args.name)
            else:
                missing = sorted(set(args.versions) - set(current))
                if missing:
                    raise ValueError(f"{args.name} does not serve version(s) {missing}; it serves {current or 'none'}")
                set_versions(client, args.name, sorted(set(current) - set(args.versions)), repository=args.repository)
        _print_rows([r for r in _index(client) if r["name"] == args.name])
        return 0
    except InferenceServerException as exc:
        raise RuntimeError(f"Triton at {args.server}: {exc.message()}") from exc
    finally:
        client.close()


# ========================================================================================================= demo
def _repository_ready(repository: Path) -> bool:
    return all((repository / m / "config.pbtxt").is_file() for m in DEMO_MODELS)


def _export(repository: Path, preset: str) -> None:
    argv = [
        sys.executable,
        "-m",
        "orchestrator.cli",
        "export",
        "--preset",
        preset,
        "--target",
        "cpu",
        "--out",
        str(repository),
    ]
    print(f"exporting the {preset} presets to {repository} (first run only) …", file=sys.stderr, flush=True)
    started = time.monotonic()
    result = subprocess.run(argv, check=False)
    if result.returncode != 0:
        raise RuntimeError(f"`{' '.join(argv[2:])}` failed with exit code {result.returncode}")
    if not _repository_ready(repository):
        raise RuntimeError(f"the export finished but {repository} lacks one of {', '.join(DEMO_MODELS)}")
    print(f"exported in {time.monotonic() - started:.0f} s", file=sys.stderr, flush=True)


@contextlib.contextmanager
def orchestrator_process(
    *,
    triton_urls: Sequence[str],
    data_dir: Path,
    api_key: str,
    log_path: Path,
    timeout_s: float = 90.0,
    extra_env: dict[str, str] | None = None,
) -> Iterator[str]:
    """``tritone serve --triton-url …`` in a child process on a free port, with an API key for ``demo`` (and any
    other ``TRITONE_*`` settings in ``extra_env``); yields the base URL once ``/health`` answers, and stops it
    (SIGINT, then SIGKILL) on exit."""
    import httpx

    from model_repository.server import free_port

    port = free_port()
    argv = [
        sys.executable,
        "-m",
        "orchestrator.cli",
        "serve",
        "--port",
        str(port),
        "--data-dir",
        str(data_dir),
        "--log-level",
        "warning",
    ]
    for url in triton_urls:
        argv += ["--triton-url", url]
    env = {**os.environ, "TRITONE_API_KEYS": json.dumps({api_key: DEMO_USER}), **(extra_env or {})}
    log_path.parent.mkdir(parents=True, exist_ok=True)
    with log_path.open("ab") as log:
        proc = subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT, env=env, start_new_session=True)
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + timeout_s
        while True:
            if proc.poll() is not None:
                tail = log_path.read_text(errors="replace")[-3000:]
                raise RuntimeError(f"the orchestrator exited with code {proc.returncode}; log {log_path}:\n{tail}")
            try:
                if httpx.get(f"{base}/health", timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if time.monotonic() > deadline:
                raise RuntimeError(f"the orchestrator did not answer on {base} within {timeout_s:g} s; log {log_path}")
            time.sleep(0.25)
        yield base
    finally:
        _stop_process(proc)


def _stop_process(proc: subprocess.Popen[bytes], wait_s: float = 20.0) -> None:
    if proc.poll() is None:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGINT)
        try:
            proc.wait(wait_s)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(5)


def run_demo(args: argparse.Namespace) -> int:
    from orchestrator.song_client import ApiCallError, SongClient

    if not 10 <= args.duration <= 600:
        raise ValueError(f"--duration must be within 10..600 seconds, got {args.duration:g}")
    _quiet_http_logs()
    started = time.monotonic()
    repository: Path = args.repository
    out: Path = args.out
    if not _repository_ready(repository):
        _export(repository, args.preset)
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
        triton = stack.enter_context(_triton(repository, log_path=logs / "tritonserver.log", models=None))
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
    else:
        print(f"\nthe demo failed after {elapsed:.0f} s; logs in {logs.resolve()}/", file=sys.stderr, flush=True)
    return code
