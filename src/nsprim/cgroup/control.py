"""Freezing, thawing and killing every process of a group.

Prefers the modern interfaces of the v2 tree (``cgroup.freeze``,
``cgroup.kill``; on a hybrid host the v2 tree offers them even without
controllers) and falls back to the v1 freezer and a race-free signal loop.
The public entry points are the methods of :class:`~nsprim.cgroup.CGroup`.
"""

from __future__ import annotations

import contextlib
import os
import time
from pathlib import Path
from typing import Protocol

from nsprim.cgroup import files
from nsprim.cgroup.events import wait_until
from nsprim.cgroup.host import Controller, HostInfo
from nsprim.errors import CGroupTimeoutError, ConfigError, UnsupportedError


class LocatedGroup(Protocol):
    """Where a group's files are: :class:`~nsprim.cgroup.CGroup` is one (what watching it needs).

    Protocols rather than the class itself, so that the modules using them sit
    below the group that calls them.
    """

    @property
    def path(self) -> str: ...

    @property
    def host(self) -> HostInfo: ...

    @property
    def unified_dir(self) -> Path | None: ...

    def locate(self, controller: Controller) -> tuple[int, Path] | None: ...


class ControlledGroup(LocatedGroup, Protocol):
    """What freezing and killing need of a group: :class:`~nsprim.cgroup.CGroup` is one."""

    def procs(self, *, recursive: bool = False) -> list[int]: ...

    def wait_empty(self, timeout: float | None = None) -> None: ...


_SIGKILL = 9  # the same on every architecture Linux runs on (not imported: `signal` makes enum classes)

__all__ = ["LocatedGroup", "ControlledGroup", "freezer_of", "freeze", "thaw", "is_frozen", "kill", "request_kill"]


def freezer_of(group: ControlledGroup, version: int | None = None) -> tuple[int, Path]:
    """(version, directory) of the freezer to use: v2 ``cgroup.freeze`` if present, else the v1 freezer."""
    u = group.unified_dir
    if version in (None, 2) and u is not None and (u / "cgroup.freeze").exists():
        return 2, u
    w = group.locate(Controller.FREEZER)
    if version in (None, 1) and w is not None and w[0] == 1:
        return w
    raise UnsupportedError(
        f"freezer{f' v{version}' if version else ''}: not available to `{group.path}` "
        f"(host mode: {group.host.mode.value})",
        feature="freezer",
    )


def wait_event(directory: Path, key: str, value: int, *, timeout: float | None, what: str) -> None:
    """Wait until ``cgroup.events`` of the v2 group *directory* says *key* is *value* (an absent key reads 0)."""
    events = directory / "cgroup.events"
    wait_until(
        lambda: files.read_keyed(events).get(key, 0) == value,
        timeout=timeout,
        what=what,
        path=directory,
        notify=[events],
    )


def freeze(group: ControlledGroup, timeout: float | None, version: int | None = None) -> None:
    """Freeze *group* and wait until the kernel reports it frozen."""
    v, d = freezer_of(group, version)
    if v == 2:
        files.write_text(d / "cgroup.freeze", "1")
        wait_event(d, "frozen", 1, timeout=timeout, what="the group to freeze")
        return

    def frozen() -> bool:
        state = files.read_text(d / "freezer.state").strip()
        if state == "FREEZING":  # a task could not be frozen yet: ask again
            files.write_text(d / "freezer.state", "FROZEN")
        return state == "FROZEN"

    files.write_text(d / "freezer.state", "FROZEN")
    wait_until(frozen, timeout=timeout, what="the group to freeze", path=d)


def thaw(group: ControlledGroup, timeout: float | None, version: int | None = None) -> None:
    """Thaw *group* and wait until the kernel reports it running."""
    v, d = freezer_of(group, version)
    if v == 2:
        files.write_text(d / "cgroup.freeze", "0")
        wait_event(d, "frozen", 0, timeout=timeout, what="the group to thaw")
        return
    files.write_text(d / "freezer.state", "THAWED")
    wait_until(
        lambda: files.read_text(d / "freezer.state").strip() == "THAWED",
        timeout=timeout,
        what="the group to thaw",
        path=d,
    )


def is_frozen(group: ControlledGroup) -> bool:
    """True if either freezer holds *group* frozen."""
    u = group.unified_dir
    if u is not None and (u / "cgroup.events").exists() and files.read_keyed(u / "cgroup.events").get("frozen"):
        return True
    w = group.locate(Controller.FREEZER)
    return w is not None and w[0] == 1 and files.read_text(w[1] / "freezer.state").strip() == "FROZEN"


def kill(group: ControlledGroup, sig: int, timeout: float | None, use_cgroup_kill: bool = True) -> None:
    """Signal every process in *group*; see :meth:`nsprim.cgroup.CGroup.kill`."""
    if os.getpid() in group.procs(recursive=True):
        raise ConfigError(f"kill `{group.path}`: the calling process is in the group", what="kill")
    u = group.unified_dir
    deadline = None if timeout is None else time.monotonic() + timeout
    if sig == _SIGKILL and use_cgroup_kill and u is not None and (u / "cgroup.kill").exists():
        files.write_text(u / "cgroup.kill", "1")
        wait_event(u, "populated", 0, timeout=timeout, what="the group to be empty")
        if not group.procs(recursive=True):
            return
        # Left only in v1 hierarchies (single threads moved there on a hybrid host): use the loop below.
    try:
        freezer_of(group)
        can_freeze = True
    except UnsupportedError:
        can_freeze = False
    while group.procs(recursive=True):
        if can_freeze:
            freeze(group, timeout)
        for pid in group.procs(recursive=True):
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, sig)
        if can_freeze:
            thaw(group, timeout)
        if sig != _SIGKILL:
            return
        try:
            group.wait_empty(0.2 if deadline is None else max(0.0, min(0.2, deadline - time.monotonic())))
            return
        except CGroupTimeoutError:
            if deadline is not None and time.monotonic() >= deadline:
                raise


def request_kill(group: ControlledGroup) -> bool:
    """Write ``cgroup.kill`` of *group* and return at once; False if it has none."""
    u = group.unified_dir
    if u is None or not (u / "cgroup.kill").exists():
        return False
    if os.getpid() in group.procs(recursive=True):
        raise ConfigError(f"kill `{group.path}`: the calling process is in the group", what="kill")
    files.write_text(u / "cgroup.kill", "1")
    return True
