"""How the ``nsprim`` commands report an error: one line, and the exit status engines expect."""

from __future__ import annotations

from ..errors import CgroupUnavailableError, ExecutableNotFoundError, NsprimError, StepError

__all__ = ["message", "error_status"]

_FLAGS = {"memory": "--memory", "cpu": "--cpus", "pids": "--pids"}


def message(exc: NsprimError) -> str:
    """The error's one line, naming the options where the API names settings."""
    if isinstance(exc, CgroupUnavailableError):
        flags = ", ".join(_FLAGS.get(s, s) for s in exc.settings)
        verb = "needs" if len(exc.settings) == 1 else "need"
        return f"{flags} {verb} a cgroup you can write: {exc.reason}; {exc.fix}"
    return str(exc)


def error_status(command: str, exc: NsprimError) -> int:
    """Exit statuses as docker and podman use them: 127 no such command, 126
    not executable, 125 the runtime itself failed."""
    if command not in ("run", "ns"):
        return 1
    if isinstance(exc, ExecutableNotFoundError):
        return 127
    if isinstance(exc, StepError) and exc.operation == "exec":
        return 126
    return 125
