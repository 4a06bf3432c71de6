"""``tritone models list|load|unload``: what Triton serves, and rolling a model version in or out (a version change
reloads the model with ``version_policy { specific { … } }``, so in-flight requests finish on their versions)."""

from __future__ import annotations

import argparse
import json
import logging
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

logger = logging.getLogger(__name__)

DEFAULT_TRITON_GRPC = "127.0.0.1:8001"


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
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
    parser.add_argument(
        "--restricted-key",
        default=os.environ.get("TRITONE_TRITON_RESTRICTED_KEY"),
        metavar="NAME=VALUE",
        help="header for Triton's restricted model-repository API (default: $TRITONE_TRITON_RESTRICTED_KEY)",
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


def _grpc_client(url: str, restricted_key: str | None = None):
    import tritonclient.grpc as grpcclient

    from orchestrator.services.triton import restricted_headers

    client = grpcclient.InferenceServerClient(url=url.removeprefix("grpc://"))
    headers = restricted_headers(restricted_key)
    return _WithHeaders(client, headers) if headers else client


class _WithHeaders:
    """A tritonclient client sending ``headers`` with every call (Triton's ``--grpc-restricted-protocol``)."""

    def __init__(self, client: Any, headers: dict[str, str]) -> None:
        self._client = client
        self._headers = headers

    def __getattr__(self, name: str) -> Any:
        attr = getattr(self._client, name)
        if not callable(attr) or name == "close":
            return attr

        def call(*args: Any, **kwargs: Any) -> Any:
            kwargs.setdefault("headers", self._headers)
            return attr(*args, **kwargs)

        return call


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

    client = _grpc_client(args.server, getattr(args, "restricted_key", None))
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
