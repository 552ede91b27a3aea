"""Python functions as container payloads: run a function in a fresh container, get its result back.

:meth:`Container.call <nsprim.container.Container.call>` and
:meth:`~nsprim.container.Container.call_result` run one call;
:func:`sandboxed` makes a function that runs in its own container each time;
:class:`SandboxExecutor` runs calls so, a few at a time, as a
:class:`concurrent.futures.Executor`.
What comes back is untrusted: results and exceptions travel in a format that
cannot run code in the caller (:mod:`nsprim.call.wire`), pickles only when
the caller trusts the payload.  See :doc:`/howto/python-payloads`.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from .errors import (
    CallCancelledError,
    CallDiedError,
    CallError,
    CallTimeoutError,
    PythonNotFoundError,
    PythonVersionError,
    RemoteError,
    UnsafeResultError,
)

if TYPE_CHECKING:
    from ..container.calling import CallResult
    from .decorator import SandboxedFunction, sandboxed
    from .executor import SandboxExecutor

# Loaded on first use: nsprim.container.calling imports this package's lower
# modules (wire, payload, answer, errors), and so runs this file first.
_LAZY = {
    "sandboxed": ".decorator",
    "SandboxedFunction": ".decorator",
    "SandboxExecutor": ".executor",
    "CallResult": "..container.calling",
}


def __getattr__(name: str) -> object:
    import importlib

    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(module, __name__), name)
    globals()[name] = value
    return value


__all__ = [
    "sandboxed",
    "SandboxedFunction",
    "SandboxExecutor",
    "CallResult",
    "CallError",
    "RemoteError",
    "UnsafeResultError",
    "CallDiedError",
    "CallTimeoutError",
    "CallCancelledError",
    "PythonNotFoundError",
    "PythonVersionError",
]
