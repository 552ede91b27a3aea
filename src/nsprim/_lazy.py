"""Names of a package imported from its modules when first used (PEP 562).

A command line is started again and again and should import only what its
command needs; a package that re-exports its modules' names eagerly makes
every user of one module import all the others.
"""

from __future__ import annotations

import importlib
import sys
from collections.abc import Callable, Iterable, Mapping

__all__ = ["lazy_names", "names_of"]


def names_of(module: str, names: Iterable[str]) -> dict[str, str]:
    """``{name: module}`` for each of *names*: a part of the table :func:`lazy_names` takes."""
    return dict.fromkeys(names, module)


def lazy_names(
    package: str, table: Mapping[str, str], *, fallback: Callable[[str], object] | None = None
) -> tuple[Callable[[str], object], Callable[[], list[str]]]:
    """The ``__getattr__`` and ``__dir__`` of *package*: each name of *table* comes from its
    module (relative to *package*, or absolute when it starts with ``nsprim``), imported
    on first use and then kept in the package; other names go to *fallback*."""

    def getattr_(name: str) -> object:
        module = table.get(name)
        if module is None:
            if fallback is not None:
                return fallback(name)
            raise AttributeError(f"module {package!r} has no attribute {name!r}")
        where = module if module.startswith("nsprim") else f"{package}.{module}"
        value = getattr(importlib.import_module(where), name)
        setattr(sys.modules[package], name, value)
        return value

    def dir_() -> list[str]:
        return sorted({*vars(sys.modules[package]), *table})

    return getattr_, dir_
