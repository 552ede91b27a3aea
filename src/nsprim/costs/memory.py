"""Kernel memory: what the kernel keeps for each live container, and what it shares.

The kernel charges what it allocates for a process to the memory cgroup of
the process that allocates it.  A container's namespaces are made as it is
cloned, by its parent, so the parent must be in the measured group too:
the measurements run in a forked *driver* process that joins a ``driver``
group under a parent group of this run, and starts its containers under
that same parent.  The parent's kernel counter then holds everything — the
driver's part is there before the first container starts and is subtracted.

* v1: ``memory.kmem.usage_in_bytes`` (checked to be counting: a host booted
  with ``cgroup.memory=nokmem`` keeps it at 0, and the machine-wide
  ``/proc/meminfo`` is used instead, saying so);
* v2: the ``kernel`` field of ``memory.stat`` (or, on kernels without it,
  the sum of its kernel stack, page table, per-cpu, socket, slab and vmalloc fields);
* cross-check: the whole machine's ``/proc/meminfo`` Slab + KernelStack + PageTables + Percpu.
"""

from __future__ import annotations

import contextlib
import errno
import gc
import mmap
import os
import time
from pathlib import Path

from ..cgroup import CGroup, Controller
from ..container import RunningContainer
from ..errors import UnsupportedError
from ..namespace import NamespaceType
from ..process import DEVNULL
from ..spawning import spawn
from .child import forked
from .fixture import DATA, ScratchImage, has_overlay
from .model import Holder, KernelMemory, LivePoint, MemoryMethod, NetTeardown, PageCacheSharing

__all__ = [
    "MemoryGroup",
    "kernel_bytes",
    "meminfo_kernel_bytes",
    "file_cache_bytes",
    "resident_bytes",
    "kworker_cpu_ns",
    "live_containers",
    "live_processes",
    "page_cache_sharing",
    "net_teardown",
    "run_in_driver",
    "measure_memory",
]

_V2_KERNEL_FIELDS = ("kernel_stack", "pagetables", "percpu", "sock", "slab", "vmalloc")


class MemoryGroup:
    """The memory cgroup directory of a run's parent group, and how to read its kernel memory."""

    def __init__(self, parent: CGroup) -> None:
        located = parent.locate(Controller.MEMORY)
        if located is None:
            raise UnsupportedError("no memory cgroup controller on this host", feature="memory")
        self.version, self.directory = located
        self.method = MemoryMethod.CGROUP_V1_KMEM if self.version == 1 else MemoryMethod.CGROUP_V2_STAT
        if self.version == 1 and not (self.directory / "memory.kmem.usage_in_bytes").exists():
            self.method = MemoryMethod.MEMINFO

    def kernel(self) -> int:
        """The kernel memory charged to the group and its descendants (bytes)."""
        if self.method is MemoryMethod.MEMINFO:
            return meminfo_kernel_bytes()
        return kernel_bytes(self.directory, self.version)

    def cache(self) -> int:
        """The page cache charged to the group and its descendants (bytes)."""
        return file_cache_bytes(self.directory, self.version)

    def usage(self) -> int:
        """All the memory charged to the group and its descendants (bytes)."""
        name = "memory.usage_in_bytes" if self.version == 1 else "memory.current"
        return int((self.directory / name).read_text())

    def settled(self, timeout: float = 0.3, *, tolerance: int = 4096, interval: float = 0.01) -> int:
        """The kernel memory once it moves by less than *tolerance* bytes between two readings
        *interval* apart (or after *timeout*)."""
        last = self.kernel()
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            time.sleep(interval)
            now = self.kernel()
            if abs(now - last) < tolerance:
                return now
            last = now
        return last

    def wait_below(self, level: int, timeout: float, *, interval: float = 0.005) -> None:
        """Wait until the kernel memory is at most *level* (a network namespace is freed some time
        after its processes), or *timeout* passed."""
        deadline = time.monotonic() + timeout
        while self.kernel() > level and time.monotonic() < deadline:
            time.sleep(interval)


def _keyed(path: Path) -> dict[str, int]:
    out = {}
    for line in path.read_text().splitlines():
        key, _, value = line.partition(" ")
        with contextlib.suppress(ValueError):
            out[key] = int(value)
    return out


