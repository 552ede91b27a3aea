"""The time of each primitive, against a bare fork+exec+wait of ``/bin/true``.

Cases of one kind are timed in interleaved rounds (one repeat of each case,
then the next round), so that a slow spell of the machine falls on every
case alike rather than on one.  A primitive's cost is its median less the
median of its reference case: the baseline for a namespace, the seccomp
filter and the capability drop; the mount and pid namespaces it needs for
``pivot_root`` with ``/proc`` and ``/dev``.  cgroup and overlay operations are
done by the parent (cgroups) or timed inside a scratch mount namespace
(overlays) and stand on their own.
"""

from __future__ import annotations

import contextlib
import errno
import os
import random
import signal
import tempfile
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path

from .._dataclass import dataclass
from ..cgroup import CGroup, Controller
from ..cgroup.host import Hierarchy
from ..container import Container, WarmContainer
from ..errors import NsprimError
from ..fs.overlay import OverlayMount
from ..fs.rootfs import RootFS
from ..namespace import NamespaceType, unshare
from ..plan import NoNewPrivs, Step
from ..process import DEVNULL
from ..security import SecurityPolicy
from ..security.steps import LoadSeccomp
from ..spawning import spawn
from .child import forked
from .fixture import ScratchImage
from .model import Cost, Kind, OverlayLayers, Spread

__all__ = [
    "Budget",
    "TRUE",
    "interleaved",
    "spawn_costs",
    "cgroup_costs",
    "overlay_costs",
    "container_costs",
]

#: The payload of every timed start: nothing to do, so that the start is all that is timed.
TRUE = "/bin/true"
BASELINE = "baseline"


@dataclass(frozen=True)
class Budget:
    """How much to measure: repeats per case and the sizes of the scaling measurements."""

    repeats: int
    container_repeats: int
    cgroup_repeats: int
    overlay_layers: tuple[int, ...]
    overlay_repeats: int
    memory_containers: int
    page_cache_containers: int
    page_cache_bytes: int
    net_teardown_namespaces: int


def interleaved(cases: Mapping[str, Callable[[], object]], repeats: int, *, warmup: int = 1) -> dict[str, list[float]]:
    """Each case's wall times (seconds) over *repeats* rounds, one call of each case per round.

    Each round takes the cases in another order (shuffled, the same for every run): what one case
    leaves behind (a network namespace's teardown, say) falls on every other case alike.
    """
    for once in cases.values():
        for _ in range(warmup):
            once()
    samples: dict[str, list[float]] = {name: [] for name in cases}
    clock = time.perf_counter
    order = list(cases.items())
    shuffle = random.Random(len(order)).shuffle
    for _ in range(repeats):
        shuffle(order)
        for name, once in order:
            t0 = clock()
            once()
            samples[name].append(clock() - t0)
    return samples


def _start_and_wait(
    argv: Sequence[str], new: frozenset[NamespaceType], steps: Sequence[Step] = ()
) -> Callable[[], None]:
    def once() -> None:
        proc = spawn(argv, new=new, steps=steps, stdout=DEVNULL)
        status = proc.wait()
        if status != 0:
            raise NsprimError(f"measure: `{argv[0]}` exited with {status} (namespaces {sorted(t.value for t in new)})")

    return once


def spawn_costs(image: ScratchImage, repeats: int) -> tuple[Cost, list[Cost]]:
    """The baseline, each namespace type alone, pivot_root with /proc and /dev, seccomp, the capability drop."""
    none: frozenset[NamespaceType] = frozenset()
    cases: dict[str, Callable[[], object]] = {BASELINE: _start_and_wait([TRUE], none)}
    for t in NamespaceType:
        cases[f"{t.value} namespace"] = _start_and_wait([TRUE], frozenset({t}))
    mnt_pid = frozenset({NamespaceType.MNT, NamespaceType.PID})
    cases["mnt+pid namespaces"] = _start_and_wait([TRUE], mnt_pid)
    root = RootFS(image.root, readonly=True, sysfs=False, enter="pivot_root", masked_paths=(), readonly_paths=())
    cases["pivot_root, /proc, /dev"] = _start_and_wait(["/bin/true"], mnt_pid, root.steps())
    policy = SecurityPolicy()
    program = policy.program()
    if program is not None:
        cases["seccomp filter"] = _start_and_wait([TRUE], none, (NoNewPrivs(), LoadSeccomp(program, 0)))
    caps = SecurityPolicy(seccomp=None, no_new_privs=False, umask=None, dumpable=True)
    cases["capability drop"] = _start_and_wait([TRUE], none, caps.steps())
    samples = interleaved(cases, repeats)
    base = Spread.of(samples.pop(BASELINE))
    baseline = Cost(BASELINE, Kind.BASELINE, base, base.median_ms, None, f"fork+exec+wait of {TRUE}")
    refs = {"pivot_root, /proc, /dev": "mnt+pid namespaces"}
    kinds = {"pivot_root, /proc, /dev": Kind.ROOT, "seccomp filter": Kind.SECURITY, "capability drop": Kind.SECURITY}
    notes = {
        "pivot_root, /proc, /dev": "a read-only root bound, /proc, a tmpfs /dev with its nodes, pivot_root",
        "seccomp filter": f"no_new_privs, Docker's default profile ({len(program) if program else 0} BPF instructions)",
        "capability drop": "to Docker's default set",
        "net namespace": "plus its teardown after exit: see below",
        "mnt+pid namespaces": "the reference of pivot_root",
    }
    spreads = {name: Spread.of(s) for name, s in samples.items()}
    costs = []
    for name, spread in spreads.items():
        ref = refs.get(name, BASELINE)
        ref_ms = spreads[ref].median_ms if ref in spreads else base.median_ms
        costs.append(
            Cost(name, kinds.get(name, Kind.NAMESPACE), spread, spread.median_ms - ref_ms, ref, notes.get(name, ""))
        )
    return baseline, costs


