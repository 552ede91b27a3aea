"""What a container sees at ``/sys/fs/cgroup``: its own groups, read-only, and nothing of the host's others."""

from __future__ import annotations

from pathlib import Path

import pytest

from nsprim.cgroup.host import cached_host_info
from nsprim.container import Container
from nsprim.container.rootfs import OwnGroupBind, root_steps
from nsprim.plan import Mount

from ..conftest import requires_root

pytestmark = requires_root


def test_v1_groups_are_bound_not_mounted(rootfs: Path, tmp_path: Path) -> None:
    # Each cgroup v1 mount makes the kernel drain every group of the v2 tree first
    # (cgroup_lock_and_drain_offline): a start would slow with the number of containers alive.
    v1 = tuple(h.mount_point for h in cached_host_info().hierarchies if h.version == 1 and h.controllers)
    if not v1:
        pytest.skip("no cgroup v1 hierarchy here")
    (tmp_path / "root").mkdir()
    steps = root_steps(Container(["true"]).rootfs(rootfs).config, tmp_path, userns=False, hierarchies=v1)
    assert not [s for s in steps if isinstance(s, Mount) and s.fstype == "cgroup"]
    assert sorted(Path(s.source) for s in steps if isinstance(s, OwnGroupBind) and s.source) == sorted(v1)


def test_the_groups_at_sys_fs_cgroup_are_the_containers_own(rootfs: Path) -> None:
    info = cached_host_info()
    if not any(h.version == 1 and h.mount_point.name == "memory" for h in info.hierarchies):
        pytest.skip("the memory controller is not on cgroup v1 here")
    script = (
        "cat /sys/fs/cgroup/memory/memory.limit_in_bytes /sys/fs/cgroup/pids/pids.max; "
        "ls /sys/fs/cgroup/memory/../memory >/dev/null && echo up-ok; "
        "ls -d /sys/fs/cgroup/memory/*/ 2>/dev/null | wc -l; "
        "grep ' /sys/fs/cgroup/' /proc/self/mountinfo; "
        "touch /sys/fs/cgroup/memory/x 2>&1; mkdir /sys/fs/cgroup/memory/sub 2>&1"
    )
    r = Container(["/bin/sh", "-c", script]).rootfs(rootfs).memory("48M").pids(33).run(capture_output=True)
    lines = (r.stdout or b"").decode().splitlines()
    assert lines[:2] == [str(48 << 20), "33"], r.stderr
    assert lines[2] == "up-ok"  # .. of the group is the tmpfs above it, not the host's hierarchy
    assert lines[3] == "0"  # no group below its own: none of the host's others
    mounts = {fields[4]: (fields[3], line) for line in lines if len(fields := line.split()) > 9 and " - " in line}
    for name in ("memory", "pids"):
        root, line = mounts[f"/sys/fs/cgroup/{name}"]
        assert root == "/", line  # its own group is the root it sees (its cgroup namespace's)
        assert " - cgroup cgroup " in line and "ro," in line.split()[5] + ",", line
    assert sum("Read-only file system" in line for line in lines) == 2