def kernel_bytes(directory: Path, version: int) -> int:
    """The kernel memory of the memory cgroup at *directory* (cgroup *version*), descendants included."""
    if version == 1:
        return int((directory / "memory.kmem.usage_in_bytes").read_text())
    stat = _keyed(directory / "memory.stat")
    if "kernel" in stat:
        return stat["kernel"]
    return sum(stat.get(k, 0) for k in _V2_KERNEL_FIELDS)


def file_cache_bytes(directory: Path, version: int) -> int:
    """The page cache of the memory cgroup at *directory*, descendants included."""
    stat = _keyed(directory / "memory.stat")
    return stat.get("total_cache", stat.get("cache", 0)) if version == 1 else stat.get("file", 0)


def meminfo_kernel_bytes() -> int:
    """The whole machine's Slab + KernelStack + PageTables + Percpu, from ``/proc/meminfo`` (bytes)."""
    total = 0
    for line in Path("/proc/meminfo").read_text().splitlines():
        key, _, rest = line.partition(":")
        if key in ("Slab", "KernelStack", "PageTables", "Percpu"):
            total += int(rest.split()[0]) * 1024
    return total


def resident_bytes(path: Path) -> int | None:
    """How much of the file at *path* is in the page cache now (mincore(2)); None if it cannot be told."""
    from .. import _sys
    from ..errors import SyscallError

    size = path.stat().st_size
    fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    try:
        return _sys.resident_pages(fd, size, path=path) * mmap.PAGESIZE
    except SyscallError:
        return None
    finally:
        os.close(fd)


def kworker_cpu_ns() -> int:
    """The CPU time so far of the kernel's unbound workers (``kworker/u*``, which run network
    namespace cleanup), from their ``/proc/<pid>/schedstat`` (ns)."""
    total = 0
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit():
            continue
        try:
            with open(f"/proc/{entry.name}/comm") as f:
                if not f.read().startswith("kworker/u"):
                    continue
            with open(f"/proc/{entry.name}/schedstat") as f:
                total += int(f.read().split()[0])
        except (OSError, ValueError, IndexError):
            continue
    return total


