"""What the host offers: cgroup mode, hierarchies, controllers, and where a process sits.

Everything is discovered from ``/proc/self/mountinfo`` and
``/proc/<pid>/cgroup``; no path is hard-coded.  :func:`host_info` is the one
call that answers "what can I do with cgroups here?".
"""

from __future__ import annotations

import enum
import functools
import os
import time
from collections.abc import Mapping
from pathlib import Path, PurePosixPath
from types import MappingProxyType

from nsprim.cgroup.procfs import CGroupMembership, parse_proc_cgroup
from nsprim.errors import ConfigError, SyscallError
from nsprim.fs.mountinfo import MountInfo, parse_mountinfo

from .._dataclass import dataclass, field

__all__ = [
    "CGroupMode",
    "Controller",
    "Hierarchy",
    "HostInfo",
    "host_info",
    "cached_host_info",
    "hierarchies",
    "process_cgroups",
]


class CGroupMode(enum.Enum):
    """How the host's cgroup file systems are laid out."""

    UNIFIED = "v2"
    """Only cgroup v2 (all controllers in one tree)."""
    LEGACY = "v1"
    """Only cgroup v1 hierarchies."""
    HYBRID = "hybrid"
    """v1 hierarchies for (some) controllers plus a cgroup v2 tree."""
    NONE = "none"
    """No cgroup file system is mounted."""


class Controller(enum.Enum):
    """A cgroup controller, named as on cgroup v2 where the names differ (``io`` is v1's ``blkio``)."""

    CPU = "cpu"
    CPUACCT = "cpuacct"
    CPUSET = "cpuset"
    MEMORY = "memory"
    IO = "io"
    PIDS = "pids"
    HUGETLB = "hugetlb"
    FREEZER = "freezer"
    DEVICES = "devices"
    RDMA = "rdma"
    MISC = "misc"
    NET_CLS = "net_cls"
    NET_PRIO = "net_prio"
    PERF_EVENT = "perf_event"

    @property
    def v1_name(self) -> str:
        """The controller's name on cgroup v1 (``blkio`` for :attr:`IO`)."""
        return "blkio" if self is Controller.IO else self.value

    @property
    def v2_name(self) -> str | None:
        """The name on cgroup v2, or None when v2 has no such controller (freezer, devices are core/BPF there)."""
        if self is Controller.CPUACCT:
            return "cpu"
        if self in (Controller.FREEZER, Controller.DEVICES, Controller.NET_CLS, Controller.NET_PRIO):
            return None
        return str(self.value)

    @classmethod
    def parse(cls, name: str | Controller) -> Controller:
        """Return the controller called *name* (v1 or v2 spelling); unknown names raise :class:`ConfigError`."""
        if isinstance(name, Controller):
            return name
        if not isinstance(name, str):
            raise ConfigError(f"controller: `{name!r}` is not a controller name", what="controller")
        key = name.strip().lower()
        if key == "blkio":
            return cls.IO
        try:
            return cls(key)
        except ValueError:
            known = ", ".join(sorted(c.value for c in cls))
            raise ConfigError(f"unknown cgroup controller `{name}` (known: {known})", what="controller") from None

    @classmethod
    def from_v1(cls, name: str) -> Controller | None:
        """The controller for a v1 mount option, or None for other options (``rw``, ``name=systemd``...)."""
        if name == "blkio":
            return cls.IO
        try:
            return cls(name)
        except ValueError:
            return None


@dataclass(frozen=True)
class Hierarchy:
    """One mounted cgroup hierarchy.

    ``version`` is 1 or 2; ``controllers`` the controllers it serves (for v2:
    those listed in the mount root's ``cgroup.controllers``, i.e. not bound
    to a v1 hierarchy); ``name`` the ``name=`` option of a named v1 hierarchy
    (``systemd``); ``root`` the cgroup that appears at ``mount_point``.
    """

    version: int
    mount_point: Path
    root: str
    controllers: frozenset[Controller]
    name: str | None = None
    hierarchy_id: int | None = None

    def directory(self, cgroup_path: str) -> Path:
        """The directory of *cgroup_path* (as in ``/proc/<pid>/cgroup``) under this mount."""
        rel = PurePosixPath(cgroup_path.removesuffix(" (deleted)"))
        root = PurePosixPath(self.root)
        try:
            rel = rel.relative_to(root)
        except ValueError:
            rel = rel.relative_to("/") if rel.is_absolute() else rel
        return self.mount_point.joinpath(rel)

    def cgroup_path(self, directory: Path) -> str:
        """The inverse of :meth:`directory`: ``/a/b`` for ``<mount>/a/b``."""
        rel = directory.relative_to(self.mount_point)
        joined = PurePosixPath(self.root).joinpath(rel)
        return str(joined)

    def __str__(self) -> str:
        what = ",".join(sorted(c.value for c in self.controllers)) or (f"name={self.name}" if self.name else "-")
        return f"v{self.version} {self.mount_point} [{what}]"


