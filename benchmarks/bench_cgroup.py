"""cgroup benchmark (issue #3): the cost of one group's life, nsprim vs raw file operations.

One iteration = create a group, set limits (memory.max, pids.max, CPU quota),
move a process in, move it back out, delete the group.

* ``nsprim`` — ``CGroup.create(name, parent, resources)``, ``add(pid)``,
  ``parent.add(pid)``, ``delete()``
* ``raw``    — the same system calls written by hand for the same directories
  (every hierarchy nsprim spans on this host, v1 cpuset initialised the same
  way): ``mkdir``, ``write`` of each limit, ``write`` of the pid, ``rmdir``.

Medians over many repetitions, interleaved in rounds so that drift on a noisy
machine hits both alike.  The ratio nsprim/raw is nsprim's overhead (Python
object work, validation, host detection, rollback bookkeeping).

Run as root: ``python benchmarks/bench_cgroup.py [--quick] [--json out.json]``.
"""

from __future__ import annotations

import os
import secrets
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
try:
    import nsprim.cgroup  # noqa: F401
except ImportError:  # running from a checkout without an install
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "src"))

import _harness as h  # after the path set-up above

from nsprim.cgroup import ROOT, CGroup, Controller, CpuResources, MemoryResources, PidsResources, Resources


def _resources(parent: CGroup) -> Resources:
    have = parent.host.controllers
    return Resources(
        memory=MemoryResources(max="64M") if Controller.MEMORY in have else None,
        pids=PidsResources(max=64) if Controller.PIDS in have else None,
        cpu=CpuResources(cpus=0.5) if Controller.CPU in have else None,
    )


def _raw_writes(parent: CGroup) -> list[tuple[Path, str, str, bool]]:
    """(parent dir, file, value, cpuset-copy) per write the raw case does, mirroring nsprim's plan."""
    writes: list[tuple[Path, str, str, bool]] = []
    for hier, d in parent.directories.items():
        v1 = hier.version == 1
        if v1 and Controller.CPUSET in hier.controllers:
            writes += [(d, "cpuset.cpus", "", True), (d, "cpuset.mems", "", True)]
        if Controller.MEMORY in hier.controllers:
            writes.append((d, "memory.limit_in_bytes" if v1 else "memory.max", str(64 << 20), False))
        if Controller.PIDS in hier.controllers:
            writes.append((d, "pids.max", "64", False))
        if Controller.CPU in hier.controllers:
            if v1:
                writes += [
                    (d, "cpu.cfs_quota_us", "-1", False),
                    (d, "cpu.cfs_period_us", "100000", False),
                    (d, "cpu.cfs_quota_us", "50000", False),
                ]
            else:
                writes.append((d, "cpu.max", "50000 100000", False))
    return writes


def _write(path: Path, value: str) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CLOEXEC)
    try:
        os.write(fd, value.encode())
    finally:
        os.close(fd)


def main(argv: Sequence[str] | None = None) -> int:
    """Run the benchmark and print medians and the nsprim/raw ratio; returns the exit status."""
    args = h.parse_args("nsprim cgroup benchmark (issue #3)", argv)
    cfg = h.Config.from_args(args)
    if os.geteuid() != 0:
        print("skipped: the cgroup benchmark needs root")
        return 0
    parent = CGroup.create(f"nsprim-bench-{secrets.token_hex(3)}", ROOT)
    sleeper = subprocess.Popen(["sleep", "3600"])
    try:
        parent.add(sleeper.pid)
        pid = str(sleeper.pid)
        resources = _resources(parent)
        dirs = list(parent.directories.values())
        writes = _raw_writes(parent)
        counter = [0]

        def nsprim_once() -> None:
            counter[0] += 1
            group = CGroup.create(f"n{counter[0]}", parent, resources)
            group.add(sleeper.pid)
            parent.add(sleeper.pid)
            group.delete()

        def raw_once() -> None:
            counter[0] += 1
            name = f"r{counter[0]}"
            for d in dirs:
                os.mkdir(d / name)
            for d, file, value, copy in writes:
                _write(d / name / file, (d / file).read_text().strip() if copy else value)
            for d in dirs:
                _write(d / name / "cgroup.procs", pid)
            for d in dirs:
                _write(d / "cgroup.procs", pid)
            for d in dirs:
                os.rmdir(d / name)

        print(
            f"host mode {parent.host.mode.value}; one group spans {len(dirs)} directories; "
            f"{cfg.iterations} iterations per case in {cfg.rounds} rounds"
            f"{' (quick: rough numbers)' if args.quick else ''}"
        )
        with h.LoadMonitor() as load:
            results = h.run_interleaved([h.Case("nsprim", h.timed(nsprim_once)), h.Case("raw", h.timed(raw_once))], cfg)
        h.print_table(results, "create + limits + add + move out + delete, per group")
        ratio = h.Ratio("nsprim / raw", results["nsprim"], results["raw"])
        h.print_ratios([ratio])
        print(load.describe())
        if args.json:
            h.write_json(args.json, h.as_json(results, [ratio], spans=len(dirs), mode=parent.host.mode.value))
    finally:
        sleeper.kill()
        sleeper.wait()
        parent.delete(recursive=True, timeout=5)
    return 0


if __name__ == "__main__":
    sys.exit(main())
