"""Shared helpers for nsprim's benchmarks (spawn, cgroup, overlay, container).

A benchmark is a list of :class:`Case` objects, each able to run a *batch* of
iterations and return one wall time per iteration, in microseconds.  The
harness runs them interleaved in rounds (A, B, C, A, B, C, ...) so that slow
drift of a noisy machine (frequency, other tenants, asynchronous kernel
clean-up) hits every case alike, after a warm-up batch per case that is
discarded.  It reports medians and p90s, prints ratios against targets with
PASS/MISS, and can write everything as JSON::

    from benchmarks import _harness as h  # or: import _harness as h, from benchmarks/

    args = h.parse_args("spawn benchmark", argv)
    cases = [h.Case("ours", h.timed(lambda: do_it())), h.Case("theirs", h.timed(lambda: other()))]
    results = h.run_interleaved(cases, h.Config.from_args(args))
    h.print_table(results)
    h.print_ratios([h.Ratio("ours / theirs", results["ours"], results["theirs"], target=0.6)])

Tools a case needs are found with :func:`tool`, which prints a clear
``skipped: X not installed`` line when one is missing.  C helpers (such as
``floor.c``) are compiled on demand with ``cc -O2`` into ``benchmarks/bin/``
(git-ignored) by :func:`build_c`.
"""

from __future__ import annotations

import argparse
import gc
import json
import math
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

__all__ = [
    "BENCH_DIR",
    "BIN_DIR",
    "BatchRunner",
    "Case",
    "Config",
    "LoadMonitor",
    "Ratio",
    "Stats",
    "as_json",
    "build_c",
    "cpu_busy_us",
    "environment",
    "floor_runner",
    "parse_args",
    "percentile",
    "print_ratios",
    "print_table",
    "run_interleaved",
    "timed",
    "tool",
    "wait_for_quiet",
    "write_json",
]

BENCH_DIR = Path(__file__).resolve().parent
BIN_DIR = BENCH_DIR / "bin"

#: A batch runner: given a count, run that many iterations and return each one's wall time in µs.
BatchRunner = Callable[[int], list[float]]


# ---- statistics -------------------------------------------------------------------------


def percentile(samples: Sequence[float], q: float) -> float:
    """The *q*-th percentile (0..100) of *samples*, linearly interpolated (numpy's default)."""
    if not samples:
        return math.nan
    data = sorted(samples)
    pos = (len(data) - 1) * q / 100.0
    lo = math.floor(pos)
    hi = min(lo + 1, len(data) - 1)
    return data[lo] + (data[hi] - data[lo]) * (pos - lo)


@dataclass
class Stats:
    """The samples of one case (µs per iteration) and their summary."""

    name: str
    samples: list[float] = field(default_factory=list)
    note: str = ""

    @property
    def n(self) -> int:
        """Number of measured iterations."""
        return len(self.samples)

    @property
    def median(self) -> float:
        """Median wall time per iteration, µs."""
        return percentile(self.samples, 50)

    @property
    def p90(self) -> float:
        """90th percentile wall time per iteration, µs."""
        return percentile(self.samples, 90)

    @property
    def minimum(self) -> float:
        """Fastest iteration, µs."""
        return min(self.samples) if self.samples else math.nan

    def summary(self) -> dict[str, Any]:
        """A JSON-friendly summary (without the raw samples)."""
        return {
            "name": self.name,
            "n": self.n,
            "median_us": self.median,
            "p90_us": self.p90,
            "min_us": self.minimum,
            "note": self.note,
        }


# ---- cases and the interleaved runner --------------------------------------------------


def timed(fn: Callable[[], object], pace_s: float = 0.0) -> BatchRunner:
    """Turn a one-iteration callable into a :data:`BatchRunner` timed with ``perf_counter_ns``.

    *pace_s* sleeps between iterations, outside the timed region.
    """

    def run(count: int) -> list[float]:
        out: list[float] = []
        clock = time.perf_counter_ns
        for _ in range(count):
            if pace_s:
                time.sleep(pace_s)
            t0 = clock()
            fn()
            out.append((clock() - t0) / 1000.0)
        return out

    return run


@dataclass
class Case:
    """One thing to measure: a name and a batch runner.

    *note* is printed next to the results (say, which tool version or mode).
    """

    name: str
    run: BatchRunner
    note: str = ""


