"""Scale study (issue #14): start latency and memory per sandbox against the number already alive.

For each tool, sleeping sandboxes (``/bin/sleep 600``) are started until 1, 10, 100 and 1,000 are alive
(``--quick``: 1, 10, 100); at each level, *probes* more sandboxes run ``/bin/true`` to completion, one after
the other, and their wall times are the start latency with that many alive.  The memory per live sandbox
is the growth of a memory cgroup holding the driver that starts them and all they make (the kernel charges
the process that allocates: the driver is a forked child in a ``driver`` group under this run's parent
group), divided by the number alive:

* **kernel** — ``memory.kmem.usage_in_bytes`` (cgroup v1) or ``memory.stat`` ``kernel`` (v2);
* **all** — ``memory.usage_in_bytes`` / ``memory.current``: kernel memory plus the sandboxes' own pages.

The tools, each with the same root (a static busybox, the image ``nsprim cost`` uses):

* ``nsprim`` — ``Container(["/bin/sleep", "600"]).image([root])`` started from the driver: an overlay
  root, every namespace but time and user, its own cgroup (memory and pids), Docker's security defaults;
  nothing of nsprim's stays per sandbox in the driver but the handle (no thread, no process);
* ``bwrap`` — ``bwrap --unshare-all --die-with-parent --ro-bind ROOT / --proc /proc --dev /dev``: no
  cgroup, no overlay (its bind root costs less than an overlay), and one bwrap monitor process per sandbox;
* ``runc`` — ``runc run -d`` of a bundle per sandbox (pid, network, ipc, uts, mount, cgroup namespaces,
  a read-only root, its cgroup under this run's parent), removed with ``runc delete -f``; at most
  ``--runc-max`` alive (default 100: each start and delete takes tens of milliseconds).

Beside the probes, at each level, bare starts from the driver (``nsprim.spawn``: fork+exec, and with a new
mount, network or pid namespace) and two references in C, each run as a process of its own with a handful of
descriptors (the driver holds one per live nsprim sandbox, which every clone copies and every exec closes):
``floor.c``'s clone+exec+wait and ``container_same.c``, exactly the system calls of nsprim's default
container (see ``bench_container.py``).  Their growth is the kernel's: what nsprim's grows beyond it is nsprim's.

The targets of the issue, checked for nsprim at the highest level: the kernel memory per sandbox within
10% of the kernel floor that ``nsprim cost`` measures (20 sleeping containers), and the start latency
within ±20% of the latency with one alive.  Where the kernel is the limit, the line says so.

Run as root: ``python benchmarks/bench_scale.py [--quick] [--levels 1,10,100,1000] [--probes N]
[--tools nsprim,bwrap,runc] [--runc-max N] [--no-c] [--json out.json] [--plot DIR]``.
Exit status 0 even on a MISS (a measurement, not a test) unless ``--strict``.
"""

from __future__ import annotations

import argparse
import contextlib
import gc
import json
import os
import resource
import secrets
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
try:
    import nsprim  # noqa: F401
except ImportError:  # running from a checkout without an install
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "src"))

import _harness as h  # after the path set-up above

from nsprim._sys import watcher
from nsprim.cgroup import ROOT, CGroup
from nsprim.cgroup.host import cached_host_info
from nsprim.container import Container, RunningContainer
from nsprim.costs.child import forked
from nsprim.costs.fixture import ScratchImage, scratch_image
from nsprim.costs.memory import MemoryGroup, measure_memory
from nsprim.namespace import NamespaceType
from nsprim.process import DEVNULL
from nsprim.spawning import spawn

__all__ = ["main"]

TARGET_MEMORY = 0.10  # per-sandbox kernel memory at the top level vs the floor of `nsprim cost`
TARGET_LATENCY = 0.20  # start latency at the top level vs with one alive
#: Bare starts timed at each level beside the sandboxes: what the kernel alone does with that many alive.
PRIMITIVES: dict[str, frozenset[NamespaceType]] = {
    "fork+exec": frozenset(),
    "+mnt": frozenset({NamespaceType.MNT}),
    "+net": frozenset({NamespaceType.NET}),
    "+pid": frozenset({NamespaceType.PID}),
}


