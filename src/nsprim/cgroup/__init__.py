"""Control groups: host detection, the :class:`CGroup` primitive, typed resources, stats, events and limits.

Works on pure cgroup v2, pure v1 and hybrid hosts.  Start with
:func:`host_info` to see what the host offers, then::

    from nsprim.cgroup import CGroup, Resources, MemoryResources, ROOT

    res = Resources(memory=MemoryResources(max="256M"))
    with CGroup.create("job", parent=ROOT, resources=res) as cg:
        cg.add(pid)
        print(cg.stats().memory)

:func:`limits` tells a process the CPU count and memory limit actually in
force for it, and :func:`meminfo_view` renders a ``/proc/meminfo`` that
reflects a group's limit.
"""

from nsprim._lazy import lazy_names, names_of

# `limits` is both a module and the function of that name: importing it here
# keeps `nsprim.cgroup.limits` the function whichever is imported first.
from nsprim.cgroup.limits import EffectiveLimits, limits

TYPE_CHECKING = False  # (typing itself is not imported)
if TYPE_CHECKING:
    from nsprim.cgroup.events import MemoryEvents
    from nsprim.cgroup.group import ROOT, CGroup
    from nsprim.cgroup.host import CGroupMode, Controller, Hierarchy, HostInfo, cached_host_info, host_info
    from nsprim.cgroup.meminfo import meminfo_view
    from nsprim.cgroup.naming import validate_name
    from nsprim.cgroup.procfs import CgroupEntry as CgroupEntry
    from nsprim.cgroup.procfs import CGroupMembership, parse_proc_cgroup
    from nsprim.cgroup.procfs import MountEntry as MountEntry
    from nsprim.cgroup.procfs import parse_mountinfo as parse_mountinfo
    from nsprim.cgroup.resources import (
        CpuResources,
        CpusetResources,
        HugetlbLimit,
        IoDeviceLimit,
        IoResources,
        MemoryResources,
        PidsResources,
        Resources,
    )
    from nsprim.cgroup.stats import (
        CpuStats,
        IoDeviceStats,
        IoStats,
        MemoryStats,
        PidsStats,
        Pressure,
        PressureLine,
        Stats,
    )
    from nsprim.cgroup.units import (
        MAX,
        format_cpuset,
        format_size,
        parse_cpuset,
        parse_limit,
        parse_size,
        shares_to_weight,
        weight_to_shares,
    )
    from nsprim.cgroup.watch import GroupEvent, GroupEventKind, GroupEventWatch, PressureResource, PressureTrigger
    from nsprim.errors import CGroupBusyError, CGroupTimeoutError
    from nsprim.errors import CGroupTimeout as CGroupTimeout  # deprecated alias, kept for one release

# Each name is imported when first used: importing the package for one of its
# modules (an OCI runtime reads only the host's hierarchies) loads no other.
_LAZY = {
    "MemoryEvents": "events",
    "ROOT": "group",
    "CGroup": "group",
    "CGroupMode": "host",
    "Controller": "host",
    "Hierarchy": "host",
    "HostInfo": "host",
    "cached_host_info": "host",
    "host_info": "host",
    "meminfo_view": "meminfo",
    "validate_name": "naming",
    "CGroupMembership": "procfs",
    "parse_proc_cgroup": "procfs",
    **names_of(
        "resources",
        (
            "CpuResources",
            "CpusetResources",
            "HugetlbLimit",
            "IoDeviceLimit",
            "IoResources",
            "MemoryResources",
            "PidsResources",
            "Resources",
        ),
    ),
    **names_of(
        "stats",
        ("CpuStats", "IoDeviceStats", "IoStats", "MemoryStats", "PidsStats", "Pressure", "PressureLine", "Stats"),
    ),
    **names_of(
        "units",
        (
            "MAX",
            "format_cpuset",
            "format_size",
            "parse_cpuset",
            "parse_limit",
            "parse_size",
            "shares_to_weight",
            "weight_to_shares",
        ),
    ),
    **names_of("watch", ("GroupEvent", "GroupEventKind", "GroupEventWatch", "PressureResource", "PressureTrigger")),
    "CGroupBusyError": "nsprim.errors",
    "CGroupTimeoutError": "nsprim.errors",
    "CGroupTimeout": "nsprim.errors",
}

__all__ = [
    "CGroup",
    "CGroupBusyError",
    "CGroupMode",
    "CGroupTimeoutError",
    "CGroupMembership",
    "Controller",
    "CpuResources",
    "CpuStats",
    "CpusetResources",
    "EffectiveLimits",
    "GroupEvent",
    "GroupEventKind",
    "GroupEventWatch",
    "Hierarchy",
    "HostInfo",
    "HugetlbLimit",
    "IoDeviceLimit",
    "IoDeviceStats",
    "IoResources",
    "IoStats",
    "MAX",
    "MemoryEvents",
    "MemoryResources",
    "MemoryStats",
    "PidsResources",
    "PidsStats",
    "Pressure",
    "PressureLine",
    "PressureResource",
    "PressureTrigger",
    "ROOT",
    "Resources",
    "Stats",
    "format_cpuset",
    "format_size",
    "cached_host_info",
    "host_info",
    "limits",
    "meminfo_view",
    "parse_cpuset",
    "parse_limit",
    "parse_proc_cgroup",
    "parse_size",
    "shares_to_weight",
    "validate_name",
    "weight_to_shares",
]


def _deprecated(name: str) -> object:
    from nsprim.cgroup.procfs import deprecated_name

    # old names (CgroupEntry, and the mount table's, now nsprim.fs.mountinfo's) for one release, with a warning
    return deprecated_name(__name__, name)


__getattr__, __dir__ = lazy_names(__name__, _LAZY, fallback=_deprecated)
