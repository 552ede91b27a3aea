"""The base of nsprim's exceptions and the errors of the primitives, the container and the runtime."""

from __future__ import annotations

import errno as _errno
import os

TYPE_CHECKING = False  # typing is not imported at run time: a runtime's error path must be fast too
if TYPE_CHECKING:
    from typing import Any, ClassVar

__all__ = [
    "NsprimError",
    "ConfigError",
    "SyscallError",
    "StepError",
    "ExecutableNotFoundError",
    "ChildDiedError",
    "UnsupportedError",
    "CgroupUnavailableError",
    "NamespaceError",
    "NamespaceTypeError",
    "NoSuchProcessError",
    "CGroupBusyError",
    "TimeoutExpired",
    "CGroupTimeoutError",
    "SpecError",
    "ContainerNotFoundError",
    "ContainerExistsError",
    "ContainerStateError",
    "HookError",
    "SecurityConfigError",
    "UnknownCapabilityError",
    "SeccompProfileError",
    "UnknownSyscallError",
    "BPFError",
    "NoSuchContainerError",
    "ContainerRunningError",
    "describe_errno",
]


def describe_errno(err: int) -> str:
    """Return the C library's text for *err* ("Operation not permitted")."""
    try:
        return os.strerror(err)
    except ValueError:  # pragma: no cover - out of range errno
        return f"errno {err}"


class NsprimError(Exception):
    """Root of every exception nsprim raises.

    ``errno``, ``step`` and ``path`` are ``None`` where they do not apply.
    """

    errno: int | None = None
    step: object = None  # the plan step (nsprim.plan) that failed
    path: str | None = None


class ConfigError(NsprimError, ValueError):
    """Invalid input, detected before any system call.

    ``what`` names the offending field or argument when known.
    """

    def __init__(self, message: str, *, what: str | None = None) -> None:
        super().__init__(message)
        self.what = what


class SyscallError(NsprimError, OSError):
    """The kernel refused an operation.

    Behaves as an :class:`OSError` (``errno``, ``strerror``, ``filename``), so
    existing ``except OSError`` code keeps working, and adds ``operation``
    (the verb) and ``detail`` (the whole phrase before the reason, when the
    verb and one path do not say enough: "mount `proc` on `/x/proc`").
    """

    # NsprimError's class-level placeholders must not hide OSError's own slots.
    errno = OSError.errno
    strerror = OSError.strerror
    filename = OSError.filename

    # Hints for the errors people meet most often, keyed by (operation, errno).
    _HINTS: ClassVar[dict[tuple[str, int], str]] = {
        ("pivot_root", _errno.EINVAL): "is it a mount point?",
        ("setns", _errno.EINVAL): "is the namespace of the expected type, and the process single-threaded?",
        ("unshare", _errno.EINVAL): "user and mount namespaces need a single-threaded process",
        ("mount", _errno.ENODEV): "is that file system type known to the kernel?",
        ("exec", _errno.ENOENT): "no such executable",
        ("exec", _errno.EACCES): "is it executable?",
        ("mkdir", _errno.EROFS): "the root is read-only: create the mount point in the image, or use an overlay root",
        ("setuid", _errno.EINVAL): "that uid is not mapped in the user namespace",
        ("setgid", _errno.EINVAL): "that gid is not mapped in the user namespace",
    }

    def __init__(
        self,
        err: int | None,
        operation: str,
        path: str | os.PathLike[str] | None = None,
        *,
        detail: str | None = None,
        hint: str | None = None,
    ) -> None:
        if not err:  # an OSError without errno: say "I/O error" rather than "Success"
            err = _errno.EIO
        strerror = describe_errno(err)
        fspath = os.fspath(path) if path is not None else None
        super().__init__(err, strerror, fspath)
        self.operation = operation
        self.path = fspath
        self.detail = detail
        self.hint = hint if hint is not None else self._HINTS.get((operation, err))

    def __str__(self) -> str:
        # detail, when given, is the whole phrase: "mount `proc` on `/x/proc`".
        if self.detail:
            head = self.detail
        elif self.path is not None:
            head = f"{self.operation} `{self.path}`"
        else:
            head = self.operation
        text = f"{head}: {self.strerror}"
        if self.hint:
            text += f" ({self.hint})"
        return text

    def __reduce__(self) -> tuple[Any, ...]:  # keep the keyword arguments across pickling
        return (_rebuild_syscall_error, (type(self), self.errno, self.operation, self.path, self.detail, self.hint))