@dataclass
class Config:
    """How many iterations, in how many interleaved rounds, after how much warm-up."""

    iterations: int = 200
    rounds: int = 20
    warmup: int = 10
    disable_gc: bool = True

    @classmethod
    def from_args(cls, args: argparse.Namespace) -> Config:
        """The configuration :func:`parse_args` asked for (``--quick`` shrinks it)."""
        cfg = cls(iterations=40, rounds=5, warmup=3) if args.quick else cls()
        if args.iterations is not None:
            cfg.iterations = args.iterations
        if args.rounds is not None:
            cfg.rounds = args.rounds
        cfg.rounds = max(1, min(cfg.rounds, cfg.iterations))
        return cfg


def run_interleaved(cases: Sequence[Case], cfg: Config, *, progress: bool = True) -> dict[str, Stats]:
    """Run every case for ``cfg.iterations`` iterations, interleaved in ``cfg.rounds`` rounds.

    Each case first runs ``cfg.warmup`` iterations that are thrown away.  Then
    each round runs one batch of every case in turn (A, B, C, A, B, C, ...);
    the rest of an uneven split goes to the first rounds.  The garbage collector
    is off inside batches (as :mod:`timeit` does) unless ``cfg.disable_gc`` is
    false.  Returns the stats keyed by case name, in the order of *cases*.
    """
    results = {c.name: Stats(c.name, note=c.note) for c in cases}
    for c in cases:
        if cfg.warmup:
            c.run(cfg.warmup)
    base, extra = divmod(cfg.iterations, cfg.rounds)
    for r in range(cfg.rounds):
        count = base + (1 if r < extra else 0)
        if count == 0:
            continue
        for c in cases:
            gc.collect()
            was_enabled = gc.isenabled()
            if cfg.disable_gc:
                gc.disable()
            try:
                results[c.name].samples.extend(c.run(count))
            finally:
                if was_enabled:
                    gc.enable()
        if progress and sys.stderr.isatty():
            print(f"\r  round {r + 1}/{cfg.rounds}", end="", file=sys.stderr, flush=True)
    if progress and sys.stderr.isatty():
        print("\r" + " " * 30 + "\r", end="", file=sys.stderr, flush=True)
    return results


# ---- reporting ----------------------------------------------------------------------------


@dataclass
class Ratio:
    """``numerator.median / denominator.median``, checked against ``target`` (at most) if given."""

    label: str
    numerator: Stats
    denominator: Stats
    target: float | None = None

    @property
    def value(self) -> float:
        """The ratio of the medians."""
        d = self.denominator.median
        return self.numerator.median / d if d else math.nan

    @property
    def min_value(self) -> float:
        """The ratio of the minimums: steadier than the medians on a busy machine (information only)."""
        d = self.denominator.minimum
        return self.numerator.minimum / d if d else math.nan

    @property
    def passed(self) -> bool | None:
        """True/False against the target, None without one."""
        if self.target is None or math.isnan(self.value):
            return None
        return self.value <= self.target

    def summary(self) -> dict[str, Any]:
        """A JSON-friendly summary."""
        return {
            "label": self.label,
            "numerator": self.numerator.name,
            "denominator": self.denominator.name,
            "value": self.value,
            "min_value": self.min_value,
            "target": self.target,
            "passed": self.passed,
        }


def _fmt_us(v: float) -> str:
    return "n/a" if math.isnan(v) else f"{v:,.0f}"


def print_table(results: dict[str, Stats] | Sequence[Stats], title: str = "", file: Any = None) -> None:
    """Print one line per case: n, median, p90, min (µs), note."""
    out = file or sys.stdout
    stats = list(results.values()) if isinstance(results, dict) else list(results)
    width = max([len(s.name) for s in stats] + [4])
    if title:
        print(title, file=out)
    print(f"  {'case':<{width}}  {'n':>5}  {'median µs':>10}  {'p90 µs':>10}  {'min µs':>10}", file=out)
    for s in stats:
        line = f"  {s.name:<{width}}  {s.n:>5}  {_fmt_us(s.median):>10}  {_fmt_us(s.p90):>10}  {_fmt_us(s.minimum):>10}"
        if s.note:
            line += f"  ({s.note})"
        print(line, file=out)


