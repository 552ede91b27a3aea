"""Typed resource limits that map onto both cgroup versions.

A :class:`Resources` value is validated when it is built (bad input raises
:class:`~nsprim.errors.ConfigError` before anything is touched) and is
immutable.  Sizes accept ints (bytes) and strings like ``"512M"`` (see
:mod:`nsprim.cgroup.units`); after construction every size field holds an
``int`` or :data:`~nsprim.cgroup.units.MAX`.

Fields left as ``None`` are not written; use ``"max"`` to remove a limit.
"""

from __future__ import annotations

import math
import os
import re
import stat
from typing import Final

from nsprim.cgroup.host import Controller
from nsprim.cgroup.units import (
    SHARES_MAX,
    SHARES_MIN,
    WEIGHT_MAX,
    WEIGHT_MIN,
    Limit,
    format_cpuset,
    parse_cpuset,
    parse_limit,
    shares_to_weight,
    weight_to_shares,
)
from nsprim.errors import ConfigError

from .._dataclass import dataclass, field, fields

__all__ = [
    "Resources",
    "CpuResources",
    "CpusetResources",
    "MemoryResources",
    "PidsResources",
    "IoResources",
    "IoDeviceLimit",
    "HugetlbLimit",
    "limit_of",
    "MEMORY_MAX_BYTES",
]

DEFAULT_PERIOD_US: Final = 100_000
_PAGE_SIZE_RE: Final = re.compile(r"^\d+(KB|MB|GB)$")
PIDS_MAX: Final = 4 * 1024 * 1024
"""The most tasks a pids limit can name (the kernel's PID_MAX_LIMIT on 64-bit)."""
_PAGE: Final = os.sysconf("SC_PAGE_SIZE")
MEMORY_MAX_BYTES: Final = (2**63 - 1) // _PAGE * _PAGE
"""The largest memory limit the kernel keeps (its page counters hold at most 2**63-1 bytes, in
whole pages); a larger value would be taken as "no limit", or wrap around to 0 beyond 2**64."""


def limit_of(value: int | str | None) -> Limit | None:
    """Narrow a normalised size field (``int``, ``"max"`` or None) to its static type."""
    if value is None:
        return None
    return parse_limit(value)


def _set(obj: object, name: str, value: object) -> None:
    object.__setattr__(obj, name, value)


