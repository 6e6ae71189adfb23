"""No import circle between the project's modules, lazy (function-level) imports included.

Run alone as a check: `python -m pytest tests/test_conf_imports.py -n 0`.
"""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("agents", "conf", "environment", "experiment", "memory", "training")


def module_name(path: Path) -> str:
    parts = path.relative_to(ROOT).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def import_graph(module_level: bool = False) -> dict[str, set[str]]:
    """Module → the project modules it imports anywhere in its body (`from a import b` counts `a` and `a.b`);
    `module_level`: only the imports run when the module is imported (not those inside functions)."""
    modules = {module_name(p): p for package in PACKAGES for p in (ROOT / package).rglob("*.py")}
    graph = {}
    for name, path in modules.items():
        imported: set[str] = set()
        tree = ast.parse(path.read_text(encoding="utf-8"))
        for node in tree.body if module_level else ast.walk(tree):
            if isinstance(node, ast.Import):
                imported |= {alias.name for alias in node.names}
            elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
                imported |= {node.module, *(f"{node.module}.{alias.name}" for alias in node.names)}
        graph[name] = {m for m in imported if m in modules and m != name}
    return graph


def circles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected groups of more than one module (each an import circle)."""
    order: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    found: list[list[str]] = []

    def visit(node: str) -> None:
        order[node] = low[node] = len(order)
        stack.append(node)
        for nxt in sorted(graph[node]):
            if nxt not in order:
                visit(nxt)
                low[node] = min(low[node], low[nxt])
            elif nxt in stack:
                low[node] = min(low[node], order[nxt])
        if low[node] == order[node]:
            group = []
            while (member := stack.pop()) != node:
                group.append(member)
            if group:
                found.append(sorted([node, *group]))

    for node in sorted(graph):
        if node not in order:
            visit(node)
    return found


def test_circles_are_found() -> None:
    assert circles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]


def test_no_import_circle_in_the_packages() -> None:
    graph = import_graph()
    assert "memory.store_files" in graph and "memory.store" in graph["memory.snapshot"]
    assert circles(graph) == []


def test_conf_imports_no_package_above_it_at_module_level() -> None:
    """conf/ is the bottom layer: a key's choices live in its schema (conf.schema.world.ORDERS...) and the code that
    acts on them imports them from there; conf reaches the packages above only inside functions."""
    graph = import_graph(module_level=True)
    above = ("agents", "environment", "experiment", "memory", "training")
    upward = {
        m: sorted(i for i in deps if i.split(".")[0] in above) for m, deps in graph.items() if m.startswith("conf")
    }
    assert "conf.schema.world" in graph and "conf.schema.checks" in graph["conf.schema.world"]
    assert {m: deps for m, deps in upward.items() if deps} == {}


# The command entry points of agents/, memory/ and environment/: the only modules there that may reach Hydra.
ENTRY_POINTS = {"environment.simulate"}
# One deliberate use: `backend=langchain` builds `backend.chat_model` (a `_target_` config) with Hydra's own object
# factory, hydra.utils.instantiate, imported inside that function only (importing agents.factory loads no Hydra).
INSTANTIATE = {"agents.factory"}


def imports_hydra(path: Path) -> bool:
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        names = [a.name for a in node.names] if isinstance(node, ast.Import) else []
        if isinstance(node, ast.ImportFrom) and node.module and not node.level:
            names = [node.module]
        if any(n == "hydra" or n.startswith("hydra.") for n in names):
            return True
    return False


def reached(graph: dict[str, set[str]], start: str) -> set[str]:
    seen, todo = {start}, [start]
    while todo:
        for nxt in graph[todo.pop()] - seen:
            seen.add(nxt)
            todo.append(nxt)
    return seen


def test_backends_memory_and_the_world_import_no_hydra_outside_the_command_entry_points() -> None:
    graph = import_graph()
    paths = {module_name(p): p for package in PACKAGES for p in (ROOT / package).rglob("*.py")}
    with_hydra = {m for m, p in paths.items() if imports_hydra(p)} - INSTANTIATE
    assert {"conf.cli", "environment.simulate"} <= with_hydra  # the check sees Hydra where it is
    layered = [m for m in graph if m.split(".")[0] in ("agents", "memory", "environment") and m not in ENTRY_POINTS]
    offenders = {m: sorted(reached(graph, m) & with_hydra) for m in layered if reached(graph, m) & with_hydra}
    assert offenders == {}


# What training/ and experiment/ may import of environment/: the episode files and their analysis, never the
# simulation itself (world, turns, scheduler, assembly, resume).
READING = {"environment", "environment.records", "environment.episodes", "environment.analysis", "environment.signal",
           "environment.metrics"}  # fmt: skip


def test_training_reads_episodes_but_never_imports_the_simulation() -> None:
    graph = import_graph()
    users = [m for m in graph if m.split(".")[0] in ("training", "experiment")]
    reach = set().union(*(reached(graph, m) for m in users))
    assert {"environment.records", "environment.signal", "environment.episodes"} <= reach  # the check sees them
    assert sorted(m for m in reach if m.split(".")[0] == "environment" and m not in READING) == []


def test_importing_a_backend_or_the_world_loads_no_hydra() -> None:
    import subprocess
    import sys

    code = ("import sys, agents.factory, agents.backends.openai_compat, environment.assemble, environment.resume, environment.episodes, "
            "memory.snapshot; print('hydra' in sys.modules)")  # fmt: skip
    done = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True)
    assert done.stdout.strip() == "False"
