"""The code a rule's job runs, hashed: its script plus every interpflow module the script
imports, at any depth (module-level and function-level imports, relative ones too).

Snakemake reruns a ``script:`` rule when the script changes, not when the library under it
does; each rule passes ``code_hash(script)`` as a param, so an edit anywhere in that import
closure reruns exactly the jobs whose code changed. Derived from the imports, never listed by
hand. Standard library only: it runs when the Snakefile is parsed.
"""

from __future__ import annotations

import ast
import functools
import hashlib
from pathlib import Path

PACKAGE = "interpflow"


def module_file(lib: Path, dotted: str) -> Path | None:
    """``interpflow.a.b`` -> ``lib/a/b.py`` or ``lib/a/b/__init__.py`` (None if neither)."""
    parts = dotted.split(".")[1:]
    base = lib.joinpath(*parts) if parts else lib
    for path in (base.with_suffix(".py"), base / "__init__.py"):
        if path.is_file():
            return path
    return None


def _module_name(lib: Path, path: Path) -> str:
    rel = path.relative_to(lib).with_suffix("")
    parts = [p for p in rel.parts if p != "__init__"]
    return ".".join([PACKAGE, *parts])


@functools.cache
def _imports(path: Path, lib: Path) -> tuple[Path, ...]:
    """The interpflow module files ``path`` imports directly."""
    tree = ast.parse(path.read_text(), filename=str(path))
    in_lib = lib in path.parents
    here = _module_name(lib, path) if in_lib else ""
    is_pkg = path.name == "__init__.py"
    names: list[str] = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names += [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                if not in_lib:
                    continue
                parts = here.split(".")
                drop = node.level - 1 if is_pkg else node.level
                base = ".".join(parts[: len(parts) - drop] if drop else parts)
                module = f"{base}.{node.module}" if node.module else base
            else:
                module = node.module or ""
            names.append(module)
            names += [f"{module}.{a.name}" for a in node.names]  # `from pkg import module`
    out = set()
    for name in names:
        if name == PACKAGE or name.startswith(PACKAGE + "."):
            # `import interpflow.a.b` also runs interpflow/__init__ and interpflow/a/__init__
            parts = name.split(".")
            for i in range(1, len(parts) + 1):
                f = module_file(lib, ".".join(parts[:i]))
                if f is not None:
                    out.add(f)
    return tuple(sorted(out))


def import_closure(script: str | Path, lib: str | Path) -> list[Path]:
    """``script`` and every interpflow module file it reaches through imports, sorted."""
    lib = Path(lib).resolve()
    seen: set[Path] = set()
    stack = [Path(script).resolve()]
    while stack:
        path = stack.pop()
        if path in seen:
            continue
        seen.add(path)
        stack += [p for p in _imports(path, lib) if p not in seen]
    return sorted(seen)


def code_hash(script: str | Path, lib: str | Path) -> str:
    """sha256 (12 hex) over the paths (relative to ``lib``'s parent) and bytes of the closure."""
    root = Path(lib).resolve().parent
    h = hashlib.sha256()
    for path in import_closure(script, lib):
        try:
            rel = path.relative_to(root)
        except ValueError:
            rel = Path(path.name)
        h.update(str(rel).encode() + b"\0" + path.read_bytes() + b"\0")
    return h.hexdigest()[:12]
