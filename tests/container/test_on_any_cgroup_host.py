"""Containers on whatever cgroup layout the host has (also run in the pure cgroup v2 VM: `nox -s vm`).

A directory root (the host's ``/``, read-only): the VM's kernel has no overlay module.
"""

from __future__ import annotations

import os
import signal
import sys

import pytest

import nsprim
from nsprim.container import Container

from ..conftest import requires_root

pytestmark = [requires_root, pytest.mark.cgroup_v2]

PYTHON = os.path.realpath(sys.executable)


def test_limits_are_enforced_and_reported() -> None:
    r = Container([PYTHON, "-c", "x = bytearray(200 << 20)"]).rootfs("/").memory("48M").run()
    assert r.returncode == -signal.SIGKILL and r.oom_killed
    r = Container(["sh", "-c", "echo $$; tail -n 1 /proc/self/cgroup"]).rootfs("/").pids(16).run(capture_output=True)
    pid, cgroup_line = (r.stdout or b"").decode().split()
    assert pid == "1" and cgroup_line.endswith(":/")  # its own cgroup namespace, rooted at its group


def test_freeze_exec_and_kill_the_whole_group() -> None:
    with Container(["sleep", "60"]).rootfs("/").memory("64M").init().start() as box:
        group = box.cgroup
        assert group is not None
        p = box.exec(["sleep", "60"])
        assert set(group.procs(recursive=True)) >= {box.pid, p.pid}
        box.freeze()
        assert group.frozen
        box.thaw()
        box.kill()
        assert box.wait(timeout=10) == -signal.SIGKILL
        assert p.wait(timeout=10) == -signal.SIGKILL  # reaped with the container
    assert not group.exists()
    assert isinstance(p, nsprim.Process)


def test_warm_starts_take_prepared_groups_and_namespaces() -> None:
    import time

    show = ["sh", "-c", "echo $$; tail -n 1 /proc/self/cgroup; readlink /proc/self/ns/net"]
    with Container(show).rootfs("/").memory("48M").pids(16).warm(2) as box:
        deadline = time.monotonic() + 20  # a slow VM: the pool fills in the background
        while box.hits == 0 and time.monotonic() < deadline:
            r = box.run(capture_output=True)
            assert r.returncode == 0, r.stderr
            pid, cgroup_line, net = (r.stdout or b"").decode().split()
            assert pid == "1" and cgroup_line.endswith(":/") and net != os.readlink("/proc/self/ns/net")
            assert r.stats is not None and r.stats.pids is not None and r.stats.pids.max == 16
            time.sleep(0.2)
        assert box.hits > 0 and box.error is None
