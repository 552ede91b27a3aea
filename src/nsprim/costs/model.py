"""The results of :func:`nsprim.costs.measure`: frozen values, and their JSON form.

Every time is a :class:`Spread` of repeats (median and 90th percentile, in
milliseconds).  A :class:`Cost` also says what it was measured against
(:attr:`Cost.reference`) and what the primitive adds to it
(:attr:`Cost.added_ms`), so that a row reads as "this much more than a
bare fork+exec+wait".  :meth:`CostReport.to_json` is the stable schema
``nsprim cost --json`` prints (:data:`SCHEMA_VERSION`).
"""

from __future__ import annotations

import enum
import math
from collections.abc import Mapping, Sequence

from .._dataclass import dataclass

__all__ = [
    "SCHEMA_VERSION",
    "Kind",
    "Mode",
    "MemoryMethod",
    "Holder",
    "Spread",
    "Cost",
    "OverlayLayers",
    "PageCacheSharing",
    "NetTeardown",
    "LivePoint",
    "KernelMemory",
    "Busy",
    "CostReport",
    "JsonValue",
]

#: The version of :meth:`CostReport.to_json`'s layout; it changes only when a key changes meaning or goes.
SCHEMA_VERSION = 1

JsonValue = str | int | float | bool | None | list["JsonValue"] | dict[str, "JsonValue"]


class Mode(enum.Enum):
    """How long a measurement runs: fewer or more repeats and sizes."""

    QUICK = "quick"
    DEFAULT = "default"
    FULL = "full"


class Kind(enum.Enum):
    """What a measured row is a cost of."""

    BASELINE = "baseline"
    NAMESPACE = "namespace"
    CGROUP = "cgroup"
    ROOT = "root"
    SECURITY = "security"
    CONTAINER = "container"


class MemoryMethod(enum.Enum):
    """Where a kernel memory figure was read."""

    #: the memory cgroup v1 kernel counter of a parent group holding the containers
    CGROUP_V1_KMEM = "memory.kmem.usage_in_bytes"
    #: the kernel fields of the memory cgroup v2 ``memory.stat`` of that parent group
    CGROUP_V2_STAT = "memory.stat kernel"
    #: the whole machine's ``/proc/meminfo`` Slab + KernelStack + PageTables + Percpu (noisy: others count too)
    MEMINFO = "/proc/meminfo Slab+KernelStack+PageTables+Percpu"


class Holder(enum.Enum):
    """What holds the kernel memory measured: a whole container, or its namespaces alone, or neither."""

    #: a whole default container: namespaces, its cgroup, its overlay root and mounts, sleeping
    CONTAINER = "container"
    #: a sleeping process in the container's namespaces, without a cgroup, a root or mounts of its own
    NAMESPACES = "namespaces"
    #: a sleeping process, no namespace of its own: the floor
    PROCESS = "process"


def _percentile(ordered: Sequence[float], fraction: float) -> float:
    """The *fraction* quantile of sorted *ordered*, by linear interpolation."""
    if len(ordered) == 1:
        return ordered[0]
    pos = fraction * (len(ordered) - 1)
    low = math.floor(pos)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (pos - low)


@dataclass(frozen=True)
class Spread:
    """Repeats of one measurement: median and 90th percentile (ms), and how many."""

    median_ms: float
    p90_ms: float
    samples: int

    @classmethod
    def of(cls, seconds: Sequence[float]) -> Spread:
        """The spread of *seconds* (at least one)."""
        if not seconds:
            raise ValueError("a spread needs at least one sample")
        ordered = sorted(s * 1e3 for s in seconds)
        return cls(_percentile(ordered, 0.5), _percentile(ordered, 0.9), len(ordered))

    def to_json(self) -> dict[str, JsonValue]:
        return {"median_ms": round(self.median_ms, 4), "p90_ms": round(self.p90_ms, 4), "samples": self.samples}


@dataclass(frozen=True)
class Cost:
    """One primitive: its measured time, and what it adds to its reference.

    *reference* names the row it is compared with (``"baseline"``: a bare
    fork+exec+wait of ``/bin/true``), or is ``None`` for an operation timed on
    its own (a cgroup's create+limit+attach+delete, done by the parent around a
    start): then :attr:`added_ms` is its median.
    """

    name: str
    kind: Kind
    time: Spread
    added_ms: float
    reference: str | None
    note: str = ""

    def to_json(self) -> dict[str, JsonValue]:
        return {
            "name": self.name,
            "kind": self.kind.value,
            "time": self.time.to_json(),
            "added_ms": round(self.added_ms, 4),
            "reference": self.reference,
            "note": self.note,
        }


@dataclass(frozen=True)
class OverlayLayers:
    """An overlay mount (and its unmount) with *layers* lower layers, on tmpfs."""

    layers: int
    mount: Spread
    umount: Spread

    def to_json(self) -> dict[str, JsonValue]:
        return {"layers": self.layers, "mount": self.mount.to_json(), "umount": self.umount.to_json()}


@dataclass(frozen=True)
class PageCacheSharing:
    """One file of one image read in *containers* containers: how much page cache it took.

    *charged_bytes* is the growth of the file cache charged to the memory
    cgroup holding them (``cache`` in v1 ``memory.stat``, ``file`` in v2);
    *resident_bytes* the file's pages in memory after the reads (mincore(2)).
    A shared cache makes :attr:`copies` about 1, not *containers*.
    """

    containers: int
    file_bytes: int
    charged_bytes: int
    resident_bytes: int | None
    method: str

    @property
    def copies(self) -> float:
        """How many times the file's size the cache grew by."""
        return self.charged_bytes / self.file_bytes if self.file_bytes else 0.0

    def to_json(self) -> dict[str, JsonValue]:
        return {
            "containers": self.containers,
            "file_bytes": self.file_bytes,
            "charged_bytes": self.charged_bytes,
            "resident_bytes": self.resident_bytes,
            "copies": round(self.copies, 3),
            "method": self.method,
        }


