"""Thin typed wrappers over the native core: one function per system call.

This package is the only place that touches cffi.  Each wrapper turns the
core's ``-errno`` return into a :class:`~nsprim.errors.SyscallError` that
names the call and its path, and returns plain Python values otherwise.
Higher layers never see cffi objects.

The wrappers and the constants (``C``) live in :mod:`nsprim._sys.core`, and
this package hands them out on first use: a runtime command that replays a
kept plan imports :mod:`~nsprim._sys.plan_rows` and
:mod:`~nsprim._sys.watcher` without them (or the exception classes they raise).
"""

from __future__ import annotations

TYPE_CHECKING = False
if TYPE_CHECKING:
    from .core import *  # noqa: F403
    from .core import __all__ as __all__


# Submodules: `from nsprim._sys import watcher` asks for the attribute first, and must not load core.
_SUBMODULES = frozenset({"_lib", "core", "netlink", "plan_rows", "spawn", "watcher"})


def __getattr__(name: str) -> object:
    if name.startswith("__") or (name in _SUBMODULES and name != "core"):
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    import importlib  # (not `from . import core`: its hasattr would come back here)

    core = importlib.import_module(f"{__name__}.core")
    if name == "core":
        return core
    try:
        value = getattr(core, name)
    except AttributeError:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}") from None
    globals()[name] = value
    return value
