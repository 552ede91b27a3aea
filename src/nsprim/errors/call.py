"""The errors of a call into a sandbox (:mod:`nsprim.call`), under :class:`CallError`."""

from __future__ import annotations

from .base import NsprimError

TYPE_CHECKING = False  # typing is not imported at run time: a runtime's error path must be fast too
if TYPE_CHECKING:
    from collections.abc import Callable

    from ..cgroup import Stats

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


class CallError(NsprimError):
    """A function run in a sandbox (:mod:`nsprim.call`) did not return a value."""


class RemoteError(CallError):
    """The function raised inside the sandbox.

    ``remote_type`` is the exception's qualified type name (``"ValueError"``,
    ``"mymodule.Oops"``), ``remote_message`` its ``str()``, ``remote_traceback``
    the traceback as the sandbox formatted it, and ``remote_args`` its
    ``args`` where they were plain values (else ``None``).  Nothing of it is
    unpickled: the type is a name, not a class.
    """

    def __init__(
        self, remote_type: str, remote_message: str, remote_traceback: str, remote_args: tuple[object, ...] | None
    ) -> None:
        super().__init__(f"{remote_type}: {remote_message}" if remote_message else remote_type)
        self.remote_type = remote_type
        self.remote_message = remote_message
        self.remote_traceback = remote_traceback
        self.remote_args = remote_args

    def __reduce__(self) -> tuple[Callable[..., RemoteError], tuple[object, ...]]:
        return (type(self), (self.remote_type, self.remote_message, self.remote_traceback, self.remote_args))

    def __str__(self) -> str:
        head = super().__str__()
        return f"{head}\n\nRemote traceback (most recent call last, inside the sandbox):\n{self.remote_traceback}"


class UnsafeResultError(CallError):
    """The sandbox's answer was refused without being read as code: malformed, too big, too deep,
    a pickle the caller did not trust, or of a type the result format cannot carry (``type_name``,
    else ``None``).  ``reason`` says which."""

    def __init__(self, reason: str, *, type_name: str | None = None) -> None:
        super().__init__(f"call result refused: {reason}")
        self.reason = reason
        self.type_name = type_name

    def __reduce__(self) -> tuple[Callable[..., UnsafeResultError], tuple[object, ...], dict[str, object]]:
        return (type(self), (self.reason,), {"type_name": self.type_name})


class CallDiedError(CallError):
    """The sandbox ended without an answer: ``returncode`` (``-N`` for signal N), ``signal``,
    ``oom_killed`` (the memory limit's OOM killer ended it), ``name``, the container's, and
    ``stats``, its cgroup's totals at the end (a :class:`~nsprim.cgroup.Stats`, or ``None``)."""

    def __init__(
        self, name: str, returncode: int | None, *, oom_killed: bool = False, message: str | None = None
    ) -> None:
        if message is None:
            if oom_killed:
                how = "killed by the OOM killer (memory limit)"
            elif returncode is not None and returncode < 0:
                how = f"killed by signal {-returncode}"
            else:
                how = f"exited with status {returncode}"
            message = f"call in container `{name}`: {how} without returning"
        super().__init__(message)
        self.name = name
        self.returncode = returncode
        self.signal = -returncode if returncode is not None and returncode < 0 else None
        self.oom_killed = oom_killed
        self.stats: Stats | None = None

    def __reduce__(self) -> tuple[Callable[..., CallDiedError], tuple[object, ...], dict[str, object]]:
        return (_rebuild, (type(self), str(self)), dict(vars(self)))


class CallTimeoutError(CallDiedError, TimeoutError):
    """The call ran longer than its ``timeout`` (seconds); its container was killed."""

    def __init__(self, name: str, timeout: float, returncode: int | None = None) -> None:
        super().__init__(name, returncode, message=f"call in container `{name}`: killed after {timeout:g} s timeout")
        self.timeout = timeout


class CallCancelledError(CallDiedError):
    """The call was stopped while it ran (by :meth:`SandboxExecutor.shutdown
    <nsprim.call.executor.SandboxExecutor.shutdown>` with ``cancel_futures=True``, or its future's
    ``cancel()``); its container was killed."""

    def __init__(self, name: str, returncode: int | None = None) -> None:
        super().__init__(name, returncode, message=f"call in container `{name}`: killed, the call was cancelled")


class PythonNotFoundError(CallError, FileNotFoundError):
    """No ``python3`` in the container's root: ``path`` names the root searched."""

    def __init__(self, root: str, looked: tuple[str, ...]) -> None:
        super().__init__(f"call: no python3 in the root `{root}` (looked for {', '.join(looked)})")
        self.path = root
        self.looked = looked

    def __reduce__(self) -> tuple[Callable[..., PythonNotFoundError], tuple[object, ...]]:
        return (type(self), (self.path, self.looked))


class PythonVersionError(CallError):
    """The root's Python is not the caller's version (both ``major.minor`` strings): pickles and
    functions pass between the two only when they match."""

    def __init__(self, interpreter: str, root_version: str, host_version: str) -> None:
        super().__init__(
            f"call: `{interpreter}` in the container is Python {root_version}, this process is Python "
            f"{host_version} (a call needs the same version inside)"
        )
        self.path = interpreter
        self.root_version = root_version
        self.host_version = host_version

    def __reduce__(self) -> tuple[Callable[..., PythonVersionError], tuple[object, ...]]:
        return (type(self), (self.path, self.root_version, self.host_version))


def _rebuild(cls: type[CallDiedError], message: str) -> CallDiedError:
    """A :class:`CallDiedError` (or subclass) with *message*, its attributes set by pickle after."""
    err = cls.__new__(cls)
    Exception.__init__(err, message)
    return err


# One module to the user (see the package): named, printed and pickled as nsprim.errors.X.
for _name in __all__:
    globals()[_name].__module__ = "nsprim.errors"
del _name
