"""Spawn benchmark (issue #2): ``/bin/true`` in new namespaces, nsprim vs ``unshare(1)`` vs a C floor.

Per-spawn wall time, from a warm Python process, interleaved in rounds:

* ``nsprim``   — ``nsprim.spawn(["/bin/true"], new={...}).wait()``
* ``unshare``  — ``subprocess.run(["unshare", --mount ... --pid --fork ..., "/bin/true"])``
* ``C floor``  — ``benchmarks/floor.c``: clone + execve + waitpid in a loop, timed inside C

once with mnt, uts, ipc, pid, net, user and cgroup namespaces and once without
net (a network namespace costs ~300 µs more and is freed asynchronously by a
kworker, whose CPU time competes with the next spawns on a 2-core machine).
Targets: nsprim <= 0.6x unshare and <= 1.3x the C floor, printed as PASS/MISS.

Run: ``python benchmarks/bench_spawn.py [--quick] [--json out.json] [--breakdown] [--cpu]``.
Exit status is 0 even on a MISS (it is a measurement, not a test) unless ``--strict``.
"""

from __future__ import annotations

import argparse
import math
import os
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
try:
    import nsprim
    import nsprim.lowlevel
except ImportError:  # running from a checkout without an install
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "src"))
    import nsprim
    import nsprim.lowlevel

import _harness as h  # after the path set-up above

ALL_NS = ("mnt", "uts", "ipc", "pid", "net", "user", "cgroup")
UNSHARE_OPTS = {
    "mnt": ["--mount"],
    "uts": ["--uts"],
    "ipc": ["--ipc"],
    "pid": ["--pid", "--fork"],  # --fork: /bin/true is pid 1 of the new namespace, as with nsprim
    "net": ["--net"],
    "user": ["--user"],
    "cgroup": ["--cgroup"],
}
TARGET_VS_UNSHARE = 0.6
TARGET_VS_FLOOR = 1.3
PAYLOAD = "/bin/true"


def unshare_argv(namespaces: Sequence[str]) -> list[str]:
    """The ``unshare(1)`` command line for *namespaces* (same order as the issue)."""
    argv = ["unshare"]
    for ns in namespaces:
        argv += UNSHARE_OPTS[ns]
    return [*argv, PAYLOAD]


def nsprim_case(namespaces: Sequence[str]) -> Callable[[], None]:
    """One ``nsprim.spawn(...).wait()`` that must exit 0."""
    new = set(namespaces)

    def once() -> None:
        if nsprim.spawn([PAYLOAD], new=new).wait() != 0:
            raise RuntimeError("nsprim: /bin/true failed")

    return once


def unshare_case(namespaces: Sequence[str]) -> Callable[[], None]:
    """One ``subprocess.run(["unshare", ...])`` that must exit 0."""
    argv = unshare_argv(namespaces)

    def once() -> None:
        if subprocess.run(argv, check=False).returncode != 0:
            raise RuntimeError(f"{' '.join(argv)} failed")

    return once


# ---- breakdown cases (--breakdown): where nsprim's time goes ------------------------------------