def _rebuild_syscall_error(
    cls: type[SyscallError], err: int, operation: str, path: str | None, detail: str | None, hint: str | None
) -> SyscallError:
    return cls(err, operation, path, detail=detail, hint=hint)


class StepError(SyscallError):
    """A step of a spawn plan failed in the child before ``exec``.

    ``step`` is the step object (see :mod:`nsprim.plan`), ``index`` its position in the plan, ``part``
    which part of a composite step failed (``nsprim._sys.spawn.StepPart``; 0 for a step of one part).
    The message names the step and its path, or the part that failed, e.g. "mount in root:
    resolving target `/proc`: No such file or directory"."""

    def __init__(self, err: int, step: object, index: int, part: int = 0) -> None:
        describe = getattr(step, "describe_failure", None)
        if callable(describe):
            detail = describe(part, err)
        else:
            describe = getattr(step, "describe", None)
            detail = describe() if callable(describe) else str(step)
        operation = getattr(step, "operation", type(step).__name__.lower())
        path = getattr(step, "path", None)
        super().__init__(err, operation, path if isinstance(path, (str, os.PathLike)) else None, detail=detail)
        if self.hint is None and err == _errno.EOVERFLOW:  # whatever the step: an id with no mapping
            self.hint = (
                "an id not mapped in the user namespace: the process' own uid or gid, or the owner of a file "
                "it makes or uses, has no id in the namespace's uid_map or gid_map"
            )
        self.step = step
        self.index = index
        self.part = part

    def __str__(self) -> str:
        return f"{super().__str__()} [plan step {self.index}]"

    def __reduce__(self) -> tuple[Any, ...]:
        return (type(self), (self.errno, self.step, self.index, self.part))


class ExecutableNotFoundError(StepError, FileNotFoundError):
    """The program to execute does not exist (a failed ``exec`` step).

    For a name searched in a ``PATH`` the message says which, e.g.
    "exec `cmd`: not found in the container's PATH `/usr/bin:/bin`".
    """

    def __init__(self, err: int, step: object, index: int, part: int = 0) -> None:
        super().__init__(err, step, index, part)
        searched = getattr(step, "searched", None)
        path = searched() if callable(searched) else None
        owner = getattr(step, "search_owner", "PATH")
        self.reason = f"not found in {owner} `{path}`" if isinstance(path, str) else None

    def __str__(self) -> str:
        if self.reason is None:
            return super().__str__()
        return f"{self.detail}: {self.reason} [plan step {self.index}]"


class ChildDiedError(StepError):
    """The child died between ``clone`` and ``exec`` without reporting a failed step.

    Killed by a signal (the OOM killer's ``SIGKILL`` when a memory limit is too
    small for the setup, say) or exited.  ``step`` and ``index`` are the step
    it was at (None and -1: not known), ``signal`` the signal that killed it (or None) and
    ``exit_status`` its exit status otherwise; ``errno`` is ``ECHILD``.
    """

    def __init__(
        self,
        step: object,
        index: int,
        *,
        signal: int | None = None,
        exit_status: int | None = None,
        hint: str | None = None,
    ) -> None:
        super().__init__(_errno.ECHILD, step, index)
        self.signal = signal
        self.exit_status = exit_status
        self.hint = hint

    @property
    def cause(self) -> str:
        """How the child ended: "killed by SIGKILL", "exit status 1"."""
        if self.signal is not None:
            import signal as _signal  # signal imports enum: not on every error's path

            try:
                name = _signal.Signals(self.signal).name
            except ValueError:
                name = f"signal {self.signal}"
            return f"killed by {name}"
        if self.exit_status is None:  # not our child (a detached container's monitor is its parent)
            return "killed, or exited"
        return f"exit status {self.exit_status}"

    def __str__(self) -> str:
        if self.step is None and self.index < 0:  # (a zygote's fork keeps no record of its progress)
            text = f"the child died during its setup, before its payload ({self.cause}); at a step not known"
        elif self.step is None:
            text = f"the child died at its start, before its first step ({self.cause})"
        else:
            head = self.detail or self.operation
            text = f"{head}: the child died during setup, before exec ({self.cause}) [plan step {self.index}]"
        return f"{text} ({self.hint})" if self.hint else text

    def __reduce__(self) -> tuple[Any, ...]:
        return (_rebuild_child_died, (type(self), self.step, self.index, self.signal, self.exit_status, self.hint))