@dataclass(frozen=True)
class HostInfo:
    """The host's cgroup layout, as seen by one process (see :func:`host_info`).

    ``controllers`` maps each available controller to the hierarchy that
    serves it; ``cgroups`` gives the process's cgroup path in each hierarchy;
    for the v2 tree, ``v2_available`` and ``v2_enabled`` are the controllers
    in the process's cgroup ``cgroup.controllers`` and ``cgroup.subtree_control``.
    """

    mode: CGroupMode
    hierarchies: tuple[Hierarchy, ...]
    pid: int
    cgroups: tuple[tuple[Hierarchy, str], ...] = field(default=())
    v2_available: frozenset[Controller] = frozenset()
    v2_enabled: frozenset[Controller] = frozenset()

    @property
    def unified(self) -> Hierarchy | None:
        """The cgroup v2 hierarchy, if mounted."""
        for h in self.hierarchies:
            if h.version == 2:
                return h
        return None

    @functools.cached_property
    def controllers(self) -> Mapping[Controller, Hierarchy]:
        """Each available controller and the hierarchy serving it (v1 takes precedence, as in the kernel)."""
        result: dict[Controller, Hierarchy] = {}
        for h in self.hierarchies:
            for c in h.controllers:
                if h.version == 1 or c not in result:
                    result[c] = h
        return MappingProxyType(result)  # computed once per (immutable) HostInfo, shared read-only

    def hierarchy_for(self, controller: Controller | str) -> Hierarchy | None:
        """The hierarchy serving *controller*, or None when the host lacks it."""
        return self.controllers.get(Controller.parse(controller))

    def version_of(self, controller: Controller | str) -> int | None:
        """1 or 2 for the cgroup version that serves *controller*, None when unavailable."""
        h = self.hierarchy_for(controller)
        return h.version if h is not None else None

    def cgroup_of(self, hierarchy: Hierarchy) -> str | None:
        """The process's cgroup path in *hierarchy*."""
        for h, path in self.cgroups:
            if h == hierarchy:
                return path
        return None

    def __str__(self) -> str:
        lines = [f"cgroup mode: {self.mode.value} (as seen by pid {self.pid})"]
        for h in self.hierarchies:
            where = self.cgroup_of(h)
            lines.append(f"  {h}" + (f"  process in {where}" if where is not None else ""))
        controllers = self.controllers
        if controllers:
            lines.append("controllers:")
            for c in sorted(controllers, key=lambda c: c.value):
                lines.append(f"  {c.value:<10} v{controllers[c].version} at {controllers[c].mount_point}")
        else:
            lines.append("controllers: none")
        if self.unified is not None:
            avail = ",".join(sorted(c.value for c in self.v2_available)) or "none"
            enabled = ",".join(sorted(c.value for c in self.v2_enabled)) or "none"
            lines.append(f"v2 own cgroup: available [{avail}], enabled for children [{enabled}]")
        return "\n".join(lines)


def _read(path: Path | str) -> str:
    try:
        with open(path, encoding="utf-8", errors="surrogateescape") as f:
            return f.read()
    except OSError as exc:
        raise SyscallError(exc.errno or 0, "read", str(path)) from exc


def read_v2_controllers(path: Path, filename: str = "cgroup.controllers") -> frozenset[Controller]:
    """Controllers listed in a v2 ``cgroup.controllers``/``cgroup.subtree_control`` file (unknown names ignored)."""
    try:
        text = _read(path / filename)
    except SyscallError:
        return frozenset()
    result: set[Controller] = set()
    for word in text.split():
        try:
            result.add(Controller(word))
        except ValueError:
            continue
    return frozenset(result)


