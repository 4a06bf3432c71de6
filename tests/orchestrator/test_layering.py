"""The orchestrator's import graph (read from the source, every ``import`` counted, also those inside functions):
no loops, and the arrows point down — routers → services → store/db; schemas and settings below the services;
:mod:`orchestrator.families` (the families' facts as the orchestrator reads them) at the bottom."""

from __future__ import annotations

import ast
from functools import cache
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
PACKAGE = ROOT / "orchestrator"


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


@cache
def _modules() -> dict[str, Path]:
    return {_module_name(p): p for p in sorted(PACKAGE.rglob("*.py")) if "migrations" not in p.parts}


def _imported_names(path: Path) -> set[str]:
    """Every module name ``path`` imports, absolute (``from a import b`` yields ``a.b`` and ``a``)."""
    names: set[str] = set()
    package = _module_name(path) if path.name == "__init__.py" else _module_name(path).rpartition(".")[0]
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join([*anchor, base] if base else anchor)
            names.add(base)
            names.update(f"{base}.{alias.name}" for alias in node.names)
    return names


@cache
def _graph() -> dict[str, set[str]]:
    """Module -> the orchestrator modules it imports (``from pkg import mod`` counts as ``pkg.mod``)."""
    modules = _modules()
    return {name: {n for n in _imported_names(path) if n in modules and n != name} for name, path in modules.items()}


def _external(name: str) -> set[str]:
    return {n for n in _imported_names(_modules()[name]) if n.split(".")[0] in ("export", "model_repository")}


def _cycle() -> list[str] | None:
    graph, state, stack = _graph(), dict.fromkeys(_graph(), 0), []  # 0 new, 1 on the stack, 2 done

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        stack.append(node)
        for nxt in sorted(graph[node]):
            if state[nxt] == 1:
                return [*stack[stack.index(nxt):], nxt]
            if state[nxt] == 0 and (found := visit(nxt)):
                return found
        stack.pop()
        state[node] = 2
        return None

    for start in sorted(graph):
        if state[start] == 0 and (found := visit(start)):
            return found
    return None


def _importers(pattern: str, *, among: str) -> dict[str, set[str]]:
    """Modules under ``among`` that import a module under ``pattern`` (a dotted prefix)."""

    def under(name: str, prefix: str) -> bool:
        return name == prefix or name.startswith(prefix + ".")

    found = {
        name: {n for n in targets if under(n, pattern)}
        for name, targets in _graph().items()
        if under(name, among)
    }
    return {name: targets for name, targets in found.items() if targets}


def test_the_graph_is_read() -> None:
    graph = _graph()
    assert "orchestrator.services.jobs.engine" in graph["orchestrator.services.jobs"]
    assert "orchestrator.settings" in graph["orchestrator.services.triton"]


def test_no_import_loops() -> None:
    assert _cycle() is None, " -> ".join(_cycle() or [])


def test_schemas_import_no_services_and_nothing_above_them() -> None:
    for upper in ("orchestrator.services", "orchestrator.routers", "orchestrator.settings", "orchestrator.store",
                  "orchestrator.db", "orchestrator.app", "orchestrator.context", "orchestrator.cli"):
        assert _importers(upper, among="orchestrator.schemas") == {}, upper


def test_families_and_settings_sit_below_the_services() -> None:
    assert _graph()["orchestrator.families"] == set()
    assert _graph()["orchestrator.settings"] <= {"orchestrator.families"}


def test_services_import_no_routers_app_or_cli() -> None:
    for upper in ("orchestrator.routers", "orchestrator.app", "orchestrator.context", "orchestrator.cli"):
        assert _importers(upper, among="orchestrator.services") == {}, upper


def test_store_and_db_import_no_services_routers_or_schemas() -> None:
    for lower in ("orchestrator.store", "orchestrator.db"):
        for upper in ("orchestrator.services", "orchestrator.routers", "orchestrator.schemas", "orchestrator.app"):
            assert _importers(upper, among=lower) == {}, (lower, upper)


def test_only_the_demo_imports_export_and_only_the_cli_imports_serving_code() -> None:
    """The service reads the families' facts (``model_repository.facts``) and nothing else of the other sides; the
    launcher and the export are dev-machine conveniences of ``tritone serve`` and ``tritone demo``."""
    for name in _modules():
        external = _external(name)
        if name == "orchestrator.cli.demo":
            assert {n for n in external if n.startswith("export")} <= {"export.cli", "export.cli.tiny_export_argv"}
            continue
        if name == "orchestrator.cli.serve":
            assert all(n.startswith("model_repository.launcher") for n in external), (name, external)
            continue
        assert not any(n.startswith("export") for n in external), (name, external)
        assert all(n.startswith("model_repository.facts") for n in external), (name, external)
        if external:
            assert name == "orchestrator.families", f"{name} reads the facts through orchestrator.families"
