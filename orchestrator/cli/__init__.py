"""The ``tritone`` command line. Each deployable registers its own subcommands; heavy imports happen inside them.

The orchestrator's commands are one module each here: ``song.py`` (create a song through the HTTP API), ``stems.py``
(split a song into stems), ``serve.py`` (tritonserver + the orchestrator), ``models.py`` (Triton's model versions),
``demo.py`` (everything from a fresh clone); ``client.py`` is the API client ``song``, ``stems`` and ``demo`` share.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import sys
from collections.abc import Sequence

# Modules that expose ``register(subparsers)``. Order = order in ``tritone --help``.
_COMMAND_MODULES = (
    "export.cli",  # tritone export
    "model_repository.launcher.cli",  # tritone triton
    "orchestrator.cli.song",  # tritone song
    "orchestrator.cli.stems",  # tritone stems
    "orchestrator.cli.serve",  # tritone serve
    "orchestrator.cli.models",  # tritone models
    "orchestrator.cli.demo",  # tritone demo
)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="tritone", description="Song generation served by NVIDIA Triton.")
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for name in _COMMAND_MODULES:
        importlib.import_module(name).register(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    try:
        return int(args.func(args) or 0)
    except KeyboardInterrupt:
        return 130
    except (FileNotFoundError, ValueError, RuntimeError) as exc:
        # Operator mistakes (a missing folder, a bad flag value) end with one readable line, not a stack trace.
        print(f"tritone {args.command}: error: {exc}", file=sys.stderr)
        return 2
