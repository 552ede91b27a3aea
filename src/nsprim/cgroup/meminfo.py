"""A ``/proc/meminfo`` view of a cgroup: the host's file with the group's limit and usage in it.

Mounted over ``/proc/meminfo`` in a container (as LXCFS does), it makes
``free`` and runtimes that read meminfo see the group's memory, not the host's.
"""

from __future__ import annotations

from pathlib import Path

from nsprim.cgroup import files
from nsprim.cgroup.group import CGroup
from nsprim.cgroup.host import Controller

__all__ = ["meminfo_view", "format_meminfo"]


def _host() -> dict[str, int]:
    values: dict[str, int] = {}
    for line in files.read_text(Path("/proc/meminfo")).splitlines():
        key, _, rest = line.partition(":")
        parts = rest.split()
        if parts and parts[0].isdigit():
            values[key] = int(parts[0]) * (1024 if len(parts) > 1 else 1)
    return values


def format_meminfo(values: dict[str, int], host_order: list[str]) -> str:
    """Render ``key: value kB`` lines in the kernel's layout; keys not in *host_order* go last."""
    keys = [k for k in host_order if k in values] + [k for k in values if k not in host_order]
    return "".join(f"{k + ':':<16}{values[k] // 1024:>8} kB\n" for k in keys)


def meminfo_view(cgroup: CGroup | None = None) -> str:
    """Text like ``/proc/meminfo`` where totals, free and cache reflect *cgroup* (default: the caller's).

    MemTotal is the group's memory limit (or the host's RAM if smaller or
    unlimited), MemFree is MemTotal minus usage, MemAvailable adds the
    group's page cache; Swap lines follow the group's swap limit; slab lines
    are the group's (v2) or zero (v1 does not account them apart).  Other
    lines are the host's.
    """
    group = cgroup if cgroup is not None else CGroup.from_pid()
    host = _host()
    order = [line.partition(":")[0] for line in files.read_text(Path("/proc/meminfo")).splitlines()]
    mem = group.stats().memory
    if mem is None:
        return format_meminfo(host, order)
    v2 = group.version_of(Controller.MEMORY) == 2
    st = mem.stat

    def s(v2_key: str, v1_key: str) -> int:
        return st.get(v2_key if v2 else v1_key, 0)

    total = min(mem.limit, host["MemTotal"]) if mem.limit is not None else host["MemTotal"]
    usage = min(mem.current, total)
    cached = s("file", "total_cache")
    values = dict(host)
    values["MemTotal"] = total
    values["MemFree"] = total - usage
    values["MemAvailable"] = min(
        total, total - usage + s("inactive_file", "total_inactive_file") + s("active_file", "total_active_file")
    )
    values["Buffers"] = 0
    values["Cached"] = cached
    values["Active"] = s("active_anon", "total_active_anon") + s("active_file", "total_active_file")
    values["Inactive"] = s("inactive_anon", "total_inactive_anon") + s("inactive_file", "total_inactive_file")
    values["Active(anon)"] = s("active_anon", "total_active_anon")
    values["Inactive(anon)"] = s("inactive_anon", "total_inactive_anon")
    values["Active(file)"] = s("active_file", "total_active_file")
    values["Inactive(file)"] = s("inactive_file", "total_inactive_file")
    values["Shmem"] = s("shmem", "total_shmem")
    values["AnonPages"] = s("anon", "total_rss")
    values["Mapped"] = s("file_mapped", "total_mapped_file")
    # free(1) counts Buffers + Cached + SReclaimable as buff/cache: the host's
    # slab figures would show a fresh container hundreds of MB of cache.
    slab_reclaimable = s("slab_reclaimable", "")
    slab_unreclaimable = s("slab_unreclaimable", "")
    values["SReclaimable"] = slab_reclaimable
    values["SUnreclaim"] = slab_unreclaimable
    values["Slab"] = slab_reclaimable + slab_unreclaimable
    values["KReclaimable"] = slab_reclaimable
    swap_limit = _swap_limit(group, mem.limit, v2)
    if "SwapTotal" in host:
        swap_total = min(host["SwapTotal"], swap_limit) if swap_limit is not None else host["SwapTotal"]
        values["SwapTotal"] = swap_total
        values["SwapFree"] = max(0, swap_total - (mem.swap_current or 0))
        values["SwapCached"] = 0
    return format_meminfo(values, order)


def _swap_limit(group: CGroup, mem_limit: int | None, v2: bool) -> int | None:
    d = group.directory(Controller.MEMORY)
    if v2:
        return files.read_int(d / "memory.swap.max") if (d / "memory.swap.max").exists() else None
    if not (d / "memory.memsw.limit_in_bytes").exists() or mem_limit is None:
        return None
    memsw = files.read_int(d / "memory.memsw.limit_in_bytes")
    return None if memsw is None or memsw >= 1 << 62 else max(0, memsw - mem_limit)