def breakdown_cases(namespaces: Sequence[str]) -> list[h.Case]:
    """nsprim with the Python front peeled off layer by layer, and its C core in fork mode."""
    from nsprim import plan as P
    from nsprim._sys import spawn as raw
    from nsprim.namespace import NamespaceType

    new = {NamespaceType.parse(n) for n in namespaces}
    flags = NamespaceType.mask(new)
    steps: list[P.Step] = []
    if NamespaceType.MNT in new:
        steps.append(P.Mount(None, "/", None, nsprim._sys.C.MS_REC | nsprim._sys.C.MS_PRIVATE))
    steps += [P.FdMap(()), P.Exec(PAYLOAD, [b"true"], dict(os.environ))]
    plan = P.Plan(tuple(steps))
    encoded = plan.encoded

    def start_cached() -> None:
        if nsprim.lowlevel.start(plan, clone_flags=flags).wait() != 0:
            raise RuntimeError("start failed")

    def core(use_vfork: bool) -> Callable[[], None]:
        def once() -> None:
            hd = raw.spawn(encoded, clone_flags=flags, use_vfork=use_vfork)
            rep = raw.read_report(hd)
            os.close(hd.report_fd)
            res = os.waitid(os.P_PIDFD, hd.pidfd, os.WEXITED)
            os.close(hd.pidfd)
            if rep is not None or res is None or res.si_status != 0:
                raise RuntimeError("core spawn failed")

        return once

    def front_only() -> None:
        # What spawn() does in Python before the clone, for this call: build, lower and encode the plan.
        env = dict(os.environ)
        st = [
            P.Mount(None, "/", None, nsprim._sys.C.MS_REC | nsprim._sys.C.MS_PRIVATE),
            P.FdMap(()),
            P.Exec(os.fsdecode(PAYLOAD), [os.fsencode(PAYLOAD)], env),
        ]
        pl = P.Plan(tuple(st))
        _ = pl.encoded, pl.vfork_safe

    return [
        h.Case("nsprim.lowlevel.start(cached plan)", h.timed(start_cached), "plan built and encoded once"),
        h.Case("core vfork (raw _sys.spawn)", h.timed(core(True)), "spawn + read_report + waitid"),
        h.Case("core fork (raw _sys.spawn)", h.timed(core(False)), "clone3 fork-like"),
        h.Case("python front only (no clone)", h.timed(front_only), "Plan+lower+encode, os.environ"),
    ]


# ---- machine-wide CPU per spawn (--cpu) ---------------------------------------------------------


def cpu_per_spawn(fn: Callable[[], object], count: int, settle_s: float = 0.25) -> tuple[float, float]:
    """(wall µs, machine-wide busy CPU µs) per iteration of *fn*, over *count* back-to-back iterations.

    Busy CPU is counted until *settle_s* after the last iteration, so that
    asynchronous teardown (net namespaces) is included, minus the machine's
    background rate measured just before and just after.  The CPU figure is
    NaN when that background was above 0.2 cores: then it cannot be told apart.
    """

    def rate() -> float:
        t0, c0 = time.monotonic(), h.cpu_busy_us()
        time.sleep(settle_s)
        return (h.cpu_busy_us() - c0) / ((time.monotonic() - t0) * 1e6)  # cores busy

    before = rate()
    t0, c0 = time.monotonic(), h.cpu_busy_us()
    for _ in range(count):
        fn()
    t1 = time.monotonic()
    time.sleep(settle_s)
    t2, c2 = time.monotonic(), h.cpu_busy_us()
    after = rate()
    background = (before + after) / 2
    busy = (c2 - c0) - background * (t2 - t0) * 1e6
    cpu = busy / count if max(before, after) < 0.2 else math.nan
    return (t1 - t0) * 1e6 / count, cpu


# ---- main -----------------------------------------------------------------------------------------


def _extend(p: argparse.ArgumentParser) -> None:
    p.add_argument("--breakdown", action="store_true", help="also time nsprim's layers (for profiling)")
    p.add_argument("--cpu", action="store_true", help="also measure machine-wide CPU per spawn (incl. kworkers)")
    p.add_argument(
        "--floor-mode",
        choices=("vfork", "fork", "clone3"),
        default="vfork",
        help="clone flavour of the C floor used for the ratio (default vfork, as nsprim uses here)",
    )
    p.add_argument(
        "--pace-us",
        type=int,
        default=0,
        metavar="US",
        help="sleep this long before every spawn, outside the timing (lets async netns teardown catch up)",
    )
    p.add_argument("--strict", action="store_true", help="exit 1 if a target is missed")


