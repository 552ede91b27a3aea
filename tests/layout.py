"""The import graph of ``src/nsprim``, read with :mod:`ast` (nothing is imported).

Every import counts: at module level, inside functions and under
``TYPE_CHECKING``.  ``from pkg import name`` counts as importing the submodule
``pkg.name`` when there is one, and as importing ``pkg`` otherwise.
"""

from __future__ import annotations

import ast
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PKG = ROOT / "src" / "nsprim"
NATIVE = ROOT / "_native"

# Generated, not hand-written: the per-architecture system call tables.
GENERATED = frozenset(PKG.glob("security/seccomp/_table_*.py"))
MAX_LINES = 600


@dataclass(frozen=True)
class Import:
    """One import: which module imports which, and the names it takes from it."""

    importer: str
    imported: str
    name: str | None
    line: int


def module_name(path: Path) -> str:
    parts = list(path.relative_to(PKG.parent).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def modules() -> dict[str, Path]:
    return {module_name(p): p for p in sorted(PKG.rglob("*.py"))}


def _resolve(importer: str, is_package: bool, level: int, module: str | None) -> str:
    if level == 0:
        return module or ""
    base = importer.split(".")
    if not is_package:
        base.pop()
    for _ in range(level - 1):
        base.pop()
    return ".".join([*base, module] if module else base)


def imports() -> list[Import]:
    known = modules()
    found: list[Import] = []
    for name, path in known.items():
        is_package = path.name == "__init__.py"
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.Import):
                found += [Import(name, a.name, None, node.lineno) for a in node.names if a.name.startswith("nsprim")]
            elif isinstance(node, ast.ImportFrom):
                target = _resolve(name, is_package, node.level, node.module)
                if not target.startswith("nsprim"):
                    continue
                for alias in node.names:
                    sub = f"{target}.{alias.name}"
                    if sub in known:
                        found.append(Import(name, sub, None, node.lineno))
                    else:
                        found.append(Import(name, target, alias.name, node.lineno))
    return found


def cycles() -> list[list[str]]:
    """The strongly connected components of more than one module (Tarjan's algorithm)."""
    graph: dict[str, set[str]] = {m: set() for m in modules()}
    for imp in imports():
        if imp.imported in graph and imp.imported != imp.importer:
            # A package's __init__ importing its own submodules is how packages re-export.
            if imp.imported.startswith(imp.importer + ".") and modules()[imp.importer].name == "__init__.py":
                continue
            graph[imp.importer].add(imp.imported)
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    components: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in sorted(graph[v]):
            if w not in index:
                visit(w)
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
                components.append(sorted(component))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return components


def private_imports() -> list[Import]:
    """Imports of another module's ``_private`` name (``_sys``-like private modules are fine)."""
    return [
        imp
        for imp in imports()
        if imp.name is not None
        and imp.name.startswith("_")
        and not imp.name.startswith("__")
        and imp.imported != imp.importer
        and f"{imp.imported}.{imp.name}" not in modules()
        and not _is_extension(imp.imported, imp.name)
    ]


def _is_extension(package: str, name: str) -> bool:
    """A compiled module of the package (the C core), known by its stub."""
    return (PKG.parent.joinpath(*package.split(".")) / f"{name}.pyi").exists()


def long_files() -> dict[Path, int]:
    files = [*PKG.rglob("*.py"), *NATIVE.glob("*.[ch]")]
    lengths = {p: len(p.read_text().splitlines()) for p in files if p not in GENERATED}
    return {p: n for p, n in sorted(lengths.items()) if n > MAX_LINES}
