"""The package's imports point down its layers and never go round in a circle (docs/design.md, "Layers").

Every ``import`` and ``from ... import`` in ``artemis/**/*.py`` counts, at module level or inside a
function; only those under ``if TYPE_CHECKING:`` do not (they never run). A package's ``__init__``
re-exporting its own modules is not an edge.
"""

from __future__ import annotations

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[1] / "artemis"

# Floors from the ground up; a module may import from its own floor or any floor below.
FLOORS = (
    ("artemis.errors", "artemis.io", "artemis.boxes", "artemis.regions", "artemis.prompts", "artemis.templates"),
    ("artemis.video",),
    ("artemis.track",),
    ("artemis.model",),
    ("artemis.tasks",),
    ("artemis.data",),
    ("artemis.train", "artemis.eval"),
    ("artemis", "artemis.api", "artemis.boxout", "artemis.serve", "artemis.cli"),
)


def module_name(path: Path, package: Path = PACKAGE) -> str:
    parts = path.relative_to(package.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def floor(module: str) -> int:
    best, level = -1, None
    for number, prefixes in enumerate(FLOORS):
        for prefix in prefixes:
            if (module == prefix or module.startswith(prefix + ".")) and len(prefix) > best:
                best, level = len(prefix), number
    assert level is not None, f"{module} is on no floor; add it to FLOORS and docs/design.md"
    return level


def type_checking_nodes(tree: ast.AST) -> set[int]:
    skipped: set[int] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
            for child in node.body:
                skipped.update(id(n) for n in ast.walk(child))
    return skipped


def imports(package_dir: Path = PACKAGE) -> dict[str, set[str]]:
    """Each module's artemis imports, resolved to the modules that exist."""
    files = list(package_dir.rglob("*.py"))
    modules = {module_name(path, package_dir) for path in files}

    def resolve(name: str) -> str | None:
        while name and name not in modules:
            name = name.rpartition(".")[0]
        return name or None

    graph: dict[str, set[str]] = {}
    for path in files:
        me = module_name(path, package_dir)
        package = me if path.name == "__init__.py" else me.rpartition(".")[0]
        tree = ast.parse(path.read_text())
        skipped = type_checking_nodes(tree)
        targets: set[str] = set()
        for node in ast.walk(tree):
            if id(node) in skipped:
                continue
            if isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom):
                base = node.module or ""
                if node.level:
                    anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                    base = ".".join([*anchor, base] if base else anchor)
                # ``from pkg import mod`` imports the module pkg.mod; ``from mod import name`` the module mod.
                names = [f"{base}.{a.name}" if f"{base}.{a.name}" in modules else base for a in node.names]
            else:
                continue
            for name in names:
                target = resolve(name) if name.startswith("artemis") else None
                if target and target != me and not (path.name == "__init__.py" and target.startswith(me + ".")):
                    targets.add(target)
        graph[me] = targets
    return graph


def find_problems(graph: dict[str, set[str]]) -> tuple[list[str], list[list[str]]]:
    """``(upward imports as "a -> b", cycles as module paths)``."""
    upward = sorted(f"{a} -> {b}" for a, targets in graph.items() for b in targets if floor(b) > floor(a))
    state: dict[str, int] = {}  # 1: on the current path, 2: done
    cycles: list[list[str]] = []

    def visit(node: str, path: list[str]) -> None:
        state[node] = 1
        for target in sorted(graph.get(node, ())):
            if state.get(target) == 1:
                cycles.append([*path[path.index(target) :], target])
            elif target not in state:
                visit(target, [*path, target])
        state[node] = 2

    for module in sorted(graph):
        if module not in state:
            visit(module, [module])
    return upward, cycles


def test_every_import_points_down_and_there_is_no_cycle():
    upward, cycles = find_problems(imports())
    assert not upward, "imports that point up a layer:\n" + "\n".join(upward)
    assert not cycles, "import cycles:\n" + "\n".join(" -> ".join(c) for c in cycles)


def test_the_checker_finds_an_upward_import_and_a_cycle(tmp_path):
    """The test above can fail: a toy package with a model -> api import and an a <-> b cycle."""
    toy = tmp_path / "artemis"
    (toy / "model").mkdir(parents=True)
    (toy / "__init__.py").write_text("from artemis.model import a\n")  # a re-export: not an edge
    (toy / "model" / "__init__.py").write_text("from .a import f\n")
    (toy / "model" / "a.py").write_text("def f():\n    from artemis.api import X\n    from . import b\n")
    (toy / "model" / "b.py").write_text("from artemis.model import a\n")
    (toy / "api.py").write_text("from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from artemis.cli import Y\n")
    (toy / "cli.py").write_text("import artemis.model.b\n")
    graph = imports(toy)
    assert graph["artemis.model.a"] == {"artemis.api", "artemis.model.b"}
    assert graph["artemis.api"] == set()  # under TYPE_CHECKING, never run
    upward, cycles = find_problems(graph)
    assert upward == ["artemis.model.a -> artemis.api"]  # cli -> model.b points down
    assert len(cycles) == 1 and cycles[0][0] == cycles[0][-1]  # found once, from whichever end
    assert set(cycles[0]) == {"artemis.model.a", "artemis.model.b"}