def print_ratios(ratios: Sequence[Ratio], file: Any = None) -> None:
    """Print each ratio of medians with its target and PASS/MISS, and the ratio of minimums for reference."""
    out = file or sys.stdout
    width = max([len(r.label) for r in ratios] + [5])
    for r in ratios:
        verdict = ""
        if r.target is not None:
            verdict = f"target <= {r.target:.2f}x  {'PASS' if r.passed else 'MISS'}"
        print(f"  {r.label:<{width}}  {r.value:6.2f}x  {verdict}  (ratio of minimums {r.min_value:.2f}x)", file=out)


def write_json(path: str, payload: dict[str, Any]) -> None:
    """Write *payload* as JSON to *path* (``-`` for stdout)."""
    text = json.dumps(payload, indent=2, sort_keys=False)
    if path == "-":
        print(text)
    else:
        Path(path).write_text(text + "\n")


# ---- the environment ------------------------------------------------------------------------


#: podman's configuration for the benchmarks: no network, cgroupfs, events to a file (no systemd here).
PODMAN_CONF = """\
[containers]
netns = "none"
default_ulimits = ["nofile=1024:1024", "nproc=4096:4096"]
[engine]
cgroup_manager = "cgroupfs"
events_logger = "file"
"""


def private_podman(podman: str, base: Path) -> list[str]:
    """The start of a *podman* command line with storage, run and temporary directories of its own
    under *base* (vfs), configured by :data:`PODMAN_CONF` (set in this process's environment)."""
    (base / "containers.conf").write_text(PODMAN_CONF)
    os.environ["CONTAINERS_CONF"] = str(base / "containers.conf")
    return [podman, "--root", str(base / "p-root"), "--runroot", str(base / "p-run"), "--tmpdir",
            str(base / "p-tmp"), "--storage-driver", "vfs", "--cgroup-manager", "cgroupfs"]  # fmt: skip


def tool(name: str, *, quiet: bool = False) -> str | None:
    """The path of *name* on ``PATH``, or None after printing ``skipped: NAME not installed``."""
    path = shutil.which(name)
    if path is None and not quiet:
        print(f"skipped: {name} not installed")
    return path


def build_c(source: str | Path, name: str | None = None, extra_flags: Sequence[str] = ()) -> Path:
    """Compile benchmarks/*source* with ``cc -O2`` into ``benchmarks/bin/`` (when stale); return the binary.

    Raises :class:`RuntimeError` with the compiler's message when ``cc`` is
    missing or the build fails.
    """
    src = Path(source)
    if not src.is_absolute():
        src = BENCH_DIR / src
    out = BIN_DIR / (name or src.stem)
    if out.exists() and out.stat().st_mtime >= src.stat().st_mtime:
        return out
    cc = os.environ.get("CC") or shutil.which("cc") or shutil.which("gcc")
    if cc is None:
        raise RuntimeError("no C compiler (cc) found to build " + src.name)
    BIN_DIR.mkdir(exist_ok=True)
    tmp = out.with_suffix(".tmp")
    proc = subprocess.run(
        [cc, "-O2", "-Wall", "-o", str(tmp), str(src), *extra_flags], capture_output=True, text=True, check=False
    )
    if proc.returncode != 0:
        raise RuntimeError(f"building {src.name} failed:\n{proc.stderr}")
    tmp.replace(out)
    return out


def floor_runner(binary: Path, namespaces: Sequence[str], mode: str, pace_us: int = 0) -> BatchRunner:
    """A batch of ``floor.c``: one run of *binary* doing *count* clone+exec+wait, timed inside C."""

    def run(count: int) -> list[float]:
        out = subprocess.run(
            [str(binary), f"--mode={mode}", f"--pace-us={pace_us}", str(count), *namespaces],
            capture_output=True,
            text=True,
            check=False,
        )
        if out.returncode != 0:
            raise RuntimeError(f"floor failed: {out.stderr.strip()}")
        return [float(x) for x in json.loads(out.stdout)["us"]]

    return run


