"""The errors of a call into a sandbox, under :class:`~nsprim.errors.CallError` (defined in :mod:`nsprim.errors`)."""

from __future__ import annotations

from ..errors.call import (
    CallCancelledError,
    CallDiedError,
    CallError,
    CallTimeoutError,
    PythonNotFoundError,
    PythonVersionError,
    RemoteError,
    UnsafeResultError,
)

__all__ = [
    "CallError",
    "RemoteError",
    "UnsafeResultError",
    "CallDiedError",
    "CallTimeoutError",
    "CallCancelledError",
    "PythonNotFoundError",
    "PythonVersionError",
]
