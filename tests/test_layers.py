"""The code's shape: no import cycle between packages, no long function in the shells."""

from __future__ import annotations

import ast
from pathlib import Path

SRC = Path(__file__).resolve().parents[1] / "src" / "chipfit"
SHELLS = [SRC / "cli.py", SRC / "web" / "app.py", *sorted((SRC / "report").glob("*.py"))]
MAX_FUNCTION_LINES = 80


def _unit(module: str) -> str:
    """The package a module belongs to: chipfit.<first part> (a top-level module is its own)."""
    return ".".join(module.split(".")[:2])


def _imports(path: Path) -> set[str]:
    """Every chipfit module `path` imports, at the top or inside a function."""
    rel = path.relative_to(SRC.parent).with_suffix("")
    parts = list(rel.parts)
    package = parts[:-1] if parts[-1] != "__init__" else parts[:-1]
    out = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom):
            if node.level:
                base = package[: len(package) - node.level + 1]
                names = [node.module] if node.module else [a.name for a in node.names]
                out |= {".".join([*base, n]) for n in names}
            elif node.module and node.module.startswith("chipfit"):
                out.add(node.module)
        elif isinstance(node, ast.Import):
            out |= {a.name for a in node.names if a.name.startswith("chipfit")}
    return out


def package_graph() -> dict[str, set[str]]:
    graph: dict[str, set[str]] = {}
    for path in SRC.rglob("*.py"):
        rel = path.relative_to(SRC.parent).with_suffix("")
        module = ".".join(p for p in rel.parts if p != "__init__")
        for target in _imports(path):
            a, b = _unit(module), _unit(target)
            if a != b and b != "chipfit":  # the package root (the Python API) may import anything
                graph.setdefault(a, set()).add(b)
    return graph


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected groups of more than one package (Tarjan)."""
    index, low, stack, on, out = {}, {}, [], set(), []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on.add(v)
        for w in graph.get(v, ()):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            group = []
            while True:
                w = stack.pop()
                on.discard(w)
                group.append(w)
                if w == v:
                    break
            if len(group) > 1:
                out.append(sorted(group))

    for v in list(graph):
        if v not in index:
            visit(v)
    return out


def test_the_walker_finds_a_cycle():
    assert cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]
    assert _unit("chipfit.report.plots") == "chipfit.report" and _unit("chipfit.advise") == "chipfit.advise"
    assert "chipfit.advise" in package_graph()["chipfit.report"]


def test_no_import_cycle_between_packages():
    assert cycles(package_graph()) == []


def test_no_function_in_the_shells_is_over_80_lines():
    long = []
    for path in SHELLS:
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                lines = node.end_lineno - node.lineno + 1
                if lines > MAX_FUNCTION_LINES:
                    long.append(f"{path.name}:{node.name} ({lines} lines)")
    assert long == []