# ---- cgroups --------------------------------------------------------------------------------


def _device_of_root() -> str:
    st = os.stat("/")
    return f"{os.major(st.st_dev)}:{os.minor(st.st_dev)}"


def _limit(controller: Controller, version: int) -> tuple[str, str] | None:
    """The file and value of a typical limit of *controller* on cgroup *version*, or None if it has none."""
    if controller is Controller.MEMORY:
        return ("memory.limit_in_bytes", "67108864") if version == 1 else ("memory.max", "67108864")
    if controller is Controller.PIDS:
        return ("pids.max", "64")
    if controller is Controller.CPU:
        return ("cpu.cfs_quota_us", "50000") if version == 1 else ("cpu.max", "50000 100000")
    if controller is Controller.IO:
        dev = _device_of_root()
        return (
            ("blkio.throttle.read_bps_device", f"{dev} 104857600")
            if version == 1
            else ("io.max", f"{dev} rbps=104857600")
        )
    if controller is Controller.DEVICES:
        return ("devices.deny", "c 10:200 rwm")
    if controller is Controller.HUGETLB:
        return ("hugetlb.2MB.limit_in_bytes", "0") if version == 1 else ("hugetlb.2MB.max", "0")
    return None


def _write(path: Path, value: str) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CLOEXEC)
    try:
        os.write(fd, value.encode())
    finally:
        os.close(fd)


def _copy_cpuset(src: Path, dst: Path) -> None:
    for name in ("cpuset.cpus", "cpuset.mems"):
        if (dst / name).exists() and not (dst / name).read_text().strip():
            _write(dst / name, (src / name).read_text().strip() or "0")


@dataclass
class _Site:
    controller: Controller
    hierarchy: Hierarchy
    home: Path


def _sites(parent: CGroup) -> list[_Site]:
    info = parent.host
    dirs = parent.directories
    sites = []
    for controller in sorted(info.controllers, key=lambda c: c.value):
        h = info.controllers[controller]
        if h not in dirs:
            continue
        if h.version == 2 and controller.v2_name not in {c.value for c in parent.subtree_control}:
            continue
        sites.append(_Site(controller, h, dirs[h] / "home"))
    return sites


def cgroup_costs(parent: CGroup, repeats: int) -> tuple[list[Cost], dict[str, str]]:
    """Per controller: mkdir a group, write a limit, move a sleeping process in (and back out), rmdir.

    Everything happens under *parent*, a group this run made; the sleeping
    process is this run's too.  A limit the kernel refuses (a controller
    without that file, a device it does not throttle) is named in the row's note.
    """
    sites = _sites(parent)
    skipped: dict[str, str] = {}
    costs: list[Cost] = []
    if not sites:
        return costs, {"cgroups": "no controller this process may use"}
    sleeper = spawn(["/bin/sleep", "600"], stdout=DEVNULL)
    made: list[Path] = []
    try:
        pid = str(sleeper.pid).encode()
        for site in sites:
            if site.home in made:  # cgroup v2: one tree, one home, for every controller
                continue
            site.home.mkdir()
            made.append(site.home)
            if site.controller is Controller.CPUSET and site.hierarchy.version == 1:
                # v1 leaves a new cpuset empty (no process may join it); v2 inherits the parent's
                _copy_cpuset(site.hierarchy.mount_point, site.home.parent)
                _copy_cpuset(site.home.parent, site.home)
            _write(site.home / "cgroup.procs", pid.decode())
        for site in sites:
            name = f"{site.controller.value} (v{site.hierarchy.version})"
            limit = _limit(site.controller, site.hierarchy.version)
            group = site.home.parent / "g"
            copies = site.controller is Controller.CPUSET and site.hierarchy.version == 1
            note = f"limit {limit[0]}" if limit else "cpuset.cpus, cpuset.mems copied" if copies else "no limit file"
            if limit and not (site.home / limit[0]).exists():
                note, limit = f"no {limit[0]} here", None
            samples: list[float] = []
            try:
                for _ in range(repeats + 1):
                    t0 = time.perf_counter()
                    os.mkdir(group)
                    try:
                        if site.controller is Controller.CPUSET and site.hierarchy.version == 1:
                            _copy_cpuset(site.home, group)
                        if limit is not None:
                            _write(group / limit[0], limit[1])
                        _write(group / "cgroup.procs", pid.decode())
                        _write(site.home / "cgroup.procs", pid.decode())
                    finally:
                        os.rmdir(group)
                    samples.append(time.perf_counter() - t0)
            except OSError as exc:
                with contextlib.suppress(OSError):
                    _write(site.home / "cgroup.procs", pid.decode())
                with contextlib.suppress(OSError):
                    os.rmdir(group)
                skipped[f"cgroup {name}"] = f"{exc.strerror} ({errno.errorcode.get(exc.errno or 0, '?')})"
                continue
            spread = Spread.of(samples[1:])
            costs.append(Cost(f"cgroup {name}", Kind.CGROUP, spread, spread.median_ms, None, note))
    finally:
        sleeper.send_signal(signal.SIGKILL)
        sleeper.wait()
        for home in reversed(made):
            with contextlib.suppress(OSError):
                os.rmdir(home)
    return costs, skipped


