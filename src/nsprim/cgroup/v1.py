"""How :class:`~nsprim.cgroup.resources.Resources` maps onto cgroup v1 control files.

Settings v1 cannot express (memory.high/low/min, oom_group) raise
:class:`~nsprim.errors.UnsupportedError` naming the controller and the
host mode rather than being dropped.
"""

from __future__ import annotations

import errno
from pathlib import Path

from nsprim.cgroup import files
from nsprim.cgroup.files import Write
from nsprim.cgroup.host import Controller
from nsprim.cgroup.resources import MEMORY_MAX_BYTES, CpuResources, MemoryResources, Resources, limit_of
from nsprim.cgroup.units import V1_UNLIMITED, Limit
from nsprim.errors import ConfigError, UnsupportedError

from .._dataclass import dataclass

__all__ = ["plan_v1", "MemoryNow", "io_weight_to_blkio", "blkio_weight_to_io"]

_TOLERATE_EINVAL = frozenset({errno.EINVAL})
_QUOTA_HINT = "on cgroup v1 a group's quota/period may not exceed its parent's"


def io_weight_to_blkio(weight: int) -> int:
    """v2 ``io.weight`` (1..10000) -> v1 ``blkio.weight`` (10..1000), the inverse of crun's mapping."""
    return 10 + ((weight - 1) * 990) // 9999


def blkio_weight_to_io(weight: int) -> int:
    """v1 ``blkio.weight`` (10..1000) -> v2 ``io.weight``, crun's ``1 + (w - 10) * 9999 / 990``."""
    return 1 + ((weight - 10) * 9999) // 990


def _bytes(value: int | str | None) -> str:
    limit = limit_of(value)
    return "-1" if limit is None or limit == "max" else str(limit)


def _cpu(cpu: CpuResources) -> list[Write]:
    c = Controller.CPU
    out: list[Write] = []
    shares = cpu.effective_shares
    if shares is not None:
        out.append(Write(c, ("cpu.shares",), str(shares)))
    if cpu.quota is not None or cpu.period_us is not None:
        # Lift the quota first so that changing the period cannot violate the parent's bandwidth.
        out.append(Write(c, ("cpu.cfs_quota_us",), "-1"))
        out.append(Write(c, ("cpu.cfs_period_us",), str(cpu.period)))
        if cpu.quota is not None and cpu.quota != "max":
            out.append(Write(c, ("cpu.cfs_quota_us",), str(cpu.quota), hint=_QUOTA_HINT))
    if cpu.idle is not None:
        out.append(Write(c, ("cpu.idle",), "1" if cpu.idle else "0"))
    return out


def _memory(m: MemoryResources, mode: str, now: MemoryNow | None) -> list[Write]:
    c = Controller.MEMORY
    for name in ("high", "low", "min"):
        if getattr(m, name) is not None:
            raise UnsupportedError(
                f"memory.{name}: not available with the memory controller on cgroup v1 (host mode: {mode})",
                feature=f"memory.{name}",
            )
    if m.oom_group is not None:
        raise UnsupportedError(
            f"memory.oom_group: cgroup v1 always kills a single process (host mode: {mode})", feature="memory.oom.group"
        )
    if m.swap is not None and m.max is None:
        raise ConfigError("memory.swap on cgroup v1 needs memory.max too (memsw = max + swap)", what="memory.swap")
    mx = limit_of(m.max)
    if mx is None:
        return []
    limit = Write(c, ("memory.limit_in_bytes",), _bytes(mx))
    sw = limit_of(m.swap)
    if sw is None and now is not None and isinstance(now.memsw, int) and isinstance(now.limit, int):
        # A limit alone keeps the swap the group has: a memsw pinned at the old limit would refuse a higher one.
        sw = now.memsw - now.limit
    if sw is None:
        return [limit]
    total: Limit = "max" if mx == "max" or sw == "max" or mx + sw > MEMORY_MAX_BYTES else mx + sw
    memsw = Write(c, ("memory.memsw.limit_in_bytes",), _bytes(total))
    if now is None:  # the order is unknown: try the limit, set memsw, set the limit again
        return [Write(c, limit.names, limit.value, _TOLERATE_EINVAL), memsw, limit]
    # limit_in_bytes <= memsw.limit_in_bytes at every moment: memsw first if the current limit fits
    # under the new memsw (raising), else the limit first (lowering).
    memsw_first = total == "max" or (now.limit != "max" and now.limit <= total)
    return [memsw, limit] if memsw_first else [limit, memsw]


@dataclass(frozen=True)
class MemoryNow:
    """A v1 group's current ``memory.limit_in_bytes`` and ``memory.memsw.limit_in_bytes``
    (``"max"``: unlimited; memsw None: no swap accounting), for ordering the writes."""

    limit: Limit
    memsw: Limit | None

    @classmethod
    def fresh(cls) -> MemoryNow:
        """A new group's: both unlimited."""
        return cls("max", "max")

    @classmethod
    def read(cls, d: Path) -> MemoryNow:
        """The values in directory *d*."""

        def value(name: str) -> Limit | None:
            raw = files.try_read_int(d / name)
            if raw == files.MISSING:
                return None
            return "max" if raw is None or raw >= V1_UNLIMITED else raw

        limit = value("memory.limit_in_bytes")
        return cls("max" if limit is None else limit, value("memory.memsw.limit_in_bytes"))


def plan_v1(resources: Resources, controller: Controller, mode: str, now: MemoryNow | None = None) -> list[Write]:
    """The writes that apply *resources*' part for *controller* on a v1 hierarchy.

    *now*, the group's current memory limits, orders the memory writes (without
    it they are tried in an order that works whatever they are).
    """
    out: list[Write] = []
    if controller is Controller.CPU and resources.cpu is not None:
        out += _cpu(resources.cpu)
    elif controller is Controller.CPUSET and resources.cpuset is not None:
        cs = resources.cpuset
        if cs.cpus is not None:
            out.append(Write(controller, ("cpuset.cpus",), cs.cpus))
        if cs.mems is not None:
            out.append(Write(controller, ("cpuset.mems",), cs.mems))
    elif controller is Controller.MEMORY and resources.memory is not None:
        out += _memory(resources.memory, mode, now)
    elif controller is Controller.PIDS and resources.pids is not None and resources.pids.max is not None:
        limit = limit_of(resources.pids.max)
        out.append(Write(controller, ("pids.max",), "max" if limit == "max" else str(limit)))
    elif controller is Controller.IO and resources.io is not None:
        io = resources.io
        if io.weight is not None:
            out.append(Write(controller, ("blkio.bfq.weight", "blkio.weight"), str(io_weight_to_blkio(io.weight))))
        for lim in io.limits:
            for key, name in (
                ("rbps", "read_bps"),
                ("wbps", "write_bps"),
                ("riops", "read_iops"),
                ("wiops", "write_iops"),
            ):
                value = getattr(lim, key)
                if value is not None:
                    v = limit_of(value)
                    out.append(
                        Write(controller, (f"blkio.throttle.{name}_device",), f"{lim.device} {0 if v == 'max' else v}")
                    )
    elif controller is Controller.HUGETLB:
        for h in resources.hugetlb:
            out.append(Write(controller, (f"hugetlb.{h.page_size}.limit_in_bytes",), _bytes(h.max)))
    return out
