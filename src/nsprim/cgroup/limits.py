"""Container-aware limits: the CPU count and memory limit really in force for a process.

Runtimes that size heaps and thread pools from ``os.cpu_count()`` and
``/proc/meminfo`` overcommit inside a limited group.  :func:`limits` walks
from the process's cgroup up to the root of each hierarchy and takes the
minimum of every ancestor's CPU bandwidth and memory limit, and the
intersection of the cpuset with the process's affinity.
"""

from __future__ import annotations

import math
import os
from pathlib import Path

from nsprim.cgroup import files
from nsprim.cgroup.host import Controller, HostInfo, host_info
from nsprim.cgroup.units import V1_UNLIMITED, format_cpuset, format_size, parse_cpuset
from nsprim.errors import SyscallError

from .._dataclass import dataclass

__all__ = ["EffectiveLimits", "limits", "host_memory", "ancestors"]


@dataclass(frozen=True)
class EffectiveLimits:
    """What a process may really use.

    ``cpu_count`` is the number of CPUs worth sizing pools for: the CPUs it
    may run on (cpuset and affinity), further capped by the CPU bandwidth
    ``cpu_quota`` (in CPUs, rounded up; None when unlimited).
    ``memory_limit`` is the smallest memory limit over the cgroup and its
    ancestors (None when unlimited); ``memory_total`` the memory it may
    use, that limit or the host's RAM, whichever is smaller.
    """

    cpu_count: int
    cpu_quota: float | None
    cpus: tuple[int, ...]
    memory_limit: int | None
    memory_total: int
    host_cpus: int
    host_memory: int
    pid: int

    def __str__(self) -> str:
        quota = f"{self.cpu_quota:g} CPUs of bandwidth" if self.cpu_quota is not None else "no CPU bandwidth limit"
        mem = _human(self.memory_limit) if self.memory_limit is not None else "unlimited"
        return (
            f"pid {self.pid}: {self.cpu_count} CPU(s) (cpus {format_cpuset(self.cpus)}, {quota}; host has "
            f"{self.host_cpus}); memory limit {mem} (usable {_human(self.memory_total)} of host "
            f"{_human(self.host_memory)})"
        )


def _human(n: int) -> str:
    """Exact binary units when they fit (``64M``), else one decimal (``23.5G``)."""
    exact = format_size(n)
    if n < 1024 or (exact[-1:].isalpha() and int(exact[:-1]) < 1024):
        return exact
    for suffix, power in (("T", 4), ("G", 3), ("M", 2), ("K", 1)):
        if n >= 1024**power:
            return f"{n / 1024**power:.1f}{suffix}"
    return exact  # pragma: no cover


def host_memory() -> int:
    """MemTotal of the host in bytes (from ``/proc/meminfo``)."""
    for line in files.read_text(Path("/proc/meminfo")).splitlines():
        if line.startswith("MemTotal:"):
            return int(line.split()[1]) * 1024
    return 0  # pragma: no cover - every kernel has MemTotal


def ancestors(directory: Path, mount_point: Path) -> list[Path]:
    """*directory* and its parents up to and including *mount_point*."""
    chain = [directory]
    while chain[-1] != mount_point and mount_point in chain[-1].parents:
        chain.append(chain[-1].parent)
    return chain


def _dir(info: HostInfo, controller: Controller) -> tuple[int, Path, Path] | None:
    h = info.hierarchy_for(controller)
    if h is None:
        return None
    path = info.cgroup_of(h)
    if path is None:
        return None
    return h.version, h.directory(path), h.mount_point


def _cpu_quota(info: HostInfo) -> float | None:
    where = _dir(info, Controller.CPU)
    if where is None:
        return None
    version, d, mount = where
    best: float | None = None
    for a in ancestors(d, mount):
        quota: int | None
        period: int | None
        try:
            if version == 2:
                text = files.try_read_text(a / "cpu.max")
                if text is None:
                    continue
                q, _, p = text.strip().partition(" ")
                quota, period = (None if q == "max" else int(q)), int(p or "100000")
            else:
                if not (a / "cpu.cfs_quota_us").exists():
                    continue
                quota, period = files.read_int(a / "cpu.cfs_quota_us"), files.read_int(a / "cpu.cfs_period_us")
        except (SyscallError, ValueError):
            continue
        if quota is None or quota < 0 or not period:
            continue
        value = quota / period
        best = value if best is None else min(best, value)
    return best


def _cpus(info: HostInfo, pid: int) -> tuple[int, ...]:
    try:
        affinity = set(os.sched_getaffinity(pid))
    except OSError:
        affinity = set(range(os.cpu_count() or 1))
    where = _dir(info, Controller.CPUSET)
    if where is not None:
        _version, d, _mount = where
        text = files.try_read_text(d / "cpuset.effective_cpus")
        if text is not None and text.strip():
            affinity &= set(parse_cpuset(text.strip()))
    return tuple(sorted(affinity))


def _memory_limit(info: HostInfo) -> int | None:
    where = _dir(info, Controller.MEMORY)
    if where is None:
        return None
    version, d, mount = where
    best: int | None = None
    for a in ancestors(d, mount):
        name = "memory.max" if version == 2 else "memory.limit_in_bytes"
        try:
            value = files.read_int(a / name) if (a / name).exists() else None
        except SyscallError:
            continue
        if value is None or value >= V1_UNLIMITED:
            continue
        best = value if best is None else min(best, value)
    if version == 1:
        stat = files.read_keyed(d / "memory.stat") if (d / "memory.stat").exists() else {}
        hier = stat.get("hierarchical_memory_limit")
        if hier is not None and hier < V1_UNLIMITED:
            best = hier if best is None else min(best, hier)
    return best


def limits(pid: int | None = None) -> EffectiveLimits:
    """The CPU count and memory limit in force for *pid* (default: the calling process).

    >>> print(limits())  # doctest: +SKIP
    pid 42: 1 CPU(s) (cpus 0-1, 0.5 CPUs of bandwidth; host has 2); memory limit 100M (...)
    """
    info = host_info(pid)
    real_pid = info.pid
    cpus = _cpus(info, real_pid if pid is not None else 0)
    quota = _cpu_quota(info)
    count = len(cpus) or 1
    if quota is not None:
        count = max(1, min(count, math.ceil(quota)))
    mem = _memory_limit(info)
    total = host_memory()
    return EffectiveLimits(
        cpu_count=count,
        cpu_quota=quota,
        cpus=cpus,
        memory_limit=mem,
        memory_total=min(mem, total) if mem is not None else total,
        host_cpus=os.cpu_count() or 1,
        host_memory=total,
        pid=real_pid,
    )