def _wait_given_back(group: MemoryGroup, before: int, after: int, timeout: float = 2.0) -> None:
    """Wait until the group's kernel memory is back within a tenth of the rise *before* → *after*
    (a network namespace is freed some time after its processes): the next measurement must not see
    the last one's memory going."""
    group.wait_below(before + max(0, after - before) // 10, timeout)


def live_containers(
    group: MemoryGroup, image: ScratchImage, parent_path: str, count: int, *, network_namespace: bool
) -> KernelMemory:
    """Start *count* sleeping containers of *image* one after the other under *parent_path*; the kernel
    memory they hold, and each start's latency with those before it alive.  Runs in the driver."""
    box = image.container("/bin/sleep", "600").cgroup_parent(parent_path)
    if not network_namespace:
        box = box.network("host")
    # One container first: caches and slabs the first start fills are not a container's own.
    with box.start(stdout=DEVNULL) as first:
        first.kill()
    before = group.settled()
    meminfo_before = meminfo_kernel_bytes()
    running: list[RunningContainer] = []
    points: list[LivePoint] = []
    checkpoints = _checkpoints(count)
    try:
        for i in range(count):
            t0 = time.perf_counter()
            running.append(box.start(stdout=DEVNULL))
            took = time.perf_counter() - t0
            if i + 1 in checkpoints:
                points.append(LivePoint(i, took * 1e3, group.kernel() - before))
        after = group.settled()
        meminfo_after = meminfo_kernel_bytes()
    finally:
        for c in running:
            with contextlib.suppress(Exception):
                c.kill()
        for c in running:
            with contextlib.suppress(Exception):
                c.wait()
    _wait_given_back(group, before, after)
    label = "container with its own network namespace" if network_namespace else "container without one"
    return KernelMemory(
        label,
        Holder.CONTAINER,
        network_namespace,
        count,
        max(0, (after - before) // count),
        group.method,
        (meminfo_after - meminfo_before) // count,
        tuple(points),
    )


#: The namespaces of a default container, without the network one.
_CONTAINER_NAMESPACES = frozenset(
    {NamespaceType.MNT, NamespaceType.UTS, NamespaceType.IPC, NamespaceType.PID, NamespaceType.CGROUP}
)


def live_processes(group: MemoryGroup, count: int, *, namespaces: bool, network_namespace: bool) -> KernelMemory:
    """*count* sleeping processes, each in new namespaces of a default container's kinds (with or
    without a network namespace) or in none: the kernel memory each holds.  Runs in the driver."""
    new = (_CONTAINER_NAMESPACES if namespaces else frozenset()) | (
        {NamespaceType.NET} if network_namespace else frozenset()
    )
    argv = ["/bin/sleep", "600"]
    warm = spawn(argv, new=new, stdout=DEVNULL)
    warm.kill()
    warm.wait()
    before = group.settled()
    meminfo_before = meminfo_kernel_bytes()
    procs = []
    try:
        for _ in range(count):
            procs.append(spawn(argv, new=new, stdout=DEVNULL))
        after = group.settled()
        meminfo_after = meminfo_kernel_bytes()
    finally:
        for p in procs:
            with contextlib.suppress(Exception):
                p.kill()
        for p in procs:
            with contextlib.suppress(Exception):
                p.wait()
    _wait_given_back(group, before, after)
    if not namespaces:
        label, holder = "bare sleeping process", Holder.PROCESS
    else:
        holder = Holder.NAMESPACES
        label = (
            "its namespaces alone, with a network one" if network_namespace else "its namespaces alone, no network one"
        )
    return KernelMemory(
        label,
        holder,
        network_namespace,
        count,
        max(0, (after - before) // count),
        group.method,
        (meminfo_after - meminfo_before) // count,
    )


def _checkpoints(count: int) -> set[int]:
    marks = {1, count}
    step = 1
    while step < count:
        marks |= {step, min(count, 2 * step), min(count, 5 * step)}
        step *= 10
    return marks


def page_cache_sharing(group: MemoryGroup, image: ScratchImage, parent_path: str, count: int) -> PageCacheSharing:
    """Read the image's one big file in *count* containers of the image, one after the other: how
    much page cache it took.  Runs in the driver."""
    fd = os.open(image.data, os.O_RDONLY | os.O_CLOEXEC)
    try:
        os.fsync(fd)
        os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)  # the file starts out of the cache
    finally:
        os.close(fd)
    box = image.container("/bin/cat", DATA).cgroup_parent(parent_path).network("host")
    before = group.cache()
    for _ in range(count):
        result = box.run(stdout=DEVNULL)
        if result.returncode != 0:
            raise UnsupportedError(f"read `{DATA}` in a container: exited with {result.returncode}")
    charged = group.cache() - before
    method = "memory.stat total_cache" if group.version == 1 else "memory.stat file"
    resident = resident_bytes(image.data)
    return PageCacheSharing(count, image.data_bytes, max(0, charged), resident, method + " + mincore")


def net_teardown(group: MemoryGroup, count: int) -> NetTeardown:
    """*count* processes each in a new network namespace, all exited: how long until the kernel gave
    their namespaces' memory back, and the kernel workers' CPU time for it.  Runs in the driver."""
    idle_window = 0.1
    k0 = kworker_cpu_ns()
    time.sleep(idle_window)
    idle_rate = (kworker_cpu_ns() - k0) / idle_window
    before = group.settled()
    procs = [spawn(["/bin/true"], new={NamespaceType.NET}, stdout=DEVNULL) for _ in range(count)]
    peak = group.kernel()
    work0 = kworker_cpu_ns()
    for p in procs:
        p.wait()
    exited = time.perf_counter()
    peak = max(peak, group.kernel())
    rise = peak - before
    freed: float | None = None
    deadline = exited + 5.0
    while time.perf_counter() < deadline:
        if group.kernel() <= before + rise * 0.1:
            freed = time.perf_counter() - exited
            break
        time.sleep(0.002)
    window = time.perf_counter() - exited
    work = kworker_cpu_ns() - work0 - idle_rate * window
    how = f"{group.method.value} back to within 10% of before; kworker/u* CPU time less their idle rate"
    return NetTeardown(
        count,
        None if freed is None else freed * 1e3,
        max(0.0, work / count / 1e6),
        how,
    )


def run_in_driver(
    parent: CGroup, image: ScratchImage, *, containers: int, readers: int, namespaces: int
) -> dict[str, object]:
    """The body of the driver: join the memory group, then every memory measurement (JSON-able)."""
    group = MemoryGroup(parent)
    driver = group.directory / "driver"
    (driver / "cgroup.procs").write_text(str(os.getpid()))
    # A forked process writes to its parent's pages as it goes (copies, page tables: kernel
    # memory): go through every kind of start once, then keep the collector from walking the heap.
    for network in (False, True):
        box = image.container("/bin/true").cgroup_parent(parent.path)
        box.network("none" if network else "host").run(stdout=DEVNULL)
        spawn(["/bin/true"], new=_CONTAINER_NAMESPACES | ({NamespaceType.NET} if network else set())).wait()
    gc.collect()
    gc.disable()
    alone = [
        live_processes(group, containers, namespaces=False, network_namespace=False),
        live_processes(group, containers, namespaces=True, network_namespace=False),
        live_processes(group, containers, namespaces=True, network_namespace=True),
    ]
    without = live_containers(group, image, parent.path, containers, network_namespace=False)
    with_net = live_containers(group, image, parent.path, containers, network_namespace=True)
    shareable = has_overlay() and not image.in_memory
    sharing = page_cache_sharing(group, image, parent.path, readers) if shareable else None
    teardown = net_teardown(group, namespaces)
    return {
        "memory": [with_net.to_json(), without.to_json(), *(m.to_json() for m in alone)],
        "page_cache": None if sharing is None else sharing.to_json(),
        "net_teardown": teardown.to_json(),
    }


def _int(d: object, key: str) -> int:
    assert isinstance(d, dict)
    value = d[key]
    assert isinstance(value, int)
    return value


def _num(d: object, key: str) -> float | None:
    assert isinstance(d, dict)
    value = d[key]
    assert value is None or isinstance(value, (int, float))
    return None if value is None else float(value)


def _str(d: object, key: str) -> str:
    assert isinstance(d, dict)
    return str(d[key])


def _kernel_memory(d: object) -> KernelMemory:
    assert isinstance(d, dict)
    live = tuple(LivePoint(_int(p, "live"), _num(p, "start_ms") or 0.0, _int(p, "kernel_bytes")) for p in d["live"])
    return KernelMemory(
        _str(d, "label"),
        Holder(d["holder"]),
        bool(d["network_namespace"]),
        _int(d, "containers"),
        _int(d, "per_container_bytes"),
        MemoryMethod(d["method"]),
        d["meminfo_per_container_bytes"],
        live,
    )


def measure_memory(
    parent: CGroup, image: ScratchImage, *, containers: int, readers: int, namespaces: int
) -> tuple[tuple[KernelMemory, ...], PageCacheSharing | None, NetTeardown]:
    """Every memory measurement, made by a driver process in a ``driver`` group under *parent*; no
    page-cache sharing when the image is on tmpfs (its pages are charged when written, not read)."""
    group = MemoryGroup(parent)
    driver = group.directory / "driver"
    driver.mkdir()
    try:
        with forked(
            lambda: run_in_driver(parent, image, containers=containers, readers=readers, namespaces=namespaces)
        ) as result:
            found = result()
    finally:
        _remove_when_empty(driver)
    memory = found["memory"]
    assert isinstance(memory, list)
    pc = found["page_cache"]
    sharing = None
    if isinstance(pc, dict):
        resident = pc["resident_bytes"]
        sharing = PageCacheSharing(
            _int(pc, "containers"),
            _int(pc, "file_bytes"),
            _int(pc, "charged_bytes"),
            resident if isinstance(resident, int) else None,
            _str(pc, "method"),
        )
    nt = found["net_teardown"]
    teardown = NetTeardown(
        _int(nt, "namespaces"), _num(nt, "freed_after_ms"), _num(nt, "kernel_work_ms"), _str(nt, "method")
    )
    return tuple(_kernel_memory(m) for m in memory), sharing, teardown


def _remove_when_empty(directory: Path, timeout: float = 2.0) -> None:
    """rmdir a group whose last process just exited (the kernel may still be removing it: EBUSY)."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            directory.rmdir()
            return
        except OSError as exc:
            if exc.errno != errno.EBUSY or time.monotonic() > deadline:
                raise
            time.sleep(0.01)
