"""podman 4.3 (through conmon) with ``--runtime nsprim-runtime``: the commands a user types.

podman runs private to the test: its own root, run root and temporary
directory, the ``vfs`` storage driver (no mounts on the host), no network, and
its containers' cgroups under a parent of the test's own.  The image is a
busybox root file system made here and ``podman import``-ed.
"""

from __future__ import annotations

import os
import pty
import select
import subprocess
import tarfile
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from nsprim.cgroup import CGroup

from ..conftest import requires_root
from .bundles import make_rootfs
from .conftest import unique
from .podman import IMAGE, Podman

pytestmark = requires_root


@pytest.fixture(scope="module")
def podman(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Podman]:
    base = tmp_path_factory.mktemp("podman")
    parent = f"/{unique('test-podman')}"
    pm = Podman(base, parent)
    rootfs = make_rootfs(base / "rootfs")
    with tarfile.open(base / "rootfs.tar", "w") as tar:
        tar.add(rootfs, arcname=".")
    try:
        pm.ok("import", str(base / "rootfs.tar"), IMAGE)
        yield pm
    finally:
        pm("rm", "--all", "--force", "--time", "0")
        pm("rmi", "--all", "--force")
        with_groups = [Path(f"/sys/fs/cgroup/{c}{parent}") for c in os.listdir("/sys/fs/cgroup")]
        if any(d.is_dir() for d in with_groups):
            CGroup.open(parent).delete(recursive=True, timeout=10.0)


def test_run_echo(podman: Podman) -> None:
    assert podman.ok(*podman.run(IMAGE, "echo", "hi")) == "hi\n"


def test_the_exit_status_and_the_error_of_a_missing_program(podman: Podman) -> None:
    assert podman(*podman.run(IMAGE, "sh", "-c", "exit 7")).returncode == 7
    r = podman(*podman.run(IMAGE, "/bin/no-such-program"))
    assert r.returncode == 127 and "no-such-program" in r.stderr, r.stderr  # podman's "not found"


def test_detached_exec_pause_stop_rm(podman: Podman) -> None:
    name = unique("pm")
    podman.ok("run", "-d", "--name", name, "--cgroup-parent", podman.cgroup_parent, IMAGE, "sleep", "300")
    try:
        assert podman.ok("exec", name, "sh", "-c", "echo from exec $$").startswith("from exec ")
        podman.ok("pause", name)
        assert podman.ok("inspect", "--format", "{{.State.Status}}", name).strip() == "paused"
        podman.ok("unpause", name)
        assert podman.ok("inspect", "--format", "{{.State.Status}}", name).strip() == "running"
        podman.ok("stop", "--time", "1", name)  # sleep as pid 1 ignores SIGTERM: podman then kills
        assert podman.ok("inspect", "--format", "{{.State.Status}}", name).strip() == "exited"
    finally:
        podman.ok("rm", "--force", "--time", "0", name)
    assert name not in podman.ok("ps", "--all", "--format", "{{.Names}}").split()


def test_limits_user_and_read_only(podman: Podman) -> None:
    script = (
        "id -u; cat /sys/fs/cgroup/memory/memory.limit_in_bytes 2>/dev/null || cat /sys/fs/cgroup/memory.max; "
        "cat /sys/fs/cgroup/pids/pids.max 2>/dev/null || cat /sys/fs/cgroup/pids.max; "
        "touch /x 2>/dev/null || echo read-only; touch /tmp/y && echo tmp-writable"
    )
    out = podman.ok(
        *podman.run("--memory", "64m", "--pids-limit", "20", "--user", "1000", "--read-only", IMAGE, "sh", "-c", script)
    )
    assert out.split("\n") == ["1000", str(64 << 20), "20", "read-only", "tmp-writable", ""]


def test_interactive_with_a_terminal(podman: Podman) -> None:
    master, slave = pty.openpty()
    try:
        proc = subprocess.Popen(
            podman.argv(*podman.run("-it", IMAGE, "sh", "-c", "tty; read line; echo got $line")),
            stdin=slave, stdout=slave, stderr=slave, env=podman.env, start_new_session=True,
        )  # fmt: skip
        os.close(slave)
        slave = -1
        seen = _read_until(master, b"/dev/pts/", proc)
        os.write(master, b"typed\n")
        seen += _read_until(master, b"got typed", proc)
        assert proc.wait(timeout=30) == 0, seen
    finally:
        os.close(master)
        if slave >= 0:
            os.close(slave)


def _read_until(fd: int, want: bytes, proc: subprocess.Popen[bytes], timeout: float = 30.0) -> bytes:
    seen = b""
    deadline = time.monotonic() + timeout
    while want not in seen:
        left = deadline - time.monotonic()
        if left <= 0:
            proc.kill()
            proc.wait()
            raise AssertionError(f"never saw {want!r}: {seen!r}")
        if select.select([fd], [], [], left)[0]:
            try:
                seen += os.read(fd, 4096)
            except OSError:  # the other side closed
                break
    return seen
