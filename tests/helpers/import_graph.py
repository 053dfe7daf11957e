"""The import graph of the ``factory`` package, read from the source (nothing is imported).

Every ``import`` and ``from ... import`` is an edge, at module level or inside a
function; imports under ``if TYPE_CHECKING:`` are not (they never run). An edge
to a package's submodule (``from factory.features import rules``) points at the
submodule.
"""

from __future__ import annotations

import ast
from dataclasses import dataclass
from pathlib import Path

PACKAGE_DIR = Path(__file__).resolve().parents[2] / "factory"


@dataclass(frozen=True)
class Edge:
    source: str  # importing module
    target: str  # imported module (a factory module, or a top-level third-party package)
    line: int
    deferred: bool  # inside a function


def module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE_DIR.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def modules() -> dict[str, Path]:
    return {module_name(p): p for p in sorted(PACKAGE_DIR.rglob("*.py"))}


def _is_type_checking(node: ast.If) -> bool:
    test = node.test
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
    )


def _resolve(name: str, known: dict[str, Path]) -> str:
    if name.startswith("factory"):
        while name not in known and "." in name:
            name = name.rsplit(".", 1)[0]
        return name
    return name.split(".")[0]


def edges() -> list[Edge]:
    known = modules()
    out: list[Edge] = []
    for source, path in known.items():
        tree = ast.parse(path.read_text(), filename=str(path))

        def visit(node: ast.AST, deferred: bool, source: str = source) -> None:
            for child in ast.iter_child_nodes(node):
                if isinstance(child, ast.If) and _is_type_checking(child):
                    for other in child.orelse:
                        visit(other, deferred)
                    continue
                inner = deferred or isinstance(child, ast.FunctionDef | ast.AsyncFunctionDef | ast.Lambda)
                if isinstance(child, ast.Import):
                    for alias in child.names:
                        out.append(Edge(source, _resolve(alias.name, known), child.lineno, deferred))
                elif isinstance(child, ast.ImportFrom) and child.level == 0 and child.module:
                    for alias in child.names:
                        full = f"{child.module}.{alias.name}"
                        target = full if full in known else _resolve(child.module, known)
                        out.append(Edge(source, target, child.lineno, deferred))
                visit(child, inner)

        visit(tree, False)
    return out


def cycles(all_edges: list[Edge]) -> list[list[str]]:
    """Strongly connected components of more than one module (or a module importing itself)."""
    graph: dict[str, set[str]] = {}
    for e in all_edges:
        if e.target.startswith("factory") and e.target != e.source:
            graph.setdefault(e.source, set()).add(e.target)
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []
    counter = [0]

    def strong(v: str) -> None:
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on_stack.add(v)
        for w in sorted(graph.get(v, ())):
            if w not in index:
                strong(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for v in sorted(graph):
        if v not in index:
            strong(v)
    return found


def reaches(start: str, all_edges: list[Edge], targets: set[str], deferred: bool = False) -> list[str] | None:
    """A chain of imports from ``start`` to one of ``targets`` (module-level edges only unless
    ``deferred``), or None."""
    graph: dict[str, list[str]] = {}
    for e in all_edges:
        if deferred or not e.deferred:
            graph.setdefault(e.source, []).append(e.target)
    seen = {start}
    queue = [[start]]
    while queue:
        chain = queue.pop(0)
        for nxt in graph.get(chain[-1], ()):
            if nxt in targets:
                return [*chain, nxt]
            if nxt not in seen and nxt.startswith("factory"):
                seen.add(nxt)
                queue.append([*chain, nxt])
    return None
