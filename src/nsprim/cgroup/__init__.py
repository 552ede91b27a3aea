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

from typing import TYPE_CHECKING

from nsprim.cgroup.events import MemoryEvents
from nsprim.cgroup.group import ROOT, CGroup
from nsprim.cgroup.host import CGroupMode, Controller, Hierarchy, HostInfo, cached_host_info, host_info
from nsprim.cgroup.limits import EffectiveLimits, limits
from nsprim.cgroup.meminfo import meminfo_view
from nsprim.cgroup.naming import validate_name
from nsprim.cgroup.procfs import CGroupMembership, deprecated_name, parse_proc_cgroup
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
from nsprim.errors import CGroupBusyError, CGroupTimeoutError
from nsprim.errors import CGroupTimeout as CGroupTimeout  # deprecated alias, kept for one release

if TYPE_CHECKING:  # the deprecated names, for type checkers (at run time: __getattr__ below)
    from nsprim.cgroup.procfs import CgroupEntry as CgroupEntry
    from nsprim.cgroup.procfs import MountEntry as MountEntry
    from nsprim.cgroup.procfs import parse_mountinfo as parse_mountinfo

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


def __getattr__(name: str) -> object:
    # old names (CgroupEntry, and the mount table's, now nsprim.fs.mountinfo's) for one release, with a warning
    return deprecated_name(__name__, name)