@dataclass
class Tool:
    """How to start a sleeping sandbox (returns a stop function) and run one to completion."""

    name: str
    start_sleeper: Callable[[int], Callable[[], None]]
    run_true: Callable[[int], None]
    most: int | None = None
    note: str = ""


# ---- the tools ------------------------------------------------------------------------------------


def nsprim_tool(image: ScratchImage, parent: CGroup) -> Tool:
    sleeper = Container(["/bin/sleep", "600"]).image([image.root]).cgroup_parent(parent.path)
    true = Container(["/bin/true"]).image([image.root]).cgroup_parent(parent.path)

    def start(_: int) -> Callable[[], None]:
        c: RunningContainer = sleeper.start(stdout=DEVNULL)

        def stop() -> None:
            c.kill()
            c.wait()

        return stop

    def run(_: int) -> None:
        if true.run(stdout=DEVNULL).returncode != 0:
            raise RuntimeError("nsprim: /bin/true failed")

    return Tool("nsprim", start, run, note="Container(...).image([root]): overlay root, own cgroup, all but time/user")


def bwrap_tool(image: ScratchImage) -> Tool | None:
    bwrap = shutil.which("bwrap")
    if bwrap is None:
        print("skipped: bwrap not installed")
        return None
    base = [bwrap, "--unshare-all", "--die-with-parent", "--ro-bind", str(image.root), "/"]
    base += ["--proc", "/proc", "--dev", "/dev"]

    def start(_: int) -> Callable[[], None]:
        # A process group of its own: the monitor and the sandbox's pid 1 go together (killing the
        # monitor alone may leave a pid 1 that had not yet asked to die with it).
        p = subprocess.Popen([*base, "/bin/sleep", "600"], stdin=DEVNULL, stdout=DEVNULL, start_new_session=True)

        def stop() -> None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(p.pid, signal.SIGKILL)
            p.wait()

        return stop

    def run(_: int) -> None:
        subprocess.run([*base, "/bin/true"], check=True)

    return Tool("bwrap", start, run, note="--unshare-all, a read-only bind root, /proc, /dev; no cgroup")


def runc_tool(image: ScratchImage, parent: CGroup, work: Path, most: int) -> Tool | None:
    runc = shutil.which("runc")
    if runc is None:
        print("skipped: runc not installed")
        return None
    template = work / "template"
    template.mkdir()
    subprocess.run([runc, "spec"], cwd=template, check=True, capture_output=True)
    spec: dict[str, Any] = json.loads((template / "config.json").read_text())
    spec["root"] = {"path": str(image.root), "readonly": True}
    spec["process"]["terminal"] = False
    spec["linux"]["namespaces"] = [{"type": t} for t in ("pid", "network", "ipc", "uts", "mount", "cgroup")]
    spec["linux"].pop("resources", None)
    state = work / "state"
    tag = secrets.token_hex(3)

    def bundle(name: str, args: list[str]) -> Path:
        b = work / name
        b.mkdir()
        s = json.loads(json.dumps(spec))
        s["process"]["args"] = args
        s["linux"]["cgroupsPath"] = f"{parent.path}/{name}"
        (b / "config.json").write_text(json.dumps(s))
        return b

    def start(i: int) -> Callable[[], None]:
        cid = f"nss-{tag}-s{i}"
        b = bundle(cid, ["/bin/sleep", "600"])
        # (-d hands runc's own standard streams to the sandbox, which keeps them open: no pipes)
        with open(work / f"{cid}.log", "wb") as log:
            done = subprocess.run(
                [runc, "--root", str(state), "run", "-d", "--bundle", str(b), cid],
                stdin=DEVNULL,
                stdout=log,
                stderr=log,
            )
        if done.returncode != 0:
            raise RuntimeError(f"runc run -d {cid}: {(work / f'{cid}.log').read_text().strip()}")

        def stop() -> None:
            subprocess.run([runc, "--root", str(state), "delete", "-f", cid], check=False, capture_output=True)
            shutil.rmtree(b, ignore_errors=True)

        return stop

    def run(i: int) -> None:
        cid = f"nss-{tag}-t{i}"
        b = bundle(cid, ["/bin/true"])
        try:
            subprocess.run([runc, "--root", str(state), "run", "--bundle", str(b), cid], check=True, stdin=DEVNULL)
        finally:
            subprocess.run([runc, "--root", str(state), "delete", "-f", cid], check=False, capture_output=True)
            shutil.rmtree(b, ignore_errors=True)

    return Tool("runc", start, run, most=most, note=f"run -d per sandbox, at most {most} alive")


