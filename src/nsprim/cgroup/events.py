"""Waiting for cgroup events: file-modification notification, OOM counters, emptiness.

cgroup v2 notifies ``inotify`` watchers when ``cgroup.events`` or
``memory.events`` change, so waits there cost nothing while idle.  cgroup
v1 files do not notify; waits on them poll with a short interval.  inotify
is reached through the C core (:func:`nsprim._sys.inotify_init1`); where it
fails (no descriptors left, a file that cannot be watched) the code polls.
"""

from __future__ import annotations

import errno
import os
import select
import time
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Final

from nsprim import _sys
from nsprim._sys import C
from nsprim.cgroup import files
from nsprim.errors import CGroupTimeout as CGroupTimeout  # deprecated alias, kept for one release
from nsprim.errors import CGroupTimeoutError, SyscallError

from .._dataclass import dataclass

__all__ = [
    "MemoryEvents",
    "CGroupTimeoutError",
    "FileChangeWaiter",
    "wait_until",
    "read_memory_events",
    "read_oom_kills",
    "wait_oom_kill",
]

_POLL_INTERVAL_V1: Final = 0.01
_POLL_INTERVAL_MAX: Final = 0.25


@dataclass(frozen=True)
class MemoryEvents:
    """Memory event counters of a group (hierarchical: descendants included).

    On cgroup v2 from ``memory.events``; on v1 ``oom_kill`` and
    ``under_oom`` come from ``memory.oom_control`` and ``max`` from
    ``memory.failcnt``.  Counters the host does not provide are None.
    """

    oom_kill: int
    oom: int | None = None
    max: int | None = None
    high: int | None = None
    low: int | None = None
    oom_group_kill: int | None = None
    under_oom: bool | None = None


class FileChangeWaiter:
    """Block until one of some files is modified (inotify), or a timeout passes.

    A context manager; the inotify descriptor is closed on exit.  Files that
    cannot be watched are ignored; :attr:`active` tells if anything is watched.
    """

    def __init__(self, paths: Iterable[Path]) -> None:
        self._fd = -1
        self.active = False
        try:
            self._fd = _sys.inotify_init1(C.IN_CLOEXEC | C.IN_NONBLOCK)
        except SyscallError:
            return
        for p in paths:
            try:
                _sys.inotify_add_watch(self._fd, p, C.IN_MODIFY)
            except SyscallError:
                continue
            self.active = True

    def __enter__(self) -> FileChangeWaiter:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        """Release the inotify descriptor."""
        if self._fd >= 0:
            os.close(self._fd)
            self._fd = -1

    def wait(self, timeout: float) -> bool:
        """Wait up to *timeout* seconds for a modification; True if one came."""
        if not self.active:
            time.sleep(max(0.0, timeout))
            return False
        poller = select.poll()
        poller.register(self._fd, select.POLLIN)
        ready = poller.poll(max(0, int(timeout * 1000)))
        if ready:
            try:
                while os.read(self._fd, 4096):
                    pass
            except BlockingIOError:
                pass
            except OSError as exc:  # pragma: no cover - defensive
                if exc.errno != errno.EAGAIN:
                    raise
            return True
        return False


def wait_until(
    predicate: Callable[[], bool],
    *,
    timeout: float | None,
    what: str,
    path: Path,
    notify: Iterable[Path] = (),
) -> None:
    """Return once *predicate* is true, re-checking when a file in *notify* changes.

    Without notifying files the predicate is polled every 10 ms.  With
    ``timeout=None`` waits forever; otherwise raises :class:`~nsprim.errors.CGroupTimeoutError`.
    """
    if predicate():  # the usual case: no inotify instance, whose close waits for the kernel (~10 ms)
        return
    deadline = None if timeout is None else time.monotonic() + timeout
    watched = [p for p in notify if p.exists()]
    with FileChangeWaiter(watched) as watcher:
        interval = _POLL_INTERVAL_MAX if watcher.active else _POLL_INTERVAL_V1
        while not predicate():
            if deadline is None:
                step = interval
            else:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise CGroupTimeoutError(what, path, timeout if timeout is not None else 0.0)
                step = min(interval, remaining)
            watcher.wait(step)


def read_memory_events(version: int, directory: Path) -> MemoryEvents:
    """Read the memory event counters of the memory-controller *directory* of a group."""
    if version == 2:
        e = files.read_keyed(directory / "memory.events")
        return MemoryEvents(
            oom_kill=e.get("oom_kill", 0),
            oom=e.get("oom"),
            max=e.get("max"),
            high=e.get("high"),
            low=e.get("low"),
            oom_group_kill=e.get("oom_group_kill"),
        )
    oc = files.read_keyed(directory / "memory.oom_control")
    failcnt = files.read_int(directory / "memory.failcnt")
    return MemoryEvents(oom_kill=oc.get("oom_kill", 0), max=failcnt, under_oom=bool(oc.get("under_oom", 0)))


def read_oom_kills(version: int, directory: Path) -> int:
    """The OOM-kill counter alone (v2 ``memory.events``, v1 ``memory.oom_control``)."""
    name = "memory.events" if version == 2 else "memory.oom_control"
    return files.read_keyed(directory / name).get("oom_kill", 0)


def wait_oom_kill(version: int, directory: Path, *, since: int | None, timeout: float | None) -> int:
    """Wait until the OOM-kill counter in *directory* exceeds *since* (default: its value now); return it."""
    base = read_memory_events(version, directory).oom_kill if since is None else since
    result = [base]

    def seen() -> bool:
        result[0] = read_memory_events(version, directory).oom_kill
        return result[0] > base

    notify = [directory / "memory.events"] if version == 2 else []
    wait_until(seen, timeout=timeout, what="an OOM kill", path=directory, notify=notify)
    return result[0]


def __getattr__(name: str) -> type[FileChangeWaiter]:
    if name == "FileWatcher":  # the old name, kept for one release
        import warnings

        warnings.warn(
            "nsprim.cgroup.events.FileWatcher is now FileChangeWaiter; the old name goes in the next release",
            DeprecationWarning,
            stacklevel=2,
        )
        return FileChangeWaiter
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