def _int_in(value: object, lo: int, hi: int, what: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not lo <= value <= hi:
        raise ConfigError(f"{what}: `{value!r}` is outside {lo}..{hi}", what=what)
    return value


@dataclass(frozen=True)
class CpuResources:
    """CPU bandwidth and weight.

    Give *either* ``weight`` (v2 scale 1..10000) *or* ``shares`` (v1 scale
    2..262144); the other version's value is derived with the runc/crun
    formula.  Bandwidth is ``quota_us`` per ``period_us`` (default period
    100 ms), or ``cpus`` as a fraction of CPUs (``cpus=0.2`` is 20 ms per
    100 ms); ``quota_us="max"`` removes the limit.  ``idle`` marks the group
    SCHED_IDLE (kernel 5.15+).
    """

    weight: int | None = None
    shares: int | None = None
    quota_us: int | str | None = None
    period_us: int | None = None
    cpus: float | None = None
    idle: bool | None = None

    def __post_init__(self) -> None:
        if self.weight is not None and self.shares is not None:
            raise ConfigError("cpu: give either weight or shares, not both", what="cpu.weight")
        if self.weight is not None:
            _int_in(self.weight, WEIGHT_MIN, WEIGHT_MAX, "cpu.weight")
        if self.shares is not None:
            _int_in(self.shares, SHARES_MIN, SHARES_MAX, "cpu.shares")
        if self.period_us is not None:
            _int_in(self.period_us, 1000, 1_000_000, "cpu period_us")
        if self.cpus is not None:
            if self.quota_us is not None:
                raise ConfigError("cpu: give either cpus or quota_us, not both", what="cpu.cpus")
            if (
                isinstance(self.cpus, bool)
                or not isinstance(self.cpus, (int, float))
                or not math.isfinite(self.cpus)
                or not self.cpus > 0
            ):
                raise ConfigError(
                    f"cpu.cpus: `{self.cpus!r}` must be a positive, finite number of CPUs", what="cpu.cpus"
                )
            period = self.period_us or DEFAULT_PERIOD_US
            cpus_quota = round(self.cpus * period)
            if cpus_quota < 1000:  # the kernel's smallest quota: not raised to it behind the caller's back
                raise ConfigError(
                    f"cpu.cpus: `{self.cpus!r}` is a quota of {cpus_quota} us per {period} us, below the kernel's "
                    f"1000 us (at least {1000 / period:g} CPUs)",
                    what="cpu.cpus",
                )
            _set(self, "quota_us", cpus_quota)
        if self.quota_us is not None:
            quota = parse_limit(self.quota_us, "cpu quota_us")
            if isinstance(self.quota_us, str) and quota != "max":
                raise ConfigError(f"cpu quota_us: `{self.quota_us}` must be an int of microseconds or 'max'")
            if quota != "max":
                _int_in(quota, 1000, 2**44, "cpu quota_us")
            _set(self, "quota_us", quota)
        if self.idle is not None and not isinstance(self.idle, bool):
            raise ConfigError(f"cpu.idle: `{self.idle!r}` must be a bool", what="cpu.idle")

    @property
    def effective_weight(self) -> int | None:
        """The v2 ``cpu.weight`` to write (derived from ``shares`` if needed)."""
        if self.weight is not None:
            return self.weight
        return shares_to_weight(self.shares) if self.shares is not None else None

    @property
    def effective_shares(self) -> int | None:
        """The v1 ``cpu.shares`` to write (derived from ``weight`` if needed)."""
        if self.shares is not None:
            return self.shares
        return weight_to_shares(self.weight) if self.weight is not None else None

    @property
    def quota(self) -> Limit | None:
        """The normalised quota in microseconds, :data:`~nsprim.cgroup.units.MAX`, or None."""
        return limit_of(self.quota_us)

    @property
    def period(self) -> int:
        """The period in microseconds (100000 unless given)."""
        return self.period_us if self.period_us is not None else DEFAULT_PERIOD_US


@dataclass(frozen=True)
class CpusetResources:
    """CPUs and memory nodes the group may use, as kernel lists (``"0-3,5"``).

    The strings are validated and canonicalised; CPUs and nodes the host does
    not have raise :class:`ConfigError`.
    """

    cpus: str | None = None
    mems: str | None = None

    def __post_init__(self) -> None:
        if self.cpus is not None:
            cpus = _online_set(self.cpus, "cpus", "cpu", "unable to run", "CPUs the host does not have online")
            _set(self, "cpus", cpus)
        if self.mems is not None:
            mems = _online_set(self.mems, "mems", "node", "no memory", "memory nodes the host does not have")
            _set(self, "mems", mems)


def _online_set(text: str, name: str, sysfs: str, if_empty: str, if_offline: str) -> str:
    """``cpuset.<name>`` *text* in canonical form; not empty, and within ``/sys/devices/system/<sysfs>/online``."""
    field = f"cpuset.{name}"
    items = parse_cpuset(text, field)
    if not items:
        raise ConfigError(f"{field}: the empty set would leave the group {if_empty}", what=field)
    online = _online(f"/sys/devices/system/{sysfs}/online")
    if online is not None and not set(items) <= set(online):
        raise ConfigError(f"{field}: `{text}` names {if_offline} (online: `{format_cpuset(online)}`)", what=field)
    return format_cpuset(items)


def _online(path: str) -> tuple[int, ...] | None:
    try:
        with open(path, encoding="ascii") as f:
            return parse_cpuset(f.read().strip())
    except (OSError, ConfigError):
        return None


@dataclass(frozen=True)
class MemoryResources:
    """Memory limits (bytes, size strings, or ``"max"``).

    ``max`` is the hard limit (v1 ``memory.limit_in_bytes``); ``swap`` the
    swap allowed *in addition* (v2 ``memory.swap.max``; on v1 it becomes
    ``memory.memsw.limit_in_bytes = max + swap``).  ``high``, ``low``,
    ``min`` and ``oom_group`` exist on cgroup v2 only.  The kernel rounds
    each size down to whole pages; sizes above :data:`MEMORY_MAX_BYTES`
    raise :class:`ConfigError` (``"max"`` is no limit).
    """

    max: int | str | None = None
    high: int | str | None = None
    low: int | str | None = None
    min: int | str | None = None
    swap: int | str | None = None
    oom_group: bool | None = None

    def __post_init__(self) -> None:
        for name in ("max", "high", "low", "min", "swap"):
            value = getattr(self, name)
            if value is not None:
                limit = parse_limit(value, f"memory.{name}")
                if limit != "max" and limit > MEMORY_MAX_BYTES:
                    raise ConfigError(
                        f"memory.{name}: `{value}` is above the largest limit the kernel keeps "
                        f"({MEMORY_MAX_BYTES} bytes); use 'max' for no limit",
                        what=f"memory.{name}",
                    )
                _set(self, name, limit)
        if self.oom_group is not None and not isinstance(self.oom_group, bool):
            raise ConfigError(f"memory.oom_group: `{self.oom_group!r}` must be a bool", what="memory.oom_group")


@dataclass(frozen=True)
class PidsResources:
    """The maximum number of tasks (processes and threads) in the group, or ``"max"``."""

    max: int | str | None = None

    def __post_init__(self) -> None:
        if self.max is not None:
            value = parse_limit(self.max, "pids.max")
            if isinstance(self.max, str) and value != "max" and not self.max.strip().isdigit():
                raise ConfigError(f"pids.max: `{self.max}` must be a count or 'max'", what="pids.max")
            if value != "max" and value > PIDS_MAX:
                raise ConfigError(
                    f"pids.max: `{self.max}` is above the kernel's most tasks ({PIDS_MAX}); use 'max' for no limit",
                    what="pids.max",
                )
            _set(self, "max", value)


@dataclass(frozen=True)
class IoDeviceLimit:
    """Throttling of one block device (``major:minor``): bytes and operations per second.

    Build one from a device node with :meth:`for_device`.
    """

    major: int
    minor: int
    rbps: int | str | None = None
    wbps: int | str | None = None
    riops: int | str | None = None
    wiops: int | str | None = None

    def __post_init__(self) -> None:
        _int_in(self.major, 0, 2**32 - 1, "io device major")
        _int_in(self.minor, 0, 2**32 - 1, "io device minor")
        for name in ("rbps", "wbps", "riops", "wiops"):
            value = getattr(self, name)
            if value is not None:
                _set(self, name, parse_limit(value, f"io.max {name}"))

    @classmethod
    def for_device(cls, path: str | os.PathLike[str], **limits: int | str | None) -> IoDeviceLimit:
        """A limit for the block device node at *path* (e.g. ``/dev/vda``)."""
        try:
            st = os.stat(path)
        except OSError as exc:
            raise ConfigError(f"io device `{os.fspath(path)}`: {exc.strerror}", what="io device") from exc
        if not stat.S_ISBLK(st.st_mode):
            raise ConfigError(f"io device `{os.fspath(path)}` is not a block device", what="io device")
        return cls(os.major(st.st_rdev), os.minor(st.st_rdev), **limits)

    @property
    def device(self) -> str:
        """``"major:minor"``."""
        return f"{self.major}:{self.minor}"


@dataclass(frozen=True)
class IoResources:
    """Block I/O: a proportional ``weight`` (v2 scale 1..10000) and per-device throttling."""

    weight: int | None = None
    limits: tuple[IoDeviceLimit, ...] = ()

    def __post_init__(self) -> None:
        if self.weight is not None:
            _int_in(self.weight, WEIGHT_MIN, WEIGHT_MAX, "io.weight")
        _set(self, "limits", tuple(self.limits))
        for item in self.limits:
            if not isinstance(item, IoDeviceLimit):
                raise ConfigError(f"io.limits: `{item!r}` is not an IoDeviceLimit", what="io.limits")


@dataclass(frozen=True)
class HugetlbLimit:
    """A limit on huge pages of one size; ``page_size`` as the kernel names it (``"2MB"``, ``"1GB"``)."""

    page_size: str
    max: int | str

    def __post_init__(self) -> None:
        if not isinstance(self.page_size, str) or not _PAGE_SIZE_RE.match(self.page_size):
            raise ConfigError(f"hugetlb page size: `{self.page_size!r}` (expected e.g. '2MB', '1GB')", what="hugetlb")
        _set(self, "max", parse_limit(self.max, f"hugetlb.{self.page_size}.max"))


@dataclass(frozen=True)
class Resources:
    """All resource limits of a group; each part is optional.

    >>> sorted(c.value for c in Resources(memory=MemoryResources(max="512M"), pids=PidsResources(max=64)).controllers())
    ['memory', 'pids']
    """

    cpu: CpuResources | None = None
    cpuset: CpusetResources | None = None
    memory: MemoryResources | None = None
    pids: PidsResources | None = None
    io: IoResources | None = None
    hugetlb: tuple[HugetlbLimit, ...] = field(default=())

    def __post_init__(self) -> None:
        _set(self, "hugetlb", tuple(self.hugetlb))
        expected = {
            "cpu": CpuResources,
            "cpuset": CpusetResources,
            "memory": MemoryResources,
            "pids": PidsResources,
            "io": IoResources,
        }
        for name, cls in expected.items():
            value = getattr(self, name)
            if value is not None and not isinstance(value, cls):
                raise ConfigError(f"resources.{name}: `{value!r}` is not a {cls.__name__}", what=name)
        for item in self.hugetlb:
            if not isinstance(item, HugetlbLimit):
                raise ConfigError(f"resources.hugetlb: `{item!r}` is not a HugetlbLimit", what="hugetlb")

    def controllers(self) -> frozenset[Controller]:
        """The controllers these resources need."""
        needed: set[Controller] = set()
        for name, controller in (
            ("cpu", Controller.CPU),
            ("cpuset", Controller.CPUSET),
            ("memory", Controller.MEMORY),
            ("pids", Controller.PIDS),
            ("io", Controller.IO),
        ):
            part = getattr(self, name)
            if part is not None and any(getattr(part, f.name) not in (None, ()) for f in fields(part)):
                needed.add(controller)
        if self.hugetlb:
            needed.add(Controller.HUGETLB)
        return frozenset(needed)
