"""The dependency direction of docs/architecture.md, checked on the imports of every module of kuavo_train/."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "kuavo_train"

# part -> the parts it may import (transitively closed by hand: lower layers only). docs/architecture.md draws it.
ALLOWED = {
    "errors": set(),
    "layout": set(),
    "files": {"layout"},
    "device": {"errors"},
    "config": {"errors"},
    "recorded": {"config", "errors", "layout"},
    "data": {"config", "errors", "layout", "files"},
    "policy": {"config", "data", "errors", "layout"},
    "wrapper": {"data", "device", "errors", "layout", "policy"},
    "training": {"config", "data", "policy", "errors", "layout", "files", "device"},
    "evaluation": {
        "config",
        "data",
        "policy",
        "training",
        "wrapper",
        "recorded",
        "errors",
        "layout",
        "files",
        "device",
    },
    "curriculum": {"config", "data", "policy", "training", "evaluation", "errors", "layout", "files", "device"},
    "reporting": {"recorded", "errors", "layout"},
    "deploy": {"wrapper", "evaluation", "errors", "layout", "files"},
    "demo": {"config", "curriculum", "evaluation", "reporting", "errors", "layout", "files"},
    "cli": {"config", "curriculum", "data", "demo", "deploy", "evaluation", "reporting", "errors", "recorded"},
    "__main__": {"cli"},
    "train_smolvla_sequential": {"cli"},
    "__init__": set(),
}


def module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imported_modules(path: Path) -> set[str]:
    """kuavo_train modules imported anywhere in ``path`` (also inside functions)."""
    name = module_name(path)
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")[: len(package.split(".")) - node.level + 1]
                found.add(".".join([*base, node.module] if node.module else base))
            else:
                found.add(node.module or "")
    return {m for m in found if m == "kuavo_train" or m.startswith("kuavo_train.")}


def part_of(module: str) -> str:
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else "__init__"


MODULES = sorted(PACKAGE.rglob("*.py"))


def test_every_part_is_known():
    unknown = {part_of(module_name(p)) for p in MODULES} - set(ALLOWED)
    assert not unknown, f"new part(s) {unknown}: add them to ALLOWED and docs/architecture.md"


@pytest.mark.parametrize("path", MODULES, ids=lambda p: str(p.relative_to(PACKAGE)))
def test_imports_follow_the_dependency_direction(path):
    mine = part_of(module_name(path))
    wrong = sorted(m for m in imported_modules(path) if part_of(m) not in ALLOWED[mine] | {mine})
    assert not wrong, f"{path.relative_to(PACKAGE.parent)} ({mine}) imports {wrong}; allowed: {sorted(ALLOWED[mine])}"


def test_no_import_cycle_between_modules():
    graph = {module_name(p): {m for m in imported_modules(p)} for p in MODULES}
    state: dict[str, int] = {}

    def visit(node: str, trail: list[str]) -> None:
        state[node] = 1
        for nxt in sorted(graph.get(node, ())):
            if nxt not in graph or nxt == node:
                continue
            if state.get(nxt) == 1:
                raise AssertionError("import cycle: " + " -> ".join([*trail[trail.index(nxt) :], nxt]))
            if nxt not in state:
                visit(nxt, [*trail, nxt])
        state[node] = 2

    for module in graph:
        if module not in state:
            visit(module, [module])


def test_no_module_is_over_600_lines():
    long = {str(p.relative_to(PACKAGE.parent)): n for p in MODULES if (n := len(p.read_text().splitlines())) > 600}
    assert not long, f"split these modules by concern: {long}"
