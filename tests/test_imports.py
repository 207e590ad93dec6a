"""The library's import graph: no circles, no private names across modules.

Read with :mod:`ast` from ``src/interpflow`` (nothing is imported): every ``import`` and
``from ... import`` counts, at module level, inside functions and under ``TYPE_CHECKING``,
relative ones resolved. A family's shared types live in a module below both sides ("types
down, behaviour up"), so no module imports one that imports it back; a name another module
uses is public.
"""

import ast
from pathlib import Path

from conftest import REPO

SRC = REPO / "src"
PACKAGE = "interpflow"


def module_name(path: Path) -> str:
    parts = path.relative_to(SRC).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


MODULES = {module_name(p): p for p in sorted((SRC / PACKAGE).rglob("*.py"))}


def imports(module: str, source: str | None = None) -> list[tuple[str, str | None, int]]:
    """``(imported module, imported name or None, line)`` for each interpflow import in
    ``module`` (its file, or ``source``); ``from a import b`` names the module ``a.b`` when
    that is one."""
    path = MODULES[module]
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    tree = ast.parse(path.read_text() if source is None else source, filename=str(path))
    out = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            out += [(a.name, None, node.lineno) for a in node.names if a.name in MODULES]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parts = package.split(".")
                parts = parts[: len(parts) - node.level + 1]
                base = ".".join([*parts, base] if base else parts)
            for a in node.names:
                if f"{base}.{a.name}" in MODULES:
                    out.append((f"{base}.{a.name}", None, node.lineno))
                elif base in MODULES:
                    out.append((base, a.name, node.lineno))
    return out


def graph() -> dict[str, set[str]]:
    """Module -> the interpflow modules it imports (itself left out)."""
    return {m: {dep for dep, _, _ in imports(m) if dep != m} for m in MODULES}


def cycles(edges: dict[str, set[str]]) -> list[list[str]]:
    """One closed path ``[a, b, ..., a]`` through each strongly connected group of modules."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    groups: list[set[str]] = []

    def visit(v: str) -> None:  # Tarjan
        index[v] = low[v] = len(index)
        stack.append(v)
        for w in sorted(edges[v]):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            group = set()
            while True:
                w = stack.pop()
                group.add(w)
                if w == v:
                    break
            if len(group) > 1:
                groups.append(group)

    for v in sorted(edges):
        if v not in index:
            visit(v)
    out = []
    for group in groups:  # a shortest way round, from the group's first module
        start = min(group)
        paths = {start: [start]}
        todo = [start]
        for v in todo:  # breadth first: the list grows while it is read
            if start in edges[v]:
                out.append([*paths[v], start])
                break
            for w in sorted(edges[v] & group - paths.keys()):
                paths[w] = [*paths[v], w]
                todo.append(w)
    return out


def test_the_graph_sees_the_library():
    g = graph()
    assert len(g) > 50 and "interpflow.judges" in g
    assert "interpflow.failures" in g["interpflow.judges"]  # a module-level import
    assert "interpflow.capture" in g["interpflow.demo_scores"]  # an import inside a function
    assert "interpflow.judge_types" in g["interpflow.failures"]  # under TYPE_CHECKING
    relative = "from ..judges import _Cache\nfrom . import report\nimport interpflow.stats\n"
    assert imports("interpflow.steering.seeds", relative) == [
        ("interpflow.judges", "_Cache", 1),
        ("interpflow.steering.report", None, 2),
        ("interpflow.stats", None, 3),
    ]
    assert cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c", "a"]]
    assert cycles({"a": {"b"}, "b": set()}) == []


def test_no_import_circles():
    found = cycles(graph())
    assert not found, "import circles (move the shared types into a module both sides import): " + (
        "; ".join(" -> ".join(c) for c in found)
    )


def test_no_private_names_across_modules():
    private = [
        f"{module} (line {line}) imports {dep}.{name}"
        for module in MODULES
        for dep, name, line in imports(module)
        if name is not None and name.startswith("_") and dep != module
    ]
    assert not private, "private names used across modules (make them public): " + "; ".join(
        private
    )
