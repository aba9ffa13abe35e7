"""The layers: phi3v_data <- converters <- phi3v_cli and phi3v_data <- phi3v_train <- phi3v_cli.

Read from the source (every import statement, module level or inside a function), so an
import that only runs on some path is caught too.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]

# Package -> the top-level names its modules must never import.
FORBIDDEN = {
    "phi3v_data": {"converters", "phi3v_train", "phi3v_cli", "typer", "torch"},
    "converters": {"phi3v_train", "phi3v_cli", "typer"},
    "phi3v_train": {"converters", "phi3v_cli", "typer"},
}


def _imported(path: Path) -> set[str]:
    names = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            names.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names.add(node.module.split(".")[0])
    return names


@pytest.mark.parametrize("package", sorted(FORBIDDEN))
def test_library_packages_do_not_import_upper_layers(package: str) -> None:
    modules = sorted((ROOT / package).rglob("*.py"))
    assert modules
    found = {
        str(path.relative_to(ROOT)): sorted(_imported(path) & FORBIDDEN[package])
        for path in modules
    }
    assert {path: names for path, names in found.items() if names} == {}


def test_only_the_cli_imports_typer() -> None:
    users = {
        str(path.relative_to(ROOT))
        for package in ("phi3v_data", "converters", "phi3v_train", "phi3v_cli")
        for path in (ROOT / package).rglob("*.py")
        if "typer" in _imported(path)
    }
    assert users and all(user.startswith("phi3v_cli/") for user in users)


def _module_graph() -> dict[str, set[str]]:
    """Module -> the project modules it imports (anywhere in its source)."""
    paths = {}
    for package in ("phi3v_data", "converters", "phi3v_train", "phi3v_cli"):
        for path in (ROOT / package).rglob("*.py"):
            parts = path.relative_to(ROOT).with_suffix("").parts
            paths[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = path
    graph = {}
    for name, path in paths.items():
        found = set()
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                found.add(node.module)
                found.update(f"{node.module}.{alias.name}" for alias in node.names)
            elif isinstance(node, ast.Import):
                found.update(alias.name for alias in node.names)
        graph[name] = {module for module in found if module in paths} - {name}
    return graph


def test_no_import_cycles() -> None:
    graph = _module_graph()
    assert len(graph) > 50
    done: set[str] = set()

    def visit(module: str, path: list[str]) -> None:
        if module in path:
            cycle = [*path[path.index(module) :], module]
            raise AssertionError("import cycle: " + " -> ".join(cycle))
        if module in done:
            return
        for imported in sorted(graph[module]):
            visit(imported, [*path, module])
        done.add(module)

    for module in sorted(graph):
        visit(module, [])