# ---- the study --------------------------------------------------------------------------------------


def study(
    tool: Tool, group: MemoryGroup, levels: list[int], probes: int, references: dict[str, h.BatchRunner]
) -> list[dict[str, Any]]:
    """Bring *tool*'s live sandboxes up to each level; measure there.  Runs in the driver.

    *references*: batches in C, each its own process (a handful of descriptors, not the driver's one per
    live sandbox), timed at each level beside the probes: what the kernel alone does with that many alive."""
    tool.run_true(-1)  # warm-up: caches, the first start of each kind
    stop = tool.start_sleeper(-1)
    stop()
    group.settled(1.0, tolerance=16384, interval=0.02)
    kernel0, usage0 = group.kernel(), group.usage()
    stops: list[Callable[[], None]] = []
    rows: list[dict[str, Any]] = []
    probe = 0
    try:
        for level in levels:
            if tool.most is not None and level > tool.most:
                break
            started = time.perf_counter()
            while len(stops) < level:
                stops.append(tool.start_sleeper(len(stops)))
            fill_s = time.perf_counter() - started
            group.settled(1.0, tolerance=16384, interval=0.02)
            kernel, usage = group.kernel() - kernel0, group.usage() - usage0
            times, cpu = [], []
            kernel_ms: dict[str, list[float]] = {name: [] for name in PRIMITIVES}
            collections = GcCounter()
            kworkers0 = kworker_cpu_ns()
            with collections:
                for _ in range(probes):
                    c0, t0 = cpu_ms(), time.perf_counter()
                    tool.run_true(probe)
                    times.append((time.perf_counter() - t0) * 1e3)
                    cpu.append(cpu_ms() - c0)
                    collections.pause()
                    probe += 1
                    for name, new in PRIMITIVES.items():
                        t0 = time.perf_counter()
                        spawn(["/bin/true"], new=new).wait()
                        kernel_ms[name].append((time.perf_counter() - t0) * 1e3)
                    collections.resume()
            kworkers_ms = kworker_ms_since(kworkers0) / probes
            in_c = {name: _reference(run, probes) for name, run in references.items()}
            rows.append(
                {
                    "live": level,
                    "start_ms_median": statistics.median(times),
                    "start_ms_p90": sorted(times)[int(0.9 * (len(times) - 1))],
                    "kernel_bytes_per_sandbox": kernel // level,
                    "all_bytes_per_sandbox": usage // level,
                    "driver_threads": len(os.listdir("/proc/self/task")),
                    "cpu_ms_median": statistics.median(cpu),
                    "kworker_ms_per_start": kworkers_ms,
                    "gc_per_start": collections.per_start(probes),
                    "primitives_ms": {name: statistics.median(v) for name, v in kernel_ms.items()},
                    "references_ms": {name: r["wall_ms"] for name, r in in_c.items()},
                    "references_cpu_ms": {name: r["cpu_ms"] for name, r in in_c.items()},
                    "references_kworker_ms": {name: r["kworker_ms"] for name, r in in_c.items()},
                    "fill_s": fill_s,
                }
            )
            print(f"  {tool.name}: {level} alive ({fill_s:.1f} s to start them)", file=sys.stderr, flush=True)
    finally:
        for s in stops:
            with contextlib.suppress(Exception):
                s()
    group.wait_below(kernel0 + (group.kernel() - kernel0) // 10 + kernel0 // 100, 10.0, interval=0.02)
    return rows


def cpu_ms() -> float:
    """The driver's CPU time so far and its reaped children's (the sandboxes' processes, the tools'), ms."""
    children = resource.getrusage(resource.RUSAGE_CHILDREN)
    return (time.process_time() + children.ru_utime + children.ru_stime) * 1e3


def kworker_cpu_ns() -> dict[int, int]:
    """The CPU time so far of every kernel worker (``kworker/*``: cgroup and namespace teardown run there),
    ns, by pid."""
    found: dict[int, int] = {}
    for entry in os.scandir("/proc"):
        if entry.name.isdigit():
            with contextlib.suppress(OSError, ValueError, IndexError):
                with open(f"/proc/{entry.name}/comm") as f:
                    if not f.read().startswith("kworker/"):
                        continue
                with open(f"/proc/{entry.name}/schedstat") as f:
                    found[int(entry.name)] = int(f.read().split()[0])
    return found


def kworker_ms_since(before: dict[int, int]) -> float:
    """The kernel workers' CPU time since *before*, ms: the workers alive now, each from its earlier reading
    (a worker that exited meanwhile takes its part along; one started meanwhile counts whole)."""
    return sum(ns - before.get(pid, 0) for pid, ns in kworker_cpu_ns().items()) / 1e6


def _reference(run: h.BatchRunner, count: int) -> dict[str, float]:
    """One batch of a reference in C: its median wall time, and its CPU (its own and its children's) and the
    kernel workers' per iteration, ms."""
    c0, k0 = resource.getrusage(resource.RUSAGE_CHILDREN), kworker_cpu_ns()
    us = run(count)
    kworkers, c1 = kworker_ms_since(k0), resource.getrusage(resource.RUSAGE_CHILDREN)
    spent = (c1.ru_utime + c1.ru_stime) - (c0.ru_utime + c0.ru_stime)
    return {
        "wall_ms": statistics.median(us) / 1e3,
        "cpu_ms": spent * 1e3 / count,
        "kworker_ms": kworkers / count,
    }


class GcCounter:
    """The driver's garbage collections (by generation) and their CPU time while counting (``gc.callbacks``)."""

    def __init__(self) -> None:
        self.count = [0, 0, 0]
        self.seconds = 0.0
        self._started = 0.0
        self._on = True

    def _callback(self, phase: str, info: dict[str, int]) -> None:
        if phase == "start":
            self._started = time.process_time()
        elif self._on:
            self.count[info["generation"]] += 1
            self.seconds += time.process_time() - self._started

    def pause(self) -> None:
        self._on = False

    def resume(self) -> None:
        self._on = True

    def per_start(self, starts: int) -> dict[str, object]:
        return {"collections": [c / starts for c in self.count], "ms": self.seconds * 1e3 / starts}

    def __enter__(self) -> GcCounter:
        gc.callbacks.append(self._callback)
        return self

    def __exit__(self, *_: object) -> None:
        gc.callbacks.remove(self._callback)


def _remove_runc_leftovers(parent: CGroup) -> None:
    """runc makes a container's cgroup path in every hierarchy (the named ``name=systemd`` one too) and
    removes only the container's own directory: remove the rest of this run's path it made there."""
    ours = set(parent.directories.values())
    for hierarchy in parent.host.hierarchies:
        top = hierarchy.directory(parent.path)
        if top in ours or not top.is_dir():
            continue
        for d in sorted((p for p in top.rglob("*") if p.is_dir()), key=lambda p: -len(p.parts)):
            d.rmdir()
        top.rmdir()


def c_references(image: ScratchImage, parent: CGroup, work: Path) -> dict[str, h.BatchRunner]:
    """The kernel's side alone, in C: a bare clone+exec+wait (``floor.c`` vfork), exactly the steps of
    nsprim's default container (``container_same.c``, as ``bench_container.py`` runs it), and the same
    without a memory cgroup (nor its cgroup file system): what the memory controller's part costs."""
    from bench_container import nsprim_hierarchies, write_default_seccomp

    found: dict[str, h.BatchRunner] = {}
    try:
        found["C fork+exec"] = h.floor_runner(h.build_c("floor.c"), (), "vfork")
        same = h.build_c("container_same.c")
    except RuntimeError as exc:
        print(f"skipped: a reference in C ({exc})")
        return found
    _, caps = write_default_seccomp(work / "seccomp.bpf")
    (work / "sstate").mkdir()
    argv = [str(same), f"--seccomp={work / 'seccomp.bpf'}", f"--caps={caps:x}"]
    dirs = nsprim_hierarchies(parent)
    memory = {str(d) for hier, d in parent.directories.items() if any(c.value == "memory" for c in hier.controllers)}

    def runner(groups: list[str]) -> h.BatchRunner:
        def run(count: int) -> list[float]:
            out = subprocess.run(
                [*argv, str(count), str(image.root), str(work / "sstate"), *groups], capture_output=True, text=True
            )
            if out.returncode != 0:
                raise RuntimeError(f"container_same failed: {out.stderr.strip()}")
            return [float(x) for x in json.loads(out.stdout)["us"]]

        return run

    found["C same steps"] = runner(dirs)
    found["C no memcg"] = runner([d for d in dirs if d not in memory])
    return found


def _driver(
    tools: list[Tool], group: MemoryGroup, levels: list[int], probes: int, references: dict[str, h.BatchRunner]
) -> dict[str, object]:
    (group.directory / "driver" / "cgroup.procs").write_text(str(os.getpid()))
    _soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))  # a handle per live container
    return {t.name: study(t, group, levels, probes, references) for t in tools}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--quick", action="store_true", help="levels 1, 10, 100; fewer probes")
    p.add_argument("--levels", help="comma-separated numbers of live sandboxes (default 1,10,100,1000)")
    p.add_argument("--probes", type=int, help="runs of /bin/true at each level (default 20; --quick 8)")
    p.add_argument("--tools", default="nsprim,bwrap,runc")
    p.add_argument("--runc-max", type=int, help="most runc sandboxes alive (default 100; --quick 10)")
    p.add_argument("--json", help="write the results as JSON to this file ('-': stdout)")
    p.add_argument("--plot", help="write scale.png into this directory (matplotlib)")
    p.add_argument("--no-c", action="store_true", help="without the references in C (floor.c, container_same.c)")
    p.add_argument("--strict", action="store_true", help="exit 1 when a target is missed")
    args = p.parse_args(argv)
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))  # clean up on a plain kill too
    if os.geteuid() != 0:
        print("bench_scale: needs root", file=sys.stderr)
        return 2
    levels = (
        [int(x) for x in args.levels.split(",")] if args.levels else [1, 10, 100] if args.quick else [1, 10, 100, 1000]
    )
    probes = args.probes or (8 if args.quick else 20)
    runc_max = args.runc_max or (10 if args.quick else 100)
    wanted = set(args.tools.split(","))
    info = cached_host_info()
    registered: list[tuple[Path, ...]] = []

    def register(dirs: tuple[Path, ...]) -> None:
        watcher.watch_cgroups(dirs)
        registered.append(dirs)

    with scratch_image(1 << 20) as image, tempfile.TemporaryDirectory(prefix="nsprim-scale-") as work:
        parent = CGroup.create(
            f"nsprim-scale-{secrets.token_hex(4)}", parent=os.environ.get("NSPRIM_CGROUP_PARENT") or ROOT,
            controllers=list(info.controllers), before_mkdir=register,
        )  # fmt: skip
        try:
            group = MemoryGroup(parent)
            memory, _, _ = measure_memory(parent, image, containers=20, readers=1, namespaces=1)
            floor = next(m for m in memory if m.holder.value == "container" and m.network_namespace)
            tools = [t for t in (
                nsprim_tool(image, parent) if "nsprim" in wanted else None,
                bwrap_tool(image) if "bwrap" in wanted else None,
                runc_tool(image, parent, Path(work), runc_max) if "runc" in wanted else None,
            ) if t is not None]  # fmt: skip
            references = c_references(image, parent, Path(work)) if not args.no_c else {}
            (group.directory / "driver").mkdir()
            try:
                with (
                    h.LoadMonitor() as load,
                    forked(lambda: _driver(tools, group, levels, probes, references)) as result,
                ):
                    found = result()
            finally:
                with contextlib.suppress(OSError):
                    (group.directory / "driver").rmdir()
        finally:
            parent.delete(recursive=True, timeout=5.0)
            for dirs in registered:
                watcher.forget_cgroups(dirs)
            _remove_runc_leftovers(parent)
    ok = report(found, floor.per_container_bytes, group.method.value, tools)
    print(load.describe())
    if args.json:
        doc = {
            "levels": levels,
            "probes": probes,
            "floor_kernel_bytes": floor.per_container_bytes,
            "background_cores": load.background,
            "environment": h.environment(),
            "tools": found,
        }
        text = json.dumps(doc, indent=2)
        if args.json == "-":
            print(text)
        else:
            Path(args.json).write_text(text)
    if args.plot:
        plot(found, Path(args.plot))
    return 1 if args.strict and not ok else 0


