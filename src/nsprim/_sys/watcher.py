"""The cleanup watcher: what dies with this process, and is cleaned up after it.

A container must not outlive its creator unless asked to, and must not leave
its cgroup or scratch directories behind when the creator is killed with
SIGKILL.  ``PR_SET_PDEATHSIG`` alone cannot promise that (it fires when the
creating *thread* exits, and misses a parent that died before it was set).
Instead, the first registration starts one small watcher process per Python
process (C code in the core, no exec, reparented away from us).  It holds a
pidfd of this process; when this process dies it kills the registered
processes and cgroups and removes the registered directory trees.  Owners
that clean up themselves ``forget`` their registrations.
"""

from __future__ import annotations

import _thread
import errno
import os
import sys

from ._lib import ffi, lib

TYPE_CHECKING = False  # neither pathlib nor collections: a runtime's `create` registers its groups here
if TYPE_CHECKING:
    from collections.abc import Iterable

__all__ = [
    "watch_cgroup",
    "watch_cgroups",
    "forget_cgroup",
    "forget_cgroups",
    "watch_pid",
    "forget_pid",
    "watch_tree",
    "forget_tree",
]

# A record: op, pid and the length of the path that follows, as three native ints (`struct` is a
# shared library to load on every runtime command that registers a group).
_ORDER = sys.byteorder
_PATH_MAX = 4088
_lock = _thread.allocate_lock()  # threading's Lock, without the import of threading
_state: dict[str, int] = {}  # "fd" and "owner" (the pid that started it)


def _fd() -> int:
    with _lock:
        if _state.get("owner") == os.getpid():
            return _state["fd"]
        # First use, or we are a fork of the process that started it.
        fdp = ffi.new("int *")
        ret = lib.nsp_watcher_start(fdp)
        if ret < 0:
            from ..errors import SyscallError

            raise SyscallError(-ret, "watcher", detail="start the cleanup watcher")
        _state["fd"] = fdp[0]
        _state["owner"] = os.getpid()
        return _state["fd"]


def _record(op: int, path: str | os.PathLike[str] = "", pid: int = 0) -> bytes:
    raw = os.fsencode(path)
    if raw:
        raw = os.path.normpath(raw)  # as a Path spells it: watch and forget match
    if len(raw) >= _PATH_MAX or b"\0" in raw:
        from ..errors import SyscallError

        raise SyscallError(
            errno.ENAMETOOLONG if len(raw) >= _PATH_MAX else errno.EINVAL,
            "watcher",
            path,
            detail=f"register `{os.fsdecode(raw)}` with the cleanup watcher",
        )
    header = b"".join(n.to_bytes(4, _ORDER, signed=True) for n in (op, pid, len(raw)))
    return header + raw


def _send(*records: bytes) -> None:
    """Write whole records; one write for several (the lock keeps them whole)."""
    data = b"".join(records)
    fd = _fd()
    with _lock:
        view = memoryview(data)
        while view:
            view = view[os.write(fd, view) :]


def watch_cgroup(directory: str | os.PathLike[str]) -> None:
    """Kill the members of, then remove, cgroup *directory* if this process dies."""
    _send(_record(lib.NSP_WATCH_CGROUP, directory))


def watch_cgroups(directories: Iterable[str | os.PathLike[str]]) -> None:
    """:func:`watch_cgroup` for each of *directories* (the hierarchies of one group), in one write."""
    _send(*(_record(lib.NSP_WATCH_CGROUP, d) for d in directories))


def forget_cgroup(directory: str | os.PathLike[str]) -> None:
    """Undo :func:`watch_cgroup`."""
    _send(_record(lib.NSP_WATCH_FORGET_CGROUP, directory))


def forget_cgroups(directories: Iterable[str | os.PathLike[str]]) -> None:
    """Undo :func:`watch_cgroups`."""
    _send(*(_record(lib.NSP_WATCH_FORGET_CGROUP, d) for d in directories))


def watch_pid(pid: int) -> None:
    """SIGKILL *pid* (a child not yet reaped) if this process dies."""
    _send(_record(lib.NSP_WATCH_PID, pid=pid))


def forget_pid(pid: int) -> None:
    """Undo :func:`watch_pid`."""
    _send(_record(lib.NSP_WATCH_FORGET_PID, pid=pid))


def watch_tree(directory: str | os.PathLike[str]) -> None:
    """Remove the directory tree *directory* (one file system) if this process dies."""
    _send(_record(lib.NSP_WATCH_TREE, directory))


def forget_tree(directory: str | os.PathLike[str]) -> None:
    """Undo :func:`watch_tree`."""
    _send(_record(lib.NSP_WATCH_FORGET_TREE, directory))