def _rebuild_child_died(
    cls: type[ChildDiedError], step: object, index: int, sig: int | None, status: int | None, hint: str | None
) -> ChildDiedError:
    return cls(step, index, signal=sig, exit_status=status, hint=hint)


class UnsupportedError(NsprimError):
    """The kernel or this host does not offer a needed feature."""

    def __init__(self, message: str, *, feature: str | None = None) -> None:
        super().__init__(message)
        self.feature = feature


class CgroupUnavailableError(UnsupportedError):
    """Resource limits were asked for, and no cgroup the caller may write exists to enforce them.

    ``settings`` names the limits (``"memory"``, ``"cpu"``, ``"pids"``...),
    ``reason`` why no group can be made, ``fix`` what would make one possible.
    """

    def __init__(self, settings: tuple[str, ...], reason: str, fix: str) -> None:
        names = ", ".join(f"the {s} limit" for s in settings)
        verb = "needs" if len(settings) == 1 else "need"
        super().__init__(f"{names} {verb} a cgroup you can write: {reason}; {fix}", feature="cgroup")
        self.settings = settings
        self.reason = reason
        self.fix = fix


class NamespaceError(SyscallError):
    """A namespace could not be opened, entered or persisted."""


class NamespaceTypeError(ConfigError):
    """A namespace of one type was given where another was expected."""


class NoSuchProcessError(SyscallError, ProcessLookupError):
    """No process has the given pid (or it exited)."""


ProcessLookupFailed = NoSuchProcessError
"""Deprecated alias of :class:`NoSuchProcessError`, kept for one release."""


class CGroupBusyError(SyscallError):
    """A group could not be deleted because processes (or child groups) remain (errno ``EBUSY``)."""


class TimeoutExpired(NsprimError, TimeoutError):
    """A wait ran out of time.

    ``killed`` says what happened next: ``False``, the process is still
    running (a plain wait); ``True``, it was killed for it (``run(timeout=)``).
    ``name`` names a container instead of the bare pid.
    """

    def __init__(self, pid: int, timeout: float, *, killed: bool = False, name: str | None = None) -> None:
        who = f"container `{name}`" if name else f"process {pid}"
        text = f"{who} killed after {timeout:g} s timeout" if killed else f"{who} still running after {timeout:g} s"
        super().__init__(text)
        self.pid = pid
        self.timeout = timeout
        self.killed = killed
        self.name = name

    def __reduce__(self) -> tuple[Any, ...]:
        return (_rebuild_timeout, (self.pid, self.timeout, self.killed, self.name))


def _rebuild_timeout(pid: int, timeout: float, killed: bool, name: str | None) -> TimeoutExpired:
    return TimeoutExpired(pid, timeout, killed=killed, name=name)


class CGroupTimeoutError(TimeoutExpired):
    """A wait on a cgroup ran out of time (a :class:`TimeoutExpired`).

    ``pid`` is -1 (no single process is meant); ``path`` names the cgroup
    and ``what`` the awaited condition.
    """

    def __init__(self, what: str, path: str | os.PathLike[str], timeout: float) -> None:
        super().__init__(-1, timeout)
        self.what = what
        self.path = os.fspath(path)
        self.args = (f"wait for {what} of `{self.path}`: still not there after {timeout:g} s",)


CGroupTimeout = CGroupTimeoutError
"""Deprecated alias of :class:`CGroupTimeoutError`, kept for one release."""