def report(found: dict[str, object], floor: int, method: str, tools: list[Tool]) -> bool:
    print(f"\nkernel memory from {method} of a group holding the driver and its sandboxes;")
    print(f"floor (nsprim cost, 20 sleeping containers with their own network namespace): {floor / 1024:.0f} kB\n")
    refs = sorted({name for t in tools for r in found[t.name] for name in r["references_ms"]})  # type: ignore[attr-defined]
    prims = "".join(f" {name:>10}" for name in PRIMITIVES) + "".join(f" {name:>13}" for name in refs)
    print(
        f"{'tool':<8} {'alive':>6} {'start ms':>9} {'p90':>7} {'kernel kB/sb':>13} {'all kB/sb':>10} "
        f"{'threads':>8}   bare starts, ms:{prims}"
    )
    for t in tools:
        rows = found[t.name]
        assert isinstance(rows, list)
        for r in rows:
            print(
                f"{t.name:<8} {r['live']:>6} {r['start_ms_median']:>9.2f} {r['start_ms_p90']:>7.2f} "
                f"{r['kernel_bytes_per_sandbox'] / 1024:>13.0f} {r['all_bytes_per_sandbox'] / 1024:>10.0f} "
                f"{r['driver_threads']:>8}                  "
                + "".join(f" {r['primitives_ms'][name]:>10.2f}" for name in PRIMITIVES)
                + "".join(f" {r['references_ms'].get(name, float('nan')):>13.2f}" for name in refs)
            )
        print(f"{'':<8} ({t.note})")
    print(
        "\nCPU per start, ms: the start's own (the driver and its reaped children), the kernel workers' meanwhile"
        "\n(cgroup and namespace teardown), the driver's garbage collections; the references in C likewise:"
    )
    head, nan = "".join(f" {name + ' cpu':>16} {'kworkers':>9}" for name in refs), float("nan")
    print(f"{'tool':<8} {'alive':>6} {'cpu':>7} {'kworkers':>9} {'gc/start':>9} {'gc ms':>7}{head}")
    for t in tools:
        rows = found[t.name]
        assert isinstance(rows, list)
        for r in rows:
            gc_ = r["gc_per_start"]
            print(
                f"{t.name:<8} {r['live']:>6} {r['cpu_ms_median']:>7.2f} {r['kworker_ms_per_start']:>9.2f} "
                f"{sum(gc_['collections']):>9.2f} {gc_['ms']:>7.3f}"
                + "".join(
                    f" {r['references_cpu_ms'].get(n, nan):>16.2f} {r['references_kworker_ms'].get(n, nan):>9.2f}"
                    for n in refs
                )
            )
    rows = found.get("nsprim")
    if not isinstance(rows, list) or len(rows) < 2:
        return True
    first, top = rows[0], rows[-1]
    mem = top["kernel_bytes_per_sandbox"] / floor - 1
    lat = top["start_ms_median"] / first["start_ms_median"] - 1
    mem_ok, lat_ok = abs(mem) <= TARGET_MEMORY, abs(lat) <= TARGET_LATENCY
    print(
        f"\nnsprim at {top['live']} alive: kernel memory per sandbox {mem:+.0%} of the floor "
        f"(target ±{TARGET_MEMORY:.0%}): {'PASS' if mem_ok else 'MISS'}"
    )
    print(
        f"nsprim at {top['live']} alive: start latency {lat:+.0%} of the latency with {first['live']} alive "
        f"(target ±{TARGET_LATENCY:.0%}): {'PASS' if lat_ok else 'MISS'}"
    )

    def grew(name: str, a: float, b: float) -> str:
        return f"{name} {b / a - 1:+.0%} ({b - a:+.2f} ms)"

    growth = [grew("nsprim", first["start_ms_median"], top["start_ms_median"])]
    for t in tools:
        other = found[t.name]
        assert isinstance(other, list)
        if t.name != "nsprim" and len(other) == len(rows):
            growth.append(grew(t.name, other[0]["start_ms_median"], other[-1]["start_ms_median"]))
    for name in ("fork+exec", *refs):
        key = "references_ms" if name in refs else "primitives_ms"
        if name in first[key] and name in top[key]:
            where = "" if name in refs else " (from the driver)"
            growth.append(grew(name + where, first[key][name], top[key][name]))
    print(f"growth of the wall time from {first['live']} to {top['live']} alive, same run: " + ", ".join(growth))
    cpu = [grew("nsprim", first["cpu_ms_median"], top["cpu_ms_median"])]
    cpu += [
        grew(n, first["references_cpu_ms"][n], top["references_cpu_ms"][n])
        for n in refs
        if n in first["references_cpu_ms"]
    ]
    print("growth of the CPU time, same run: " + ", ".join(cpu))
    same = "C same steps"
    if not lat_ok and same in first["references_ms"] and same in top["references_ms"]:
        kernel = top["references_ms"][same] - first["references_ms"][same]
        ours = top["start_ms_median"] - first["start_ms_median"]
        print(
            f"the kernel's part: nsprim's system calls alone, in C, grow by {kernel:+.2f} ms; "
            f"nsprim by {ours:+.2f} ms, {ours - kernel:+.2f} ms beyond them"
        )
    threads = {r["driver_threads"] for r in rows}
    print(f"driver threads at every level: {sorted(threads)} (nsprim keeps no thread per container)")
    return mem_ok and lat_ok


