"""Typed statistics of a cgroup: memory, CPU, pids, I/O and pressure (PSI).

Values come from whichever hierarchy serves each controller: v2 files
(``memory.current``, ``cpu.stat``, ``io.stat``...) or their v1 twins
(``memory.usage_in_bytes``, ``cpuacct.usage_*``, ``blkio.throttle.*``).
A part the host cannot provide is None rather than zero.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from nsprim.cgroup.files import MISSING, read_int, try_read_int, try_read_text
from nsprim.cgroup.host import Controller
from nsprim.cgroup.units import V1_UNLIMITED

from .._dataclass import dataclass, field

__all__ = [
    "Stats",
    "MemoryStats",
    "CpuStats",
    "PidsStats",
    "IoStats",
    "IoDeviceStats",
    "Pressure",
    "PressureLine",
    "read_stats",
    "parse_pressure",
]

Where = Callable[[Controller], "tuple[int, Path] | None"]


@dataclass(frozen=True)
class MemoryStats:
    """Memory use in bytes.  ``limit`` None means unlimited; ``peak`` None when the kernel lacks it."""

    current: int
    peak: int | None
    limit: int | None
    swap_current: int | None = None
    stat: dict[str, int] = field(default_factory=dict, hash=False)


@dataclass(frozen=True)
class CpuStats:
    """CPU time in microseconds, and CFS throttling counters where the cpu controller is present.

    ``usage_usec`` is exact; the ``user_usec``/``system_usec`` split is sampled at timer ticks, so
    for short runs the parts may not add up to the total.
    """

    usage_usec: int
    user_usec: int
    system_usec: int
    nr_periods: int | None = None
    nr_throttled: int | None = None
    throttled_usec: int | None = None


@dataclass(frozen=True)
class PidsStats:
    """Number of tasks; ``max`` None means unlimited."""

    current: int
    max: int | None
    peak: int | None = None


@dataclass(frozen=True)
class IoDeviceStats:
    """I/O counters of one block device (``major:minor``)."""

    device: str
    rbytes: int = 0
    wbytes: int = 0
    rios: int = 0
    wios: int = 0


@dataclass(frozen=True)
class IoStats:
    """I/O counters per device."""

    devices: tuple[IoDeviceStats, ...]

    @property
    def rbytes(self) -> int:
        """Bytes read, all devices."""
        return sum(d.rbytes for d in self.devices)

    @property
    def wbytes(self) -> int:
        """Bytes written, all devices."""
        return sum(d.wbytes for d in self.devices)


@dataclass(frozen=True)
class PressureLine:
    """One line of a PSI file: share of time stalled (percent) over 10/60/300 s, and total stall time (µs)."""

    avg10: float
    avg60: float
    avg300: float
    total: int


@dataclass(frozen=True)
class Pressure:
    """Pressure stall information.

    ``some``: time at least one task stalled; ``full``: all non-idle tasks stalled (None where not reported).
    """

    some: PressureLine
    full: PressureLine | None


@dataclass(frozen=True)
class Stats:
    """A snapshot of a group's statistics; parts the host lacks are None."""

    memory: MemoryStats | None
    cpu: CpuStats | None
    pids: PidsStats | None
    io: IoStats | None
    cpu_pressure: Pressure | None = None
    memory_pressure: Pressure | None = None
    io_pressure: Pressure | None = None


def parse_pressure(text: str) -> Pressure | None:
    """Parse a ``*.pressure`` file (``some avg10=0.00 avg60=0.00 avg300=0.00 total=0``)."""
    lines: dict[str, PressureLine] = {}
    for line in text.splitlines():
        kind, _, rest = line.partition(" ")
        values = dict(item.split("=", 1) for item in rest.split() if "=" in item)
        try:
            lines[kind] = PressureLine(
                float(values["avg10"]), float(values["avg60"]), float(values["avg300"]), int(values["total"])
            )
        except (KeyError, ValueError):
            continue
    if "some" not in lines:
        return None
    return Pressure(lines["some"], lines.get("full"))


def _opt(value: int | None) -> int | None:
    """A :func:`try_read_int` result as "None when missing or unlimited"."""
    return None if value == MISSING else value


def _memory(version: int, d: Path, with_stat: bool = True) -> MemoryStats | None:
    stat: dict[str, int] = {}
    if with_stat:
        stat_text = try_read_text(d / "memory.stat")
        for line in (stat_text or "").splitlines():
            k, _, v = line.partition(" ")
            if v.strip().isdigit():
                stat[k] = int(v)
    # One open per file: a missing file (an older kernel, swap accounting off) reads as MISSING.
    if version == 2:
        current = try_read_int(d / "memory.current")
        if current == MISSING:
            return None
        swap = _opt(try_read_int(d / "memory.swap.current"))
        peak = _opt(try_read_int(d / "memory.peak"))
        return MemoryStats(current or 0, peak, read_int(d / "memory.max"), swap, stat)
    usage = read_int(d / "memory.usage_in_bytes") or 0
    limit = read_int(d / "memory.limit_in_bytes")
    if limit is not None and limit >= V1_UNLIMITED:
        limit = None
    memsw = try_read_int(d / "memory.memsw.usage_in_bytes")
    swap_current = None if memsw == MISSING else max(0, (memsw or 0) - usage)
    return MemoryStats(usage, read_int(d / "memory.max_usage_in_bytes"), limit, swap_current, stat)


