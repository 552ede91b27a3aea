"""A function the executor tests run inside containers: what a call sees of those before it."""

from __future__ import annotations

import os

MARK = "/.nsprim-executor-mark"


def leave_a_mark() -> dict[str, object]:
    """Whether an earlier call's mark is in this root, then leave one; this call's pid, cgroup members
    and UTS namespace."""
    seen = os.path.exists(MARK)
    with open(MARK, "w") as f:
        f.write("here")
    procs = "/sys/fs/cgroup/pids/cgroup.procs"  # v1 (a pids limit is set), else v2's one hierarchy
    with open(procs if os.path.exists(procs) else "/sys/fs/cgroup/cgroup.procs") as f:
        members = len(f.read().split())
    return {"seen": seen, "pid": os.getpid(), "members": members, "uts": os.readlink("/proc/self/ns/uts")}
