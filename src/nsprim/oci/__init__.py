"""The container format: the OCI runtime specification as typed Python values.

:class:`Spec` is a whole ``config.json``; :func:`default_spec` is what
``runc spec`` writes; :class:`State` is what ``state ID`` prints.

The model loads on first use of any of its names: ``nsprim-runtime``, whose
``state`` and ``list`` never need it, imports this package on every call.
"""

from __future__ import annotations

TYPE_CHECKING = False
if TYPE_CHECKING:
    from .generate import DEFAULT_MASKED_PATHS, DEFAULT_READONLY_PATHS, default_spec
    from .spec import *  # noqa: F403
    from .spec import __all__ as _spec_all
    from .state import State, Status

    __all__ = [*_spec_all, "DEFAULT_MASKED_PATHS", "DEFAULT_READONLY_PATHS", "default_spec", "State", "Status"]

_MODULES = ("spec", "generate", "state")


def _load() -> list[str]:
    import importlib

    names: list[str] = []
    for name in _MODULES:
        module = importlib.import_module(f".{name}", __name__)
        for public in module.__all__:
            globals()[public] = getattr(module, public)
            if public not in names:
                names.append(public)
    globals()["__all__"] = names
    return names


def __getattr__(name: str) -> object:
    if name == "__all__" or not name.startswith("_"):
        names = _load()
        if name == "__all__":
            return names
        if name in names:
            return globals()[name]
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted({*globals(), *_load()})