def _keyed_or_none(path: Path) -> dict[str, int] | None:
    text = try_read_text(path)
    if text is None:
        return None
    result: dict[str, int] = {}
    for line in text.splitlines():
        parts = line.split()
        if len(parts) == 2 and parts[1].isdigit():
            result[parts[0]] = int(parts[1])
    return result


def _cpu(where: Where, unified: Path | None) -> CpuStats | None:
    acct = where(Controller.CPUACCT)
    cpu = where(Controller.CPU)
    throttle: dict[str, int] = {}
    if cpu is not None:
        throttle = _keyed_or_none(cpu[1] / "cpu.stat") or {}
    if cpu is not None and cpu[0] == 1:
        throttle["throttled_usec"] = throttle.get("throttled_time", 0) // 1000
    usage = try_read_int(acct[1] / "cpuacct.usage") if acct is not None and acct[0] == 1 else MISSING
    if acct is not None and usage != MISSING:
        d = acct[1]
        total = (usage or 0) // 1000
        user = (_opt(try_read_int(d / "cpuacct.usage_user")) or 0) // 1000
        system = (_opt(try_read_int(d / "cpuacct.usage_sys")) or 0) // 1000
    else:
        source = cpu[1] if cpu is not None and cpu[0] == 2 else unified
        if source is None:
            return None
        if cpu is not None and cpu[0] == 2 and source == cpu[1]:
            base = throttle if throttle else None  # cpu.stat of this very directory was read above
        else:
            base = _keyed_or_none(source / "cpu.stat")
        if base is None:
            return None
        throttle = {**base, **throttle} if cpu is not None and cpu[0] == 1 else base
        total, user, system = base.get("usage_usec", 0), base.get("user_usec", 0), base.get("system_usec", 0)
    return CpuStats(
        total, user, system, throttle.get("nr_periods"), throttle.get("nr_throttled"), throttle.get("throttled_usec")
    )


def _pids(d: Path) -> PidsStats | None:
    current = try_read_int(d / "pids.current")
    if current == MISSING:
        return None
    peak = _opt(try_read_int(d / "pids.peak"))
    return PidsStats(current or 0, read_int(d / "pids.max"), peak)


def _io(version: int, d: Path) -> IoStats | None:
    devices: dict[str, dict[str, int]] = {}
    if version == 2:
        text = try_read_text(d / "io.stat")
        if text is None:
            return None
        for line in text.splitlines():
            dev, *items = line.split()
            counters = devices.setdefault(dev, {})
            for item in items:
                k, _, v = item.partition("=")
                if v.isdigit():
                    counters[k] = int(v)
    else:
        found = False
        for name, suffix in (
            ("blkio.throttle.io_service_bytes_recursive", "bytes"),
            ("blkio.throttle.io_serviced_recursive", "ios"),
        ):
            text = try_read_text(d / name)
            if text is None:
                continue
            found = True
            for line in text.splitlines():
                parts = line.split()
                if len(parts) == 3 and parts[1] in ("Read", "Write") and parts[2].isdigit():
                    key = ("r" if parts[1] == "Read" else "w") + suffix
                    devices.setdefault(parts[0], {})[key] = int(parts[2])
        if not found:
            return None
    return IoStats(
        tuple(
            IoDeviceStats(dev, c.get("rbytes", 0), c.get("wbytes", 0), c.get("rios", 0), c.get("wios", 0))
            for dev, c in sorted(devices.items())
        )
    )


def _pressure(dirs: list[Path], name: str) -> Pressure | None:
    for d in dirs:
        text = try_read_text(d / f"{name}.pressure")
        if text:
            try:
                return parse_pressure(text)
            except ValueError:
                return None
    return None


def read_stats(where: Where, unified: Path | None, *, full: bool = True) -> Stats:
    """Read the statistics of a group; *where* gives (version, directory) for a controller.

    With *full* false only the totals are read — memory usage, peak and
    limit, CPU time, pids — not ``memory.stat``, I/O or pressure: a quarter
    of the files, for a summary at the end of a container's life.
    """
    mem = where(Controller.MEMORY)
    pids = where(Controller.PIDS)
    if not full:
        return Stats(
            memory=_memory(*mem, with_stat=False) if mem is not None else None,
            cpu=_cpu(where, unified),
            pids=_pids(pids[1]) if pids is not None else None,
            io=None,
            cpu_pressure=None,
            memory_pressure=None,
            io_pressure=None,
        )
    io = where(Controller.IO)
    psi_dirs = [d for d in (unified,) if d is not None]
    for c in (Controller.CPU, Controller.MEMORY, Controller.IO):
        w = where(c)
        if w is not None and w[1] not in psi_dirs:
            psi_dirs.append(w[1])
    return Stats(
        memory=_memory(*mem) if mem is not None else None,
        cpu=_cpu(where, unified),
        pids=_pids(pids[1]) if pids is not None else None,
        io=_io(*io) if io is not None else None,
        cpu_pressure=_pressure(psi_dirs, "cpu"),
        memory_pressure=_pressure(psi_dirs, "memory"),
        io_pressure=_pressure(psi_dirs, "io"),
    )
