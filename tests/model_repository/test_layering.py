"""Arrows point one way: export -> model_repository (facts, entry points), never back; serving imports neither export
nor the orchestrator; the facts import only the standard library and each other."""

from __future__ import annotations

import ast
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def _imports(package: str) -> dict[str, set[str]]:
    """module file -> the top-level names of what it imports (absolute imports only: the tree uses no others)."""
    out: dict[str, set[str]] = {}
    for path in sorted((ROOT / package).rglob("*.py")):
        tree = ast.parse(path.read_text(), filename=str(path))
        names: set[str] = set()
        for node in ast.walk(tree):
            if isinstance(node, ast.Import):
                names.update(alias.name for alias in node.names)
            elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                names.add(node.module)
        out[str(path.relative_to(ROOT))] = names
    return out


def test_serving_imports_neither_export_nor_the_orchestrator():
    bad = {
        path: sorted(n for n in names if n.split(".")[0] in ("export", "orchestrator"))
        for path, names in _imports("model_repository").items()
    }
    assert {p: n for p, n in bad.items() if n} == {}


def test_export_never_imports_the_orchestrator():
    bad = {p: sorted(n for n in names if n.startswith("orchestrator")) for p, names in _imports("export").items()}
    assert {p: n for p, n in bad.items() if n} == {}


def test_facts_import_only_the_standard_library():
    stdlib = set(sys.stdlib_module_names) | {"__future__"}
    for path, names in _imports("model_repository/facts").items():
        foreign = sorted(
            n for n in names if n.split(".")[0] not in stdlib and not n.startswith("model_repository.facts")
        )
        assert foreign == [], f"{path} imports {foreign}"


def test_library_code_does_not_import_the_triton_entry_points():
    for path, names in _imports("model_repository").items():
        if "/triton_models/" in path:
            continue
        assert not any(n.startswith("model_repository.triton_models") for n in names), f"{path} imports an entry point"