def cpu_busy_us() -> float:
    """Busy CPU time of the whole machine so far (all CPUs, everything but idle/iowait), in µs.

    The difference over a run, divided by its iterations, is the CPU cost per
    iteration *including work done elsewhere* (kernel threads freeing namespaces,
    say) — but also including whatever else the machine was doing.
    """
    with open("/proc/stat") as f:
        fields = f.readline().split()[1:]
    ticks = [int(x) for x in fields]
    # user nice system idle iowait irq softirq steal guest guest_nice; guest time is already in user.
    busy = sum(ticks[:8]) - ticks[3] - ticks[4]
    return busy * 1e6 / os.sysconf("SC_CLK_TCK")


class LoadMonitor:
    """Measures how busy the rest of the machine was during a ``with`` block.

    Background load = machine-wide busy CPU minus this process' own CPU and
    that of its reaped children, as a fraction of one core.  Kernel threads
    working for us (a kworker freeing network namespaces) count as background.
    On a noisy 2-core machine, numbers measured under more than ~30% background
    load are unreliable: the report says so.
    """

    def __init__(self) -> None:
        self.background = math.nan
        self._t0 = 0.0
        self._busy0 = 0.0
        self._own0 = 0.0

    @staticmethod
    def _own_us() -> float:
        t = os.times()
        return (t.user + t.system + t.children_user + t.children_system) * 1e6

    def __enter__(self) -> LoadMonitor:
        self._t0, self._busy0, self._own0 = time.monotonic(), cpu_busy_us(), self._own_us()
        return self

    def __exit__(self, *exc: object) -> None:
        wall_us = (time.monotonic() - self._t0) * 1e6
        other = (cpu_busy_us() - self._busy0) - (self._own_us() - self._own0)
        self.background = max(0.0, other / wall_us) if wall_us > 0 else math.nan

    def describe(self) -> str:
        """One line: the background load and whether to trust the numbers."""
        pct = self.background * 100
        verdict = "numbers unreliable, rerun on a quiet machine" if pct > 30 else "ok"
        return f"background load during the run: {pct:.0f}% of one core ({verdict})"


def wait_for_quiet(max_wait_s: float, threshold: float = 0.2, sample_s: float = 0.5) -> float:
    """Wait up to *max_wait_s* until the machine's busy CPU drops below *threshold* cores; return the last load.

    Useful on shared CI or developer machines where other jobs (VMs, test
    runs) come and go; a no-op when *max_wait_s* is 0.
    """
    deadline = time.monotonic() + max_wait_s
    load = math.nan
    while True:
        t0, c0 = time.monotonic(), cpu_busy_us()
        time.sleep(sample_s)
        load = (cpu_busy_us() - c0) / ((time.monotonic() - t0) * 1e6)
        if load < threshold or time.monotonic() >= deadline:
            return load


def parse_args(
    description: str, argv: Sequence[str] | None = None, extend: Callable[[argparse.ArgumentParser], None] | None = None
) -> argparse.Namespace:
    """The common command line: ``--quick``, ``--iterations``, ``--rounds``, ``--json PATH``.

    *extend* may add benchmark-specific options to the parser first.
    """
    p = argparse.ArgumentParser(description=description)
    p.add_argument("--quick", action="store_true", help="few iterations (CI smoke run; numbers are rough)")
    p.add_argument("--iterations", type=int, default=None, help="measured iterations per case (default 200)")
    p.add_argument("--rounds", type=int, default=None, help="interleaved rounds the iterations are split into")
    p.add_argument("--json", metavar="PATH", default=None, help="also write the results as JSON ('-': stdout)")
    p.add_argument(
        "--wait-quiet",
        type=float,
        default=0.0,
        metavar="S",
        help="first wait up to S seconds for the machine to be idle (< 0.2 cores busy)",
    )
    if extend is not None:
        extend(p)
    return p.parse_args(argv)


def environment() -> dict[str, Any]:
    """Facts about the run worth keeping next to the numbers."""
    return {
        "python": sys.version.split()[0],
        "kernel": os.uname().release,
        "cpus": os.cpu_count(),
        "loadavg": os.getloadavg(),
        "time": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }


def as_json(results: dict[str, Stats], ratios: Sequence[Ratio] = (), **extra: Any) -> dict[str, Any]:
    """Results and ratios in one JSON-friendly dict (raw samples included)."""
    return {
        "environment": environment(),
        "cases": [dict(s.summary(), samples_us=s.samples) for s in results.values()],
        "ratios": [r.summary() for r in ratios],
        **extra,
    }