class SpecError(ConfigError):
    """An OCI document (``config.json``, a process or resources file) is invalid.

    ``field`` is the path of the offending field from the document's root
    (``linux.namespaces[2].type``), or ``None`` for the document as a whole.
    """

    def __init__(self, message: str, *, field: str | None = None) -> None:
        super().__init__(message, what=field)
        self.field = field


class ContainerNotFoundError(NsprimError, LookupError):
    """No container has this id in the OCI runtime's state directory (``nsprim-runtime --root``)."""

    def __init__(self, container_id: str, root: str | None = None) -> None:
        where = f" in `{root}`" if root else ""
        super().__init__(f"container `{container_id}` does not exist{where}")
        self.container_id = container_id
        self.path = root


class ContainerExistsError(ConfigError):
    """A container with this id already exists: OCI container ids are unique on a host."""

    def __init__(self, container_id: str, root: str | None = None) -> None:
        where = f" in `{root}`" if root else ""
        super().__init__(
            f"container `{container_id}` already exists{where} (delete it first, or pick another id)", what="id"
        )
        self.container_id = container_id
        self.path = root


class ContainerStateError(NsprimError):
    """The container's status does not allow the operation (the runtime spec's lifecycle):
    ``kill`` of a stopped container, ``delete`` of a running one without ``--force``.

    ``status`` is the container's status, as ``state`` reports it.
    """

    def __init__(self, message: str, *, container_id: str, status: str) -> None:
        super().__init__(message)
        self.container_id = container_id
        self.status = status


class HookError(NsprimError):
    """An OCI hook (``config.json``'s ``hooks``) failed: it exited non-zero, was killed, timed
    out, or could not be started.  ``kind`` is the hook's kind (``prestart``...), ``path`` its program."""

    def __init__(self, message: str, *, kind: str, path: str) -> None:
        super().__init__(message)
        self.kind = kind
        self.path = path


class SecurityConfigError(ConfigError):
    """Base of the security layer's configuration errors.

    Raised before anything reaches the kernel; ``what`` names the offending
    entry, in the profile's own terms ("syscalls[3].names[1]").
    """


class UnknownCapabilityError(SecurityConfigError):
    """A capability name that is not one of the kernel's (``CAP_FOO``)."""

    def __init__(self, name: str, *, where: str | None = None) -> None:
        prefix = f"{where}: " if where else ""
        super().__init__(f"{prefix}unknown capability `{name}`", what=where or name)
        self.name = name


class SeccompProfileError(SecurityConfigError):
    """A malformed seccomp profile; the message starts with the entry's path."""

    def __init__(self, where: str, reason: str) -> None:
        super().__init__(f"seccomp profile: {where}: {reason}" if where else f"seccomp profile: {reason}", what=where)
        self.where = where
        self.reason = reason


class UnknownSyscallError(SeccompProfileError):
    """A system call name unknown for the filter's architectures."""

    def __init__(self, name: str, arch: str, where: str = "") -> None:
        super().__init__(where, f"unknown syscall `{name}` for {arch}")
        self.name = name
        self.arch = arch


class BPFError(SecurityConfigError):
    """A classic-BPF program the kernel's checker would refuse (a jump out of the
    program, an instruction seccomp does not allow, a bad load offset)."""

    def __init__(self, reason: str) -> None:
        super().__init__(f"BPF program: {reason}", what="program")
        self.reason = reason


class NoSuchContainerError(NsprimError, LookupError):
    """No detached container has this name: ``name`` is the name looked for, ``directory`` where
    containers' entries are."""

    def __init__(self, name: str, directory: str | os.PathLike[str] | None = None) -> None:
        where = f" in `{os.fspath(directory)}`" if directory is not None else ""
        super().__init__(f"no container named `{name}`{where} (see `nsprim ps -a`)")
        self.name = name
        self.directory = None if directory is None else os.fspath(directory)


class ContainerRunningError(NsprimError):
    """The container still runs, and the operation needs it ended."""

    def __init__(self, name: str) -> None:
        super().__init__(f"remove `{name}`: the container is running (stop it first, or use -f)")
        self.name = name
