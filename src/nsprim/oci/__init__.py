"""The container format: the OCI runtime specification as typed Python values.

:class:`Spec` is a whole ``config.json``; :func:`default_spec` is what
``runc spec`` writes; :class:`State` is what ``state ID`` prints;
:class:`Bundle` runs a bundle from Python and :func:`write_bundle` writes a
container's configuration as one.

The model loads on first use of any of its names: ``nsprim-runtime``, whose
``state`` and ``list`` never need it, imports this package on every call.
"""

from __future__ import annotations

TYPE_CHECKING = False
if TYPE_CHECKING:
    from .bundle import Bundle, spec_of, write_bundle
    from .generate import DEFAULT_MASKED_PATHS, DEFAULT_READONLY_PATHS, default_spec
    from .spec import *  # noqa: F403
    from .spec import __all__ as _spec_all
    from .state import State, Status

    __all__ = [
        *_spec_all,
        "DEFAULT_MASKED_PATHS",
        "DEFAULT_READONLY_PATHS",
        "default_spec",
        "State",
        "Status",
        "Bundle",
        "spec_of",
        "write_bundle",
    ]

_MODULES = ("spec", "generate", "state")
# The bundle's names bring the container layer with them: loaded on their own first use only.
_BUNDLE = ("Bundle", "spec_of", "write_bundle")


def _load() -> list[str]:
    import importlib

    names: list[str] = []
    for name in _MODULES:
        module = importlib.import_module(f".{name}", __name__)
        for public in module.__all__:
            globals()[public] = getattr(module, public)
            if public not in names:
                names.append(public)
    names += _BUNDLE
    globals()["__all__"] = names
    return names


def __getattr__(name: str) -> object:
    if name in _BUNDLE:
        from . import bundle

        return getattr(bundle, name)
    if name == "__all__" or not name.startswith("_"):
        names = _load()
        if name == "__all__":
            return names
        if name in names:
            return globals()[name]
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted({*globals(), *_load()})
