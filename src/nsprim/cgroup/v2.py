"""How :class:`~nsprim.cgroup.resources.Resources` maps onto cgroup v2 control files.

Only translation lives here; which hierarchy serves a controller and the
actual writes are the business of :mod:`nsprim.cgroup.group`.
"""

from __future__ import annotations

from nsprim.cgroup.files import Write
from nsprim.cgroup.host import Controller
from nsprim.cgroup.resources import CpuResources, Resources, limit_of

__all__ = ["plan_v2"]


def _v(value: int | str | None) -> str:
    limit = limit_of(value)
    return "max" if limit is None or limit == "max" else str(limit)


def _cpu(cpu: CpuResources) -> list[Write]:
    c = Controller.CPU
    out: list[Write] = []
    weight = cpu.effective_weight
    if weight is not None:
        out.append(Write(c, ("cpu.weight",), str(weight)))
    if cpu.quota is not None or cpu.period_us is not None:
        quota = cpu.quota if cpu.quota is not None else "max"
        out.append(Write(c, ("cpu.max",), f"{quota} {cpu.period}"))
    if cpu.idle is not None:
        out.append(Write(c, ("cpu.idle",), "1" if cpu.idle else "0"))
    return out


def plan_v2(resources: Resources, controller: Controller, mode: str) -> list[Write]:
    """The writes that apply *resources*' part for *controller* on a v2 hierarchy.

    Everything cgroup v2 offers is expressible, so *mode* (the host's mode, used
    in messages by the v1 twin of this function) is accepted for symmetry only.
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
        m = resources.memory
        # Lower limits first, then raise: memory.min <= low <= high <= max is not enforced by the kernel.
        for name, value in (
            ("memory.min", m.min),
            ("memory.low", m.low),
            ("memory.high", m.high),
            ("memory.max", m.max),
            ("memory.swap.max", m.swap),
        ):
            if value is not None:
                out.append(Write(controller, (name,), _v(value)))
        if m.oom_group is not None:
            out.append(Write(controller, ("memory.oom.group",), "1" if m.oom_group else "0"))
    elif controller is Controller.PIDS and resources.pids is not None and resources.pids.max is not None:
        out.append(Write(controller, ("pids.max",), _v(resources.pids.max)))
    elif controller is Controller.IO and resources.io is not None:
        io = resources.io
        if io.weight is not None:
            out.append(Write(controller, ("io.weight", "io.bfq.weight"), f"default {io.weight}"))
        for lim in io.limits:
            parts = [
                f"{k}={_v(getattr(lim, k))}" for k in ("rbps", "wbps", "riops", "wiops") if getattr(lim, k) is not None
            ]
            if parts:
                out.append(Write(controller, ("io.max",), f"{lim.device} {' '.join(parts)}"))
    elif controller is Controller.HUGETLB:
        for h in resources.hugetlb:
            out.append(Write(controller, (f"hugetlb.{h.page_size}.max",), _v(h.max)))
    return out
