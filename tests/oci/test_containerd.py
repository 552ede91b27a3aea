"""containerd 1.6 with its runc shim (``io.containerd.runc.v2``, what a Kubernetes node runs)
calling nsprim-runtime as its ``--runc-binary``.

containerd runs private to the test: its own root, state and sockets, no CRI
plugin, started in the test's mount namespace and stopped at the end.  The
shim calls the runtime with ``--root --log --log-format json`` and uses
``create``, ``start``, ``state``, ``exec --process --detach --pid-file``,
``ps --format json``, ``pause``, ``resume``, ``kill`` and ``delete``.
"""

from __future__ import annotations

import os
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from nsprim.cgroup import CGroup

from ..conftest import requires_root
from ..tools import need_tool
from .bundles import make_rootfs
from .conftest import runtime_command, unique

pytestmark = requires_root

DISABLED = ("cri", "snapshotter.v1.btrfs", "snapshotter.v1.zfs", "snapshotter.v1.aufs", "snapshotter.v1.devmapper")


class Containerd:
    def __init__(self, base: Path, cgroup_parent: str) -> None:
        self.base = base
        self.socket = base / "containerd.sock"
        self.cgroup_parent = cgroup_parent
        self.ctr = need_tool("ctr", "containerd")
        need_tool("containerd-shim-runc-v2", "containerd")
        self.rootfs = make_rootfs(base / "rootfs")

    def __call__(self, *args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
        argv = [self.ctr, "--address", str(self.socket), *args]
        return subprocess.run(argv, capture_output=True, text=True, timeout=timeout, stdin=subprocess.DEVNULL)

    def ok(self, *args: str) -> str:
        r = self(*args)
        assert r.returncode == 0, (args, r.stdout, r.stderr)
        return r.stdout

    def run(self, cid: str, *more: str) -> list[str]:
        """``ctr run`` through the runc shim with nsprim-runtime, on the test's root file system."""
        return [
            "run", "--runtime", "io.containerd.runc.v2", "--runc-binary", runtime_command()[0],
            "--cgroup", f"{self.cgroup_parent}/{cid}", *more, "--rootfs", str(self.rootfs), cid,
        ]  # fmt: skip


def _config(base: Path) -> str:
    disabled = ", ".join(f'"io.containerd.{"grpc.v1." if p == "cri" else ""}{p}"' for p in DISABLED)
    return (
        f'version = 2\nroot = "{base}/root"\nstate = "{base}/state"\ndisabled_plugins = [{disabled}]\n'
        f'[grpc]\n  address = "{base}/containerd.sock"\n[ttrpc]\n  address = "{base}/containerd-ttrpc.sock"\n'
        '[metrics]\n  address = ""\n'
    )


@pytest.fixture(scope="module")
def containerd(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Containerd]:
    base = tmp_path_factory.mktemp("containerd")
    daemon = need_tool("containerd", "containerd")
    ctd = Containerd(base, f"/{unique('test-ctr')}")
    (base / "config.toml").write_text(_config(base))
    with (base / "containerd.log").open("w") as log:
        proc = subprocess.Popen([daemon, "--config", str(base / "config.toml")], stdout=log, stderr=log)
    try:
        deadline = time.monotonic() + 30
        while ctd("version").returncode != 0:
            assert proc.poll() is None and time.monotonic() < deadline, (base / "containerd.log").read_text()
            time.sleep(0.05)
        yield ctd
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        if any(Path(f"/sys/fs/cgroup/{c}{ctd.cgroup_parent}").is_dir() for c in os.listdir("/sys/fs/cgroup")):
            CGroup.open(ctd.cgroup_parent).delete(recursive=True, timeout=10.0)


def test_ctr_run_prints_hi(containerd: Containerd) -> None:
    cid = unique("ctr")
    assert containerd.ok(*containerd.run(cid, "--rm"), "/bin/echo", "hi") == "hi\n"
    assert cid not in containerd.ok("containers", "list", "--quiet").split()


def test_the_exit_status_comes_back(containerd: Containerd) -> None:
    cid = unique("ctr")
    r = containerd(*containerd.run(cid, "--rm"), "/bin/sh", "-c", "exit 5")
    assert r.returncode == 5, r.stderr


def test_a_detached_task_exec_ps_pause_kill(containerd: Containerd) -> None:
    cid = unique("ctr")
    containerd.ok(*containerd.run(cid, "--detach"), "/bin/sleep", "300")
    try:
        out = containerd.ok("task", "exec", "--exec-id", "e1", cid, "/bin/sh", "-c", "echo from exec")
        assert out == "from exec\n"
        pids = containerd.ok("task", "ps", cid).split("\n")[1:]
        assert len([line for line in pids if line.strip()]) >= 1
        containerd.ok("task", "pause", cid)
        assert "PAUSED" in containerd.ok("task", "list")
        containerd.ok("task", "resume", cid)
        containerd.ok("task", "kill", "--signal", "SIGKILL", cid)
        deadline = time.monotonic() + 20
        while "STOPPED" not in next((t for t in containerd.ok("task", "list").splitlines() if cid in t), ""):
            assert time.monotonic() < deadline
            time.sleep(0.05)
    finally:
        containerd("task", "delete", "--force", cid)
        containerd.ok("containers", "delete", cid)