# ---- overlays -------------------------------------------------------------------------------


def _overlay_in_scratch(layers: Sequence[int], repeats: int, scratch: Path) -> dict[str, object]:
    """In a new mount namespace: a tmpfs on *scratch*, the most *layers* lower directories, timed mounts."""
    unshare(NamespaceType.MNT)  # makes / private first: nothing here reaches the host
    from ..fs.mount import mount

    mount("tmpfs", scratch, "tmpfs", 0, "size=16m,mode=700")
    lowers = []
    for i in range(max(layers)):
        d = scratch / "l" / str(i)
        d.mkdir(parents=True)
        (d / f"f{i}").write_bytes(b"")
        lowers.append(d)
    upper, work, target = scratch / "u", scratch / "w", scratch / "m"
    for d in (upper, work, target):
        d.mkdir()
    out: dict[str, object] = {}
    for n in layers:
        overlay = OverlayMount(target, lowers[:n], upper, work)
        mounts, umounts = [], []
        for _ in range(repeats + 1):
            t0 = time.perf_counter()
            overlay.mount()
            t1 = time.perf_counter()
            overlay.unmount()
            umounts.append(time.perf_counter() - t1)
            mounts.append(t1 - t0)
        out[str(n)] = {"mount": mounts[1:], "umount": umounts[1:]}
    return out


def overlay_costs(layers: Sequence[int], repeats: int) -> list[OverlayLayers]:
    """An overlay mount and unmount with each number of *layers* lower layers (a tmpfs upper), in a child."""
    scratch = Path(tempfile.mkdtemp(prefix="nsprim-cost-overlay-"))
    try:
        with forked(lambda: _overlay_in_scratch(layers, repeats, scratch)) as result:
            found = result()
    finally:
        os.rmdir(scratch)
    rows = []
    for n in layers:
        entry = found[str(n)]
        assert isinstance(entry, dict)
        rows.append(OverlayLayers(n, Spread.of(entry["mount"]), Spread.of(entry["umount"])))
    return rows


# ---- whole containers -----------------------------------------------------------------------


def container_costs(image: ScratchImage, parent: CGroup, repeats: int, *, base_ms: float) -> list[Cost]:
    """A whole default container of *image* (overlay root, every namespace but time and user, its
    cgroup, Docker's security), cold and warm, with and without its own network namespace."""
    box = image.container("/bin/true").cgroup_parent(parent.path)
    host_net = box.network("host")
    cases: dict[str, Callable[[], object]] = {}

    def run(template: Container | WarmContainer) -> Callable[[], None]:
        def once() -> None:
            result = template.run()
            if result.returncode != 0:
                raise NsprimError(f"measure: the container exited with {result.returncode}")

        return once

    cases["container, cold"] = run(box)
    cases["container without netns, cold"] = run(host_net)
    with box.warm(2) as warm, host_net.warm(2) as warm_host:
        cases["container, warm"] = run(warm)
        cases["container without netns, warm"] = run(warm_host)
        samples = interleaved(cases, repeats)
    notes = {
        "container, cold": "Container(['/bin/true']).image([root]).run(): its own netns",
        "container without netns, cold": "the same with network('host')",
        "container, warm": "the same from Container.warm(2)",
        "container without netns, warm": "network('host') from Container.warm(2)",
    }
    return [
        Cost(name, Kind.CONTAINER, (s := Spread.of(v)), s.median_ms - base_ms, BASELINE, notes[name])
        for name, v in samples.items()
    ]
