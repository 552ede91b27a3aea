"""Run a memory-hungry child under a limit, see the OOM kill reported, and compare limits() inside and outside.

Run as root: ``python examples/limits.py``.  Works on cgroup v2, v1 and
hybrid hosts; everything it creates (one group, a few children) is removed
before it exits, also on errors and Ctrl-C.
"""

from __future__ import annotations

import os
import secrets
import subprocess
import sys
from pathlib import Path

import nsprim.cgroup as cgroup
from nsprim.cgroup import ROOT, CGroup, CpuResources, MemoryResources, Resources

# Children block on stdin until they have been moved into the group.
WAIT = "import sys\nsys.stdin.readline()\n"
HOG = WAIT + "chunks = []\nwhile True:\n    chunks.append(b'x' * (4 << 20))\n"
REPORT = WAIT + "from nsprim.cgroup import limits\nprint(limits(), flush=True)\n"


def start_in(group: CGroup, code: str) -> subprocess.Popen[str]:
    """Start ``python -c code``, move it into *group*, then let it run."""
    env = dict(os.environ, PYTHONPATH=str(Path(cgroup.__file__).resolve().parents[2]))
    child = subprocess.Popen(
        [sys.executable, "-c", code], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, env=env
    )
    try:
        group.add(child.pid)
    except BaseException:
        child.kill()
        child.wait()
        raise
    assert child.stdin is not None
    child.stdin.write("go\n")
    child.stdin.flush()
    return child


def main() -> int:
    """Run the demonstration; returns the exit status."""
    if os.geteuid() != 0:
        print("run me as root", file=sys.stderr)
        return 1
    print(cgroup.host_info(), end="\n\n")
    limit = "64M"
    resources = Resources(memory=MemoryResources(max=limit), cpu=CpuResources(cpus=0.5))
    name = f"nsprim-example-{secrets.token_hex(3)}"
    with CGroup.create(name, ROOT, resources) as group:  # removed (processes killed first) on exit
        print(
            f"created {group.path} with memory.max={limit}, cpu=0.5 "
            f"(memory on cgroup v{group.version_of('memory')}, cpu on v{group.version_of('cpu')})"
        )

        before = group.memory_events().oom_kill
        hog = start_in(group, HOG)
        count = group.wait_oom_kill(since=before, timeout=30)
        status = hog.wait()
        print(
            f"OOM kill reported: oom_kill counter {before} -> {count}; the child exited with status {status}"
            f" ({'SIGKILL' if status == -9 else 'unexpected'})"
        )
        memory = group.stats().memory
        if memory is not None and memory.peak is not None:
            print(f"peak memory of the group: {memory.peak >> 20} MiB")

        reporter = start_in(group, REPORT)
        inside, _ = reporter.communicate(timeout=30)
        print(f"\nlimits() inside the group:  {inside.strip()}")
        print(f"limits() outside the group: {cgroup.limits()}")

        print("\n/proc/meminfo as the group would see it (first lines):")
        print("".join(cgroup.meminfo_view(group).splitlines(keepends=True)[:4]), end="")
    print(f"\nremoved {name}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
