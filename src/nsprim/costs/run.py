"""One whole measurement run: :func:`measure` (and :func:`cost`, its short form).

The run makes its scratch image and one parent cgroup
(``nsprim-cost-<random>``, registered with the cleanup watcher before it is
made), measures, and removes both on every path.  It watches the machine's
CPU time meanwhile: what went to other work than this run says whether the
figures can be trusted (:class:`~nsprim.costs.model.Busy`).
"""

from __future__ import annotations

import os
import secrets
import time
from pathlib import Path

from .._sys import watcher
from ..cgroup import ROOT, CGroup
from ..cgroup.host import cached_host_info
from ..errors import UnsupportedError
from .fixture import has_overlay, scratch_image
from .memory import measure_memory
from .model import Busy, Cost, CostReport, KernelMemory, Mode, NetTeardown, OverlayLayers, PageCacheSharing
from .timings import Budget, cgroup_costs, container_costs, overlay_costs, spawn_costs

__all__ = ["BUDGETS", "BUSY_LIMIT", "measure", "cost"]

#: How much each mode measures.
BUDGETS: dict[Mode, Budget] = {
    Mode.QUICK: Budget(
        repeats=15,
        container_repeats=10,
        cgroup_repeats=10,
        overlay_layers=(1, 10, 100),
        overlay_repeats=4,
        memory_containers=5,
        page_cache_containers=4,
        page_cache_bytes=4 << 20,
        net_teardown_namespaces=8,
    ),
    Mode.DEFAULT: Budget(
        repeats=60,
        container_repeats=30,
        cgroup_repeats=60,
        overlay_layers=(1, 10, 100, 500),
        overlay_repeats=12,
        memory_containers=20,
        page_cache_containers=20,
        page_cache_bytes=16 << 20,
        net_teardown_namespaces=20,
    ),
    Mode.FULL: Budget(
        repeats=200,
        container_repeats=100,
        cgroup_repeats=200,
        overlay_layers=(1, 10, 50, 100, 200, 500),
        overlay_repeats=40,
        memory_containers=100,
        page_cache_containers=50,
        page_cache_bytes=32 << 20,
        net_teardown_namespaces=50,
    ),
}

#: The most CPU time (in CPUs, averaged over the run) other work may take for the figures to count.
BUSY_LIMIT = 0.5


def _machine_busy_s() -> float:
    """The whole machine's busy CPU time so far (all but idle and iowait), from ``/proc/stat``."""
    with open("/proc/stat") as f:
        fields = [int(x) for x in f.readline().split()[1:]]
    busy = sum(fields[:3]) + sum(fields[5:8])  # user nice system, irq softirq steal
    return busy / os.sysconf("SC_CLK_TCK")


def _own_s() -> float:
    t = os.times()
    return t.user + t.system + t.children_user + t.children_system


def measure(mode: Mode | str = Mode.DEFAULT, *, cgroup_parent: str | None = None) -> CostReport:
    """Measure what each container primitive costs on this host (root only).

    *mode* is ``"quick"`` (a few seconds), ``"default"`` (under half a
    minute) or ``"full"`` (longer, steadier).  The run's cgroups go under
    *cgroup_parent* (default: ``$NSPRIM_CGROUP_PARENT``, else the roots).
    """
    mode = Mode(mode)
    budget = BUDGETS[mode]
    if os.geteuid() != 0:
        raise UnsupportedError("measure costs: needs root (cgroups, mounts and kernel memory counters)", feature="root")
    info = cached_host_info()
    started, machine0, own0 = time.monotonic(), _machine_busy_s(), _own_s()
    skipped: dict[str, str] = {}
    where = cgroup_parent or os.environ.get("NSPRIM_CGROUP_PARENT") or ROOT
    registered: list[tuple[Path, ...]] = []

    def register(dirs: tuple[Path, ...]) -> None:
        watcher.watch_cgroups(dirs)
        registered.append(dirs)

    memory: tuple[KernelMemory, ...] = ()
    sharing: PageCacheSharing | None = None
    teardown: NetTeardown | None = None
    overlay: tuple[OverlayLayers, ...] = ()
    with scratch_image(budget.page_cache_bytes) as image:
        parent = CGroup.create(
            f"nsprim-cost-{secrets.token_hex(4)}",
            parent=where,
            controllers=list(info.controllers),
            before_mkdir=register,
        )
        try:
            baseline, costs = spawn_costs(image, budget.repeats)
            if not has_overlay():
                skipped["overlay"] = (
                    f"this kernel ({os.uname().release}) has no overlay file system: containers got a bind "
                    "root, and no page cache sharing was measured"
                )
            else:
                try:
                    overlay = tuple(overlay_costs(budget.overlay_layers, budget.overlay_repeats))
                except UnsupportedError as exc:
                    skipped["overlay"] = str(exc)
            try:
                memory, sharing, teardown = measure_memory(
                    parent,
                    image,
                    containers=budget.memory_containers,
                    readers=budget.page_cache_containers,
                    namespaces=budget.net_teardown_namespaces,
                )
            except UnsupportedError as exc:
                skipped["kernel memory"] = str(exc)
            if sharing is None and not {"kernel memory", "overlay"} & set(skipped):
                skipped["page cache"] = (
                    f"the scratch image is on {image.fstype} (`{image.root}`), whose pages are charged when "
                    "written: there is no read to share"
                )
            groups, why = cgroup_costs(parent, budget.cgroup_repeats)
            skipped.update(why)
            whole = container_costs(image, parent, budget.container_repeats, base_ms=baseline.time.median_ms)
        finally:
            parent.delete(recursive=True, timeout=2.0)
            for dirs in registered:
                watcher.forget_cgroups(dirs)
    elapsed = time.monotonic() - started
    other = max(0.0, (_machine_busy_s() - machine0) - (_own_s() - own0)) / max(elapsed, 1e-9)
    all_costs: tuple[Cost, ...] = (*costs, *groups, *whole)
    return CostReport(
        mode=mode,
        kernel=os.uname().release,
        cgroup_mode=info.mode.value,
        cpus=os.cpu_count() or 1,
        baseline=baseline,
        costs=all_costs,
        overlay=overlay,
        page_cache=sharing,
        net_teardown=teardown,
        memory=memory,
        busy=Busy(other, os.cpu_count() or 1, BUSY_LIMIT),
        elapsed_s=elapsed,
        skipped=skipped,
    )


def cost(*, quick: bool = False, full: bool = False, cgroup_parent: str | None = None) -> CostReport:
    """:func:`measure` in ``quick``, ``full`` or (neither) the default mode: ``nsprim.cost(quick=True)``."""
    if quick and full:
        from ..errors import ConfigError

        raise ConfigError("cost: quick or full, not both", what="quick")
    return measure(Mode.QUICK if quick else Mode.FULL if full else Mode.DEFAULT, cgroup_parent=cgroup_parent)