def plot(found: dict[str, object], directory: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    directory.mkdir(parents=True, exist_ok=True)
    fig, (lat, mem) = plt.subplots(1, 2, figsize=(10, 4))
    for i, (name, rows) in enumerate(found.items()):
        assert isinstance(rows, list)
        live, color = [r["live"] for r in rows], f"C{i}"
        lat.plot(live, [r["start_ms_median"] for r in rows], "o-", color=color, label=name)
        kernel = [r["kernel_bytes_per_sandbox"] / 1024 for r in rows]
        mem.plot(live, kernel, "o-", color=color, label=f"{name} (kernel)")
        mem.plot(live, [r["all_bytes_per_sandbox"] / 1024 for r in rows], "x:", color=color, label=f"{name} (all)")
        if name == "nsprim":  # the kernel's part beside it: the same system calls in C, with that many alive
            for ref, style in (("C same steps", "s--"), ("C no memcg", "^:")):
                if all(ref in r.get("references_ms", {}) for r in rows):
                    ys = [r["references_ms"][ref] for r in rows]
                    lat.plot(live, ys, style, color=color, alpha=0.6, label=f"{ref} ({name} alive)")
    for ax in (lat, mem):
        ax.set_xscale("log")
        ax.set_xlabel("sandboxes alive")
        ax.legend(fontsize="small")
    lat.set_ylabel("start latency, /bin/true to completion (ms, median)")
    mem.set_ylabel("memory per live sandbox (kB)")
    fig.suptitle("Start latency and memory against live sandboxes")
    fig.tight_layout()
    fig.savefig(directory / "scale.png", dpi=110)
    print(f"wrote {directory / 'scale.png'}")


if __name__ == "__main__":
    sys.exit(main())