def hierarchies(mountinfo: str | None = None) -> tuple[Hierarchy, ...]:
    """The mounted cgroup hierarchies (one entry per hierarchy; bind mounts of the same one are skipped).

    *mountinfo* is the text to parse; by default ``/proc/self/mountinfo``.
    """
    text = _read("/proc/self/mountinfo") if mountinfo is None else mountinfo
    seen: set[tuple[int, int]] = set()
    result: list[Hierarchy] = []
    for entry in parse_mountinfo(text):
        if entry.fstype not in ("cgroup", "cgroup2"):
            continue
        if (entry.major, entry.minor) in seen:
            continue
        seen.add((entry.major, entry.minor))
        result.append(_hierarchy(entry, read_controllers=mountinfo is None))
    return tuple(result)


def _hierarchy(entry: MountInfo, *, read_controllers: bool) -> Hierarchy:
    mount_point = Path(entry.mount_point)
    if entry.fstype == "cgroup2":
        controllers = read_v2_controllers(mount_point) if read_controllers else frozenset()
        return Hierarchy(2, mount_point, entry.root, controllers, hierarchy_id=0)
    v1: set[Controller] = set()
    name = None
    for opt in entry.super_options:
        if opt.startswith("name="):
            name = opt[5:]
            continue
        c = Controller.from_v1(opt)
        if c is not None:
            v1.add(c)
    return Hierarchy(1, mount_point, entry.root, frozenset(v1), name=name)


def process_cgroups(
    pid: int | None = None, hierarchy_list: tuple[Hierarchy, ...] | None = None
) -> tuple[tuple[Hierarchy, str], ...]:
    """Pair every hierarchy with the cgroup path of *pid* (default: the caller) in it."""
    hs = hierarchies() if hierarchy_list is None else hierarchy_list
    proc = f"/proc/{pid}/cgroup" if pid is not None else "/proc/self/cgroup"
    entries = parse_proc_cgroup(_read(proc))
    return tuple((h, path) for h in hs if (path := _match(h, entries)) is not None)


def _match(h: Hierarchy, entries: list[CGroupMembership]) -> str | None:
    if h.version == 2:
        return next((e.path for e in entries if e.is_unified), None)
    wanted = {c.v1_name for c in h.controllers}
    if h.name is not None:
        wanted.add(f"name={h.name}")
    return next((e.path for e in entries if not e.is_unified and set(e.controllers) == wanted), None)


def host_info(pid: int | None = None) -> HostInfo:
    """Describe the host's cgroup setup as seen by *pid* (default: the calling process).

    >>> print(host_info())  # doctest: +SKIP
    cgroup mode: hybrid (as seen by pid 4242)
      v1 /sys/fs/cgroup/memory [memory]  process in /
      ...
    """
    hs = hierarchies()
    has_v1 = any(h.version == 1 and h.controllers for h in hs)
    has_v2 = any(h.version == 2 for h in hs)
    if has_v1 and has_v2:
        mode = CGroupMode.HYBRID
    elif has_v2:
        mode = CGroupMode.UNIFIED
    elif has_v1:
        mode = CGroupMode.LEGACY
    else:
        mode = CGroupMode.NONE
    cgroups = process_cgroups(pid, hs)
    available: frozenset[Controller] = frozenset()
    enabled: frozenset[Controller] = frozenset()
    for h, path in cgroups:
        if h.version == 2:
            d = h.directory(path)
            available = read_v2_controllers(d)
            enabled = read_v2_controllers(d, "cgroup.subtree_control")
    return HostInfo(mode, hs, pid if pid is not None else os.getpid(), cgroups, available, enabled)


_cache: dict[str, tuple[int, float, HostInfo]] = {}


def cached_host_info() -> HostInfo:
    """:func:`host_info` of the caller, read again only when its mount namespace
    changes or after a few seconds: parsing mountinfo for every container
    would cost more than the rest of the Python side of starting it."""
    ino = os.stat("/proc/self/ns/mnt").st_ino
    hit = _cache.get("info")
    now = time.monotonic()
    if hit is not None and hit[0] == ino and now - hit[1] < 5.0:
        return hit[2]
    info = host_info()
    if hit is not None and hit[0] == ino and info == hit[2]:
        info = hit[2]  # the same layout: the same object, which what is cached by it (plan bodies) is keyed on
    _cache["info"] = (ino, now, info)
    return info