@dataclass(frozen=True)
class NetTeardown:
    """What freeing a network namespace costs, after its last process has exited.

    The kernel frees network namespaces in a work queue, after the process is
    gone: *freed_after_ms* is the time from the exit of the last of
    *namespaces* processes (each with its own namespace) until the kernel
    memory they had charged to their memory cgroup was given back;
    *kernel_work_ms* the CPU time of the kernel's unbound workers in that
    window, per namespace, less what they use when nothing is torn down.
    """

    namespaces: int
    freed_after_ms: float | None
    kernel_work_ms: float | None
    method: str

    def to_json(self) -> dict[str, JsonValue]:
        return {
            "namespaces": self.namespaces,
            "freed_after_ms": None if self.freed_after_ms is None else round(self.freed_after_ms, 3),
            "kernel_work_ms": None if self.kernel_work_ms is None else round(self.kernel_work_ms, 4),
            "method": self.method,
        }


@dataclass(frozen=True)
class LivePoint:
    """With *live* containers alive: how long the next one took to start, and the kernel memory of all."""

    live: int
    start_ms: float
    kernel_bytes: int

    def to_json(self) -> dict[str, JsonValue]:
        return {"live": self.live, "start_ms": round(self.start_ms, 4), "kernel_bytes": self.kernel_bytes}


@dataclass(frozen=True)
class KernelMemory:
    """The kernel memory of one sleeping container of a kind, measured with *containers* alive.

    *holder* says whether these are whole containers, or processes in the
    same namespaces alone (to tell the namespaces' part from the rest), or
    bare processes.  *per_container_bytes* comes from *method* (the memory
    cgroup of a parent group holding them); *meminfo_per_container_bytes* is
    the cross-check from the whole machine's ``/proc/meminfo`` (others'
    activity counts in it).
    """

    label: str
    holder: Holder
    network_namespace: bool
    containers: int
    per_container_bytes: int
    method: MemoryMethod
    meminfo_per_container_bytes: int | None
    live: tuple[LivePoint, ...] = ()

    def to_json(self) -> dict[str, JsonValue]:
        return {
            "label": self.label,
            "holder": self.holder.value,
            "network_namespace": self.network_namespace,
            "containers": self.containers,
            "per_container_bytes": self.per_container_bytes,
            "method": self.method.value,
            "meminfo_per_container_bytes": self.meminfo_per_container_bytes,
            "live": [p.to_json() for p in self.live],
        }


@dataclass(frozen=True)
class Busy:
    """Whether the machine was busy with other work while it was measured.

    *other_cpus* is the CPU time (in CPUs, averaged over the run) that went
    to anything but this process and its children; *limit* the most that
    leaves the figures trustworthy.
    """

    other_cpus: float
    cpus: int
    limit: float

    @property
    def busy(self) -> bool:
        return self.other_cpus > self.limit

    def to_json(self) -> dict[str, JsonValue]:
        return {"other_cpus": round(self.other_cpus, 3), "cpus": self.cpus, "limit": self.limit, "busy": self.busy}


@dataclass(frozen=True)
class CostReport:
    """Everything one run of :func:`nsprim.costs.measure` found on this host."""

    mode: Mode
    kernel: str
    cgroup_mode: str
    cpus: int
    baseline: Cost
    costs: tuple[Cost, ...]
    overlay: tuple[OverlayLayers, ...]
    page_cache: PageCacheSharing | None
    net_teardown: NetTeardown | None
    memory: tuple[KernelMemory, ...]
    busy: Busy
    elapsed_s: float
    skipped: Mapping[str, str]

    def cost(self, name: str) -> Cost:
        """The row called *name* (``KeyError`` if this run has none)."""
        for c in (self.baseline, *self.costs):
            if c.name == name:
                return c
        raise KeyError(name)

    def kernel_memory(self, *, network_namespace: bool, holder: Holder = Holder.CONTAINER) -> KernelMemory | None:
        """The kernel memory of a container (or *holder*) with or without its own network namespace, if measured."""
        return next((m for m in self.memory if m.network_namespace == network_namespace and m.holder is holder), None)

    def to_json(self) -> dict[str, JsonValue]:
        """The measured figures as JSON values, schema :data:`SCHEMA_VERSION` (without the verdict:
        :func:`nsprim.costs.report.json_document` adds it)."""
        return {
            "schema": SCHEMA_VERSION,
            "mode": self.mode.value,
            "host": {"kernel": self.kernel, "cgroup_mode": self.cgroup_mode, "cpus": self.cpus},
            "baseline": self.baseline.to_json(),
            "costs": [c.to_json() for c in self.costs],
            "overlay": [o.to_json() for o in self.overlay],
            "page_cache": None if self.page_cache is None else self.page_cache.to_json(),
            "net_teardown": None if self.net_teardown is None else self.net_teardown.to_json(),
            "memory": [m.to_json() for m in self.memory],
            "busy": self.busy.to_json(),
            "elapsed_s": round(self.elapsed_s, 3),
            "skipped": dict(self.skipped),
        }
