"""``linux.resources`` as nsprim's cgroup values: :func:`to_resources` and :func:`device_rules`.

The spec's numbers are runc's: ``memory.swap`` is memory *plus* swap (nsprim's
:class:`~nsprim.cgroup.MemoryResources` counts the swap alone), ``-1`` is no
limit, a ``pids.limit`` of 0 or less is none, ``blockIO.weight`` is on the v1
scale (10 to 1000).  A setting this runtime does not apply is refused by its
field's name; none is dropped.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import NoReturn

from .._dataclass import dataclass
from ..cgroup import (
    CpuResources,
    CpusetResources,
    HugetlbLimit,
    IoDeviceLimit,
    IoResources,
    MemoryResources,
    PidsResources,
    Resources,
)
from ..errors import ConfigError, SpecError
from .spec import LinuxBlockIO, LinuxCPU, LinuxDeviceCgroup, LinuxMemory, LinuxResources

__all__ = ["DeviceRule", "device_rules", "to_resources"]

_DEVICE_TYPES = ("a", "b", "c")


@dataclass(frozen=True)
class DeviceRule:
    """One rule of the devices cgroup, as the v1 ``devices.allow``/``devices.deny`` files take it."""

    allow: bool
    type: str  # "a" (all), "b" (block) or "c" (character)
    major: int | None  # None: any
    minor: int | None
    access: str  # of "rwm"

    def line(self) -> str:
        """``"c 1:3 rwm"``; ``"a"`` for every device."""
        if self.type == "a":
            return "a"
        number = f"{'*' if self.major is None else self.major}:{'*' if self.minor is None else self.minor}"
        return f"{self.type} {number} {self.access}"


def device_rules(resources: LinuxResources | None, path: str = "linux.resources") -> tuple[DeviceRule, ...]:
    """The ``devices`` list, checked: a type of ``a``, ``b`` or ``c``, access of ``rwm``."""
    if resources is None:
        return ()
    out: list[DeviceRule] = []
    for i, rule in enumerate(resources.devices):
        where = f"{path}.devices[{i}]"
        _no_extra(rule.extra, where)
        out.append(_device_rule(rule, where))
    return tuple(out)


def _device_rule(rule: LinuxDeviceCgroup, where: str) -> DeviceRule:
    kind = rule.type or "a"
    if kind not in _DEVICE_TYPES:
        raise SpecError(f'{where}.type: "{rule.type}" is not one of a, b, c', field=f"{where}.type")
    access = rule.access or "rwm"
    if set(access) - set("rwm") or len(set(access)) != len(access):
        raise SpecError(f'{where}.access: "{rule.access}" is not made of r, w and m', field=f"{where}.access")
    for name in ("major", "minor"):
        value = getattr(rule, name)
        if value is not None and value < -1:
            raise SpecError(f"{where}.{name}: {value} is not a device number", field=f"{where}.{name}")
    major = None if rule.major in (None, -1) else rule.major
    minor = None if rule.minor in (None, -1) else rule.minor
    if kind == "a" and (major is not None or minor is not None or set(access) != set("rwm")):
        # the kernel's "a" rule has no numbers or access of its own
        _refuse(where, "a rule for all devices (type a) is for any number and all access (rwm); give type b or c")
    return DeviceRule(rule.allow, kind, major, minor, "".join(c for c in "rwm" if c in access))


def to_resources(resources: LinuxResources | None, path: str = "linux.resources") -> Resources:
    """The cgroup limits of ``linux.resources`` (devices apart: :func:`device_rules`)."""
    if resources is None:
        return Resources()
    _no_extra(resources.extra, path)
    for name, value in (
        ("network", resources.network),
        ("rdma", resources.rdma or None),
        ("unified", resources.unified or None),
    ):
        if value is not None:
            _refuse(f"{path}.{name}", "not applied by nsprim-runtime")
    try:
        return Resources(
            memory=_memory(resources.memory, f"{path}.memory"),
            cpu=_cpu(resources.cpu, f"{path}.cpu"),
            cpuset=_cpuset(resources.cpu, f"{path}.cpu"),
            pids=_pids(resources, path),
            io=_io(resources.block_io, f"{path}.blockIO"),
            hugetlb=_hugetlb(resources, path),
        )
    except SpecError:
        raise
    except ConfigError as exc:  # a value the cgroup layer refuses: name the spec's field
        raise SpecError(f"{path}: {exc}", field=f"{path}.{exc.what}" if exc.what else path) from None


def _memory(m: LinuxMemory | None, where: str) -> MemoryResources | None:
    if m is None:
        return None
    _no_extra(m.extra, where)
    for name, value, why in (
        ("kernel", m.kernel, "kernel memory limits are gone from cgroup v2 and deprecated on v1"),
        ("kernelTCP", m.kernel_tcp, "kernel memory limits are gone from cgroup v2 and deprecated on v1"),
        ("swappiness", m.swappiness, "not applied by nsprim-runtime"),
    ):
        if value is not None:
            _refuse(f"{where}.{name}", why)
    if m.disable_oom_killer:
        _refuse(f"{where}.disableOOMKiller", "the OOM killer stays on (not applied by nsprim-runtime)")
    if m.check_before_update:
        _refuse(f"{where}.checkBeforeUpdate", "not applied by nsprim-runtime")
    limit = _bytes(m.limit)
    swap: int | str | None = None
    if m.swap is not None and m.swap != 0:
        if m.swap == -1:
            swap = "max"
        elif not isinstance(limit, int):
            _refuse(f"{where}.swap", "memory plus swap needs memory.limit too")
        elif m.swap < limit:
            raise SpecError(
                f"{where}.swap: {m.swap} is below memory.limit {limit} (it counts memory plus swap)",
                field=f"{where}.swap",
            )
        else:
            swap = m.swap - limit
    low = _bytes(m.reservation)
    if limit is None and swap is None and low is None:
        return None
    return MemoryResources(max=limit, swap=swap, low=low)


def _bytes(value: int | None) -> int | str | None:
    if value is None or value == 0:
        return None
    return "max" if value < 0 else value


def _cpu(c: LinuxCPU | None, where: str) -> CpuResources | None:
    if c is None:
        return None
    _no_extra(c.extra, where)
    for name, value in (
        ("burst", c.burst),
        ("realtimeRuntime", c.realtime_runtime),
        ("realtimePeriod", c.realtime_period),
    ):
        if value is not None and value != 0:
            _refuse(f"{where}.{name}", "not applied by nsprim-runtime")
    quota: int | str | None = None if c.quota is None or c.quota == 0 else ("max" if c.quota < 0 else c.quota)
    shares = c.shares or None
    period = c.period or None
    idle = None if c.idle is None else bool(c.idle)
    if shares is None and quota is None and period is None and idle is None:
        return None
    return CpuResources(shares=shares, quota_us=quota, period_us=period, idle=idle)


def _cpuset(c: LinuxCPU | None, where: str) -> CpusetResources | None:
    if c is None or not (c.cpus or c.mems):
        return None
    return CpusetResources(cpus=c.cpus or None, mems=c.mems or None)


def _pids(resources: LinuxResources, path: str) -> PidsResources | None:
    p = resources.pids
    if p is None or p.limit is None:
        return None
    _no_extra(p.extra, f"{path}.pids")
    return PidsResources(max="max" if p.limit <= 0 else p.limit)


def _io(b: LinuxBlockIO | None, where: str) -> IoResources | None:
    if b is None:
        return None
    _no_extra(b.extra, where)
    if b.leaf_weight is not None:
        _refuse(f"{where}.leafWeight", "not applied by nsprim-runtime")
    if b.weight_device:
        _refuse(f"{where}.weightDevice", "not applied by nsprim-runtime")
    from ..cgroup.v1 import blkio_weight_to_io

    weight = None
    if b.weight is not None and b.weight != 0:
        if not 10 <= b.weight <= 1000:
            raise SpecError(f"{where}.weight: {b.weight} is not within 10 and 1000", field=f"{where}.weight")
        weight = blkio_weight_to_io(b.weight)
    limits: dict[tuple[int, int], dict[str, int]] = {}
    for key, devices in (
        ("rbps", b.throttle_read_bps_device),
        ("wbps", b.throttle_write_bps_device),
        ("riops", b.throttle_read_iops_device),
        ("wiops", b.throttle_write_iops_device),
    ):
        for d in devices:
            limits.setdefault((d.major, d.minor), {})[key] = d.rate
    if weight is None and not limits:
        return None
    return IoResources(
        weight=weight,
        limits=tuple(IoDeviceLimit(major, minor, **rates) for (major, minor), rates in sorted(limits.items())),
    )


def _hugetlb(resources: LinuxResources, path: str) -> tuple[HugetlbLimit, ...]:
    for i, h in enumerate(resources.hugepage_limits):
        _no_extra(h.extra, f"{path}.hugepageLimits[{i}]")
    return tuple(HugetlbLimit(h.page_size, h.limit) for h in resources.hugepage_limits)


def _no_extra(extra: Mapping[str, object], where: str) -> None:
    for key in sorted(extra):
        _refuse(f"{where}.{key}", "not a field nsprim-runtime knows")


def _refuse(field: str, why: str) -> NoReturn:
    raise SpecError(f"{field}: {why}", field=field)
