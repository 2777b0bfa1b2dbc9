"""The layout's rule, read from the code's own imports (docs/architecture.md, "Layout"):

  Dependencies point one way, from the edges to the core, and never in a circle.
  - `core` is shared by every service and imports none of them.
  - `server` (the predictor), `simulation` and `monitoring` import only `core`.
  - `reporting` imports `monitoring` and `core`.
  - `orchestration` (the Prefect flows) imports the rooms below it, never `operations`.
  - `operations` (config check, setup, bootstrap, deployments, rollback, local processes,
    demo) imports every room that ships.
  - `swarm` (`make swarm-up`) stands apart and imports nothing of ours but itself.
  - What ships never imports `testkit`, `benchmarks` or `tests`; `testkit` (what the
    tests and benchmarks share) imports what ships; `benchmarks` add `testkit`; only
    `tests` may import `tests` (and the benchmarks, to test them).

Every top-level folder holding Python is in the table below, so a new room cannot slip
past the rule; imports inside functions count as much as those at the top.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
SHIPPED = ("core", "server", "simulation", "monitoring", "reporting", "orchestration",
           "operations")
MAY_IMPORT = {
    "core": {"core"},
    "server": {"core", "server"},
    "simulation": {"core", "simulation"},
    "monitoring": {"core", "monitoring"},
    "reporting": {"core", "monitoring", "reporting"},
    "orchestration": {"core", "simulation", "monitoring", "reporting", "orchestration"},
    "operations": set(SHIPPED),
    "swarm": {"swarm"},
    "testkit": {*SHIPPED, "swarm", "testkit"},
    "benchmarks": {*SHIPPED, "swarm", "testkit", "benchmarks"},
    "tests": {*SHIPPED, "swarm", "testkit", "benchmarks", "tests"},
}


def python_files(room: str) -> list[Path]:
    return [p for p in (ROOT / room).rglob("*.py") if "__pycache__" not in p.parts]


def module_name(path: Path) -> str:
    parts = path.relative_to(ROOT).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imported_modules(path: Path, name: str | None = None) -> set[str]:
    """Every module of ours `path` (the module `name`, by default its place in the tree)
    imports: absolute and relative imports, at any depth."""
    tree = ast.parse(path.read_text())
    name = name or module_name(path)
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")
                anchor = anchor[:len(anchor) - node.level + 1]
                base = ".".join([*anchor, *([base] if base else [])])
            # `from package import module` names a module; `from module import name` not.
            found.add(base)
            found |= {f"{base}.{alias.name}" for alias in node.names}
    return {name for name in found if name.split(".")[0] in MAY_IMPORT}


def test_every_room_with_python_is_under_the_rule() -> None:
    # Hidden folders (.venv, .git, .onebox) are never rooms.
    rooms = {folder.name for folder in ROOT.iterdir()
             if folder.is_dir() and not folder.name.startswith(".") and python_files(folder.name)}
    assert rooms == set(MAY_IMPORT), f"a room the rule does not name: {rooms ^ set(MAY_IMPORT)}"


@pytest.mark.parametrize("room", sorted(MAY_IMPORT))
def test_dependencies_point_one_way(room: str) -> None:
    allowed = MAY_IMPORT[room]
    for path in python_files(room):
        wrong = {name.split(".")[0] for name in imported_modules(path)} - allowed
        assert not wrong, (f"{path.relative_to(ROOT)} imports {sorted(wrong)}: the rule lets "
                           f"{room} import only {sorted(allowed)} (tests/test_layering.py)")


def test_no_module_imports_itself_round_a_circle() -> None:
    """No import cycle between modules, even through an import inside a function (the
    predictor's factory and views once imported each other that way)."""
    modules = {module_name(p): p for room in MAY_IMPORT for p in python_files(room)}
    graph = {name: {m for m in imported_modules(path) if m in modules and m != name}
             for name, path in modules.items()}
    # A package's __init__ is imported on the way to its modules: not an edge of its own.
    cycles = []
    state: dict[str, int] = {}
    stack: list[str] = []

    def visit(node: str) -> None:
        state[node] = 1
        stack.append(node)
        for nxt in sorted(graph[node]):
            if state.get(nxt) == 1:
                cycles.append(stack[stack.index(nxt):] + [nxt])
            elif nxt not in state:
                visit(nxt)
        stack.pop()
        state[node] = 2

    for name in sorted(graph):
        if name not in state:
            visit(name)
    assert not cycles, "import cycles: " + "; ".join(" -> ".join(c) for c in cycles)


def test_the_reader_finds_relative_imports_and_imports_inside_functions(tmp_path: Path) -> None:
    """What the rule stands on: a module of `server` that imports a sibling relatively
    and `reporting` inside a function is read as importing both."""
    probe = tmp_path / "probe.py"
    probe.write_text("import json\n\ndef f():\n    from . import views\n"
                     "    from reporting import charts\n")
    found = imported_modules(probe, "server.probe")
    assert {"server.views", "reporting.charts"} <= found and "json" not in found
    assert {n.split(".")[0] for n in found} - MAY_IMPORT["server"] == {"reporting"}


# MlflowClient's methods that change the registry (registering a version is the train
# flow's log_model).
REGISTRY_WRITES = {"set_registered_model_alias", "delete_registered_model_alias",
                   "set_model_version_tag", "delete_model_version_tag",
                   "update_model_version", "transition_model_version_stage",
                   "create_model_version", "delete_model_version", "copy_model_version",
                   "create_registered_model", "rename_registered_model",
                   "update_registered_model", "delete_registered_model",
                   "set_registered_model_tag", "delete_registered_model_tag"}


def test_only_core_registry_writes_to_the_model_registry() -> None:
    """Tags and aliases are written in one place (core/registry.py), so what the gate, a
    rollback or a card leaves on a version is read and changed there."""
    writers = []
    for room in SHIPPED:
        for path in python_files(room):
            if path == ROOT / "core" / "registry.py":
                continue
            calls = {node.func.attr for node in ast.walk(ast.parse(path.read_text()))
                     if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute)}
            writers += [f"{path.relative_to(ROOT)}: {name}"
                        for name in sorted(calls & REGISTRY_WRITES)]
    assert not writers, "\n".join(writers)
