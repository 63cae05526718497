"""The package's layering holds: no import cycles, lower layers never import upper ones, and `python -m
rewardlab` is the console script. Imports inside functions count too: a lazy import that reaches up is still
a dependency that reaches up."""

from __future__ import annotations

import ast
import subprocess
import sys
from collections import defaultdict
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parents[1] / "src"
PKG = SRC / "rewardlab"

# Lowest first. A module may import its own layer and the layers below it, never one above.
LAYERS: list[tuple[str, ...]] = [
    ("errors", "redact", "progress", "devices"),
    ("config", "losses", "ppo_math", "param_groups", "models", "tracking", "cards"),
    ("data",),
    ("raters",),
    ("runs", "scoring", "generation", "engines"),
    ("eval", "report"),
    ("recipes",),
    ("commands",),
    ("cli", "__main__"),
]
RANK = {part: i for i, layer in enumerate(LAYERS) for part in layer}


def module_name(path: Path) -> str:
    parts = list(path.relative_to(SRC).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def import_graph() -> dict[str, set[str]]:
    """module -> the rewardlab modules it imports (anywhere in the file)."""
    modules = {module_name(p): p for p in PKG.rglob("*.py")}
    graph: dict[str, set[str]] = defaultdict(set)
    for name, path in modules.items():
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            targets: list[str] = []
            if (
                isinstance(node, ast.ImportFrom)
                and node.level == 0
                and (node.module or "").startswith("rewardlab")
            ):
                targets.append(node.module)
                targets += [f"{node.module}.{a.name}" for a in node.names]
            elif isinstance(node, ast.Import):
                targets += [a.name for a in node.names if a.name.startswith("rewardlab")]
            for target in targets:
                if target in modules and target != name:
                    graph[name].add(target)
    return graph


def _part(module: str) -> str:
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else "rewardlab"


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components of more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in graph.get(v, ()):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                found.append(sorted(comp))

    for v in list(graph):
        if v not in index:
            visit(v)
    return found


def test_no_import_cycles() -> None:
    graph = import_graph()
    # the package's own __init__ may re-export; it is not part of any layer
    graph.pop("rewardlab", None)
    for deps in graph.values():
        deps.discard("rewardlab")
    assert cycles(graph) == []


def test_lower_layers_never_import_upper_ones() -> None:
    upward = []
    for module, deps in import_graph().items():
        src = _part(module)
        if src not in RANK:
            continue
        for dep in deps:
            dst = _part(dep)
            if dst in RANK and RANK[dst] > RANK[src]:
                upward.append(f"{module} -> {dep}")
    assert upward == []


def test_every_module_has_a_layer() -> None:
    parts = {_part(module_name(p)) for p in PKG.rglob("*.py")} - {"rewardlab"}
    assert parts <= set(RANK), f"add these to LAYERS: {sorted(parts - set(RANK))}"


def test_cycle_finder_finds_a_cycle() -> None:
    assert cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]


@pytest.mark.parametrize("argv", [["-m", "rewardlab", "--help"]])
def test_python_m_rewardlab_is_the_console_script(argv: list[str]) -> None:
    out = subprocess.run([sys.executable, *argv], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert "Usage: rewardlab" in out.stdout
    # commands in the order of the loop
    order = [
        "data",
        "raters",
        "train",
        "eval",
        "score",
        "sample",
        "simulate",
        "pipeline",
        "compare",
        "config",
    ]
    listed = [
        line[2:].split()[0] for line in out.stdout.splitlines() if line.startswith("│ ") and line[2] != " "
    ]
    listed = [c for c in listed if c in order]
    assert listed == order
    bad = subprocess.run(
        [sys.executable, "-m", "rewardlab", "trian"], capture_output=True, text=True, timeout=120
    )
    assert bad.returncode == 2