def run_group(
    label: str, namespaces: Sequence[str], floor: Path, args: argparse.Namespace, cfg: h.Config
) -> tuple[dict[str, h.Stats], list[h.Ratio], float]:
    """Measure one namespace set; print its table and ratios."""
    pace = args.pace_us / 1e6
    cases = [
        h.Case("nsprim", h.timed(nsprim_case(namespaces), pace), "spawn().wait()"),
        h.Case("unshare", h.timed(unshare_case(namespaces), pace), "subprocess.run(unshare ...)"),
        h.Case(
            "C floor",
            h.floor_runner(floor, namespaces, args.floor_mode, args.pace_us),
            f"floor.c, {args.floor_mode} mode",
        ),
    ]
    other = "fork" if args.floor_mode != "fork" else "vfork"
    cases.append(h.Case(f"C floor ({other})", h.floor_runner(floor, namespaces, other, args.pace_us), "for reference"))
    if args.breakdown:
        cases += breakdown_cases(namespaces)
    h.wait_for_quiet(args.wait_quiet)
    with h.LoadMonitor() as load:
        results = h.run_interleaved(cases, cfg)
    print()
    h.print_table(results, f"{label}: new {', '.join(namespaces)} — µs per spawn of {PAYLOAD}")
    print(f"  {load.describe()}")
    ratios = [
        h.Ratio("nsprim / unshare", results["nsprim"], results["unshare"], TARGET_VS_UNSHARE),
        h.Ratio("nsprim / C floor", results["nsprim"], results["C floor"], TARGET_VS_FLOOR),
    ]
    h.print_ratios(ratios)
    return results, ratios, load.background


def main(argv: Sequence[str] | None = None) -> int:
    """Run the spawn benchmark; returns the exit status."""
    args = h.parse_args("nsprim spawn benchmark (issue #2)", argv, _extend)
    cfg = h.Config.from_args(args)
    if os.geteuid() != 0:
        print("note: not root; new namespaces other than user may fail without a user namespace")
    floor = h.build_c("floor.c")
    have_unshare = h.tool("unshare") is not None
    if not have_unshare:
        return 0
    print(
        f"{cfg.iterations} spawns per case in {cfg.rounds} interleaved rounds after {cfg.warmup} warm-up"
        f"{' (quick: rough numbers)' if args.quick else ''}; python {sys.version.split()[0]}, "
        f"kernel {os.uname().release}, load {os.getloadavg()[0]:.2f}"
    )
    no_net = tuple(ns for ns in ALL_NS if ns != "net")
    payload: dict[str, object] = {"groups": {}}
    all_ratios: list[h.Ratio] = []
    # Without net first: the net group leaves kworkers freeing namespaces behind it.
    for label, namespaces in (("without net", no_net), ("with net", ALL_NS)):
        results, ratios, background = run_group(label, namespaces, floor, args, cfg)
        all_ratios += ratios
        payload["groups"][label] = h.as_json(  # type: ignore[index]
            results, ratios, namespaces=list(namespaces), background_load=background, pace_us=args.pace_us
        )
        if args.cpu:
            n = max(20, cfg.iterations // 2)
            print(f"  machine-wide CPU per spawn, {n} back-to-back (includes async teardown; noisy):")
            for name, fn in (("nsprim", nsprim_case(namespaces)), ("unshare", unshare_case(namespaces))):
                wall, cpu = cpu_per_spawn(fn, n)
                shown = "n/a (machine busy)" if math.isnan(cpu) else f"{cpu:7,.0f} µs"
                print(f"    {name:<8} wall {wall:7,.0f} µs   cpu {shown}")
                payload["groups"][label][f"cpu_{name}"] = {"wall_us": wall, "cpu_us": cpu}  # type: ignore[index]
    if args.json:
        h.write_json(args.json, payload)
    missed = [r for r in all_ratios if r.passed is False]
    return 1 if (args.strict and missed) else 0


if __name__ == "__main__":
    sys.exit(main())
