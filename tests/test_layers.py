"""docs/architecture.md's "Layers", checked against the imports in the code."""

from __future__ import annotations

import ast
import graphlib
from collections import defaultdict
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parent.parent / "dremioframe_async"


def _name(path: Path) -> str:
    return ".".join(path.relative_to(PACKAGE.parent).with_suffix("").parts).removesuffix(
        ".__init__"
    )


def _imports() -> dict[str, set[str]]:
    """Module -> the package's modules it imports (TYPE_CHECKING imports included)."""
    modules = {_name(p) for p in PACKAGE.rglob("*.py")}
    found: dict[str, set[str]] = defaultdict(set)
    for path in PACKAGE.rglob("*.py"):
        name = _name(path)
        package = name.split(".") if path.name == "__init__.py" else name.split(".")[:-1]
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if not isinstance(node, ast.ImportFrom):
                continue
            if node.level:
                base = package[: len(package) - node.level + 1]
                target = ".".join(base + ([node.module] if node.module else []))
            elif node.module and node.module.startswith("dremioframe_async"):
                target = node.module
            else:
                continue
            found[name].add(target)
            found[name].update(f"{target}.{alias.name}" for alias in node.names)
    return {m: {t for t in targets if t in modules and t != m} for m, targets in found.items()}


def _unit(module: str) -> str:
    """The folder (or top-level module) a module belongs to: ``store``, ``demo``."""
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else "__init__"


def _units() -> dict[str, set[str]]:
    graph: dict[str, set[str]] = defaultdict(set)
    for module, targets in _imports().items():
        for target in targets:
            if _unit(target) != _unit(module):
                graph[_unit(module)].add(_unit(target))
    return graph


def test_the_folders_import_each_other_without_a_cycle() -> None:
    graph = _units()
    graph.pop("__init__", None)  # the package's own front imports what it re-exports
    graph.pop("__main__", None)
    graphlib.TopologicalSorter(graph).prepare()  # raises CycleError naming the cycle


# Below every package (see the page): the exception root, masking, observability and
# the parts' own worker threads.
BASE = {"errors", "_masking", "_telemetry", "_metrics", "_own_threads"}


@pytest.mark.parametrize(
    ("unit", "allowed"),
    [
        ("orchestration", BASE),
        ("dremio", BASE),
        ("testing", {"dremio"} | BASE),
        ("store", {"orchestration"} | BASE),
        ("tasks", {"orchestration", "dremio"} | BASE),
        ("_masking", set()),
        ("_own_threads", set()),
        ("_telemetry", {"errors"}),
        ("_metrics", {"errors", "_telemetry"}),
    ],
)
def test_the_lower_layers_import_only_what_the_page_says(unit: str, allowed: set[str]) -> None:
    assert _units()[unit] <= allowed


@pytest.mark.parametrize("unit", ["orchestration", "store", "cli"])
def test_the_modules_of_a_folder_import_each_other_without_a_cycle(unit: str) -> None:
    graph = {
        module: {t for t in targets if _unit(t) == unit and t != f"dremioframe_async.{unit}"}
        for module, targets in _imports().items()
        if _unit(module) == unit and module != f"dremioframe_async.{unit}"
    }
    graphlib.TopologicalSorter(graph).prepare()
