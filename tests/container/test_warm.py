"""Warm containers: network namespaces and cgroups made ahead, each used once, nothing left behind."""

from __future__ import annotations

import os
import time
from pathlib import Path

import pytest

from nsprim.container import Container, WarmContainer
from nsprim.container.warm import MAX_BACKLOG
from nsprim.errors import ConfigError, ExecutableNotFoundError
from nsprim.namespace import NamespaceType

from ..conftest import cpu_hogs, requires_root

pytestmark = requires_root

TRUE = ["/bin/sh", "-c", "exit 0"]
SHOW = "readlink /proc/self/ns/net; cat /sys/class/net/lo/operstate; ls /sys/class/net; cat /proc/self/cgroup"


def _netns_fds() -> set[str]:
    """Our descriptors open on network and mount namespaces."""
    found = set()
    for fd in os.listdir("/proc/self/fd"):
        try:
            target = os.readlink(f"/proc/self/fd/{fd}")
        except OSError:
            continue
        if target.startswith(("net:[", "mnt:[")):
            found.add(target)
    return found


def _wait_ready(box: WarmContainer, timeout: float = 5.0) -> None:
    """Until the pool thread has filled the pool (it starts empty)."""
    supply = box._supply
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if (not supply.wants_netns or len(supply._netns) >= supply.size) and (
            not supply.wants_cgroups or len(supply._cgroups) >= supply.size
        ):
            return
        time.sleep(0.01)
    raise AssertionError(f"the pool did not fill: {box.error!r}")


def test_each_warm_container_gets_its_own_fresh_network_namespace_and_cgroup(rootfs: Path) -> None:
    host_net = os.readlink("/proc/self/ns/net")
    fds_before = _netns_fds()
    with Container(["/bin/sh", "-c", SHOW]).rootfs(rootfs).memory("64M").pids(32).warm(2) as box:
        _wait_ready(box)
        for _ in range(4):
            r = box.run(capture_output=True)
            assert r.returncode == 0, r.stderr
            net, state, ifaces, *cgroup_lines = r.stdout.decode().split("\n")
            assert net.startswith("net:[") and net != host_net
            assert state in ("unknown", "up")  # the loopback is up ("unknown" is how lo reports it)
            assert ifaces == "lo"  # nothing else: no host interface
            assert all(line.endswith(":/") for line in cgroup_lines if line)  # its own cgroup namespace
            assert r.stats is not None and r.stats.pids is not None and r.stats.pids.max == 32
            assert r.stats.memory is not None and r.stats.memory.limit == 64 << 20
        assert box.hits >= 2, (box.hits, box.misses)
        assert box.error is None
    assert _netns_fds() == fds_before  # every prepared namespace closed: used ones by the start, the rest by close()


def test_containers_alive_at_once_never_share_a_prepared_namespace(rootfs: Path) -> None:
    # (Namespace inode numbers are recycled once a namespace is freed: compare while all are alive.)
    host = {os.readlink(f"/proc/self/ns/{t}") for t in ("net", "mnt")}
    with Container(["/bin/sleep", "30"]).rootfs(rootfs).memory("64M").warm(2) as box:
        _wait_ready(box)
        boxes = [box.start() for _ in range(4)]
        try:
            ids = [(os.readlink(f"/proc/{c.pid}/ns/net"), os.readlink(f"/proc/{c.pid}/ns/mnt")) for c in boxes]
        finally:
            for c in boxes:
                c.close()
        assert box.hits >= 2
    assert len({net for net, _ in ids}) == 4 and len({mnt for _, mnt in ids}) == 4
    assert not host & {x for pair in ids for x in pair}


def test_close_removes_what_no_container_used(rootfs: Path) -> None:
    box = Container(TRUE).rootfs(rootfs).memory("64M").warm(3)
    _wait_ready(box)
    ready = list(box._supply._cgroups)
    assert len(ready) == 3 and all(cg.exists() for cg in ready)
    for cg in ready:  # made with the limits already in place
        assert cg.stats().memory is not None and cg.stats().memory.limit == 64 << 20  # type: ignore[union-attr]
    box.close()
    assert not any(cg.exists() for cg in ready)
    box.close()  # idempotent


def test_a_failed_start_from_the_pool_leaves_nothing(rootfs: Path) -> None:
    fds_before = _netns_fds()
    with Container(["/bin/no-such-program"]).rootfs(rootfs).warm(1) as box:
        _wait_ready(box)
        with pytest.raises(ExecutableNotFoundError):
            box.run()
        assert box.hits == 2  # the namespace and the group were taken, and are gone again
    assert _netns_fds() == fds_before


def test_the_pool_applies_only_where_it_can(rootfs: Path) -> None:
    named = Container(TRUE).rootfs(rootfs).name(f"nsprim-warm-named-{os.getpid()}")
    with named.warm(1) as box:
        assert not box._supply.wants_cgroups and box._supply.wants_netns
        assert box.run().returncode == 0
        assert box.run().returncode == 0  # its group was removed before run() returned: the name is free
    with Container(TRUE).rootfs(rootfs).network("host").warm(1) as box:
        assert not box._supply.wants_netns
        assert box.run().returncode == 0
    with Container(TRUE).rootfs(rootfs).user_namespace().warm(1) as box:
        assert not box._supply.wants_netns  # a user namespace must own its network namespace
        assert box.run().returncode == 0


def test_a_forked_child_starts_the_ordinary_way(rootfs: Path) -> None:
    with Container(TRUE).rootfs(rootfs).warm(1) as box:
        _wait_ready(box)
        pid = os.fork()
        if pid == 0:  # pragma: no cover - the child reports through its status
            try:
                ok = box._prepared_supply() is None and box._supply._closed and not box._supply._netns
                ok = ok and box.run().returncode == 0
                os._exit(0 if ok else 1)
            except BaseException:
                os._exit(2)
        _, status = os.waitpid(pid, 0)
        assert os.waitstatus_to_exitcode(status) == 0
        assert box.run().returncode == 0  # the parent's pool is intact


def test_bad_pool_size() -> None:
    for size in (0, -1, True, 1.5):
        with pytest.raises(ConfigError, match="pool size"):
            Container(["/bin/true"]).host_root().warm(size)  # type: ignore[arg-type]


def test_ended_containers_groups_are_removed_by_the_pool(rootfs: Path) -> None:
    with Container(["/bin/sh", "-c", "sleep 0.1"]).rootfs(rootfs).memory("64M").warm(1) as box:
        _wait_ready(box)
        with box.start() as c:
            assert c.cgroup is not None
            dirs = list(c.cgroup.directories.values())
            assert all(d.is_dir() for d in dirs)
            assert c.wait() == 0
        assert c.cgroup is None  # handed to the pool's thread
        deadline = time.monotonic() + 2.0
        while any(d.exists() for d in dirs) and time.monotonic() < deadline:
            time.sleep(0.01)
        assert not any(d.exists() for d in dirs)
        # a container that is still running when closed: killed, then removed the same way
        c = box.start()
        dirs = list(c.cgroup.directories.values())  # type: ignore[union-attr]
        c.close()
    assert not any(d.exists() for d in dirs)  # close() waits for the pool's removals


def _mount_shape(mountinfo: str) -> list[str]:
    """mountinfo without the ids and device numbers that differ from one container to the next."""
    return sorted(" ".join(line.split()[3:]) for line in mountinfo.splitlines())


def test_a_root_made_ahead_looks_exactly_like_one_made_at_start(rootfs: Path) -> None:
    show = [
        "/bin/sh",
        "-c",
        "cat /proc/self/mountinfo; echo; ls /dev; readlink /proc/self/ns/mnt; echo hi > /x; cat /x",
    ]
    box = Container(show).image([rootfs]).memory("64M")  # an overlay with a throwaway upper layer
    cold = box.run(capture_output=True)
    assert cold.returncode == 0, cold.stderr
    with box.warm(2) as w:
        _wait_ready(w)
        assert all(mnt >= 0 and root >= 0 for _net, mnt, root in w._supply._netns)  # the roots were made ahead
        for _ in range(3):
            r = w.run(capture_output=True)
            assert r.returncode == 0, r.stderr
            mounts, rest = r.stdout.decode().split("\n\n")
            assert _mount_shape(mounts) == _mount_shape(cold.stdout.decode().split("\n\n")[0])
            *_dev, _mnt, hi = rest.split()
            assert rest.split()[:-2] == cold.stdout.decode().split("\n\n")[1].split()[:-2]  # the same /dev
            assert hi == "hi"


def test_keep_fd_needs_a_shared_descriptor_table() -> None:
    import nsprim.lowlevel
    from nsprim.errors import StepError
    from nsprim.plan import KeepFd, Plan

    with pytest.raises(StepError, match="open `/proc/thread-self/ns/mnt`: Invalid argument"):
        nsprim.lowlevel.start(Plan((KeepFd("/proc/thread-self/ns/mnt"),)), keep_fds=1)


def test_a_pool_left_open_is_closed_at_exit(tmp_path: Path) -> None:
    import subprocess
    import sys

    import nsprim

    script = (
        "import time\n"
        "from nsprim.container import Container\n"
        "box = Container(['true']).host_root().memory('64M').warm(2)\n"
        "deadline = time.monotonic() + 10\n"
        "while len(box._supply._cgroups) < 2 and time.monotonic() < deadline:\n"
        "    time.sleep(0.01)\n"
        "print(*(d for cg in box._supply._cgroups for d in cg.directories.values()))\n"
    )
    src = str(Path(nsprim.__file__).resolve().parent.parent)
    env = {**os.environ, "PYTHONPATH": src}
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, env=env, timeout=60)
    assert out.returncode == 0, out.stderr
    dirs = [Path(d) for d in out.stdout.split()]
    assert dirs and not any(d.exists() for d in dirs)  # removed at exit, not later by the watcher


def test_a_failing_pool_falls_back_and_leaves_nothing(rootfs: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from nsprim import _sys
    from nsprim.errors import SyscallError

    def refuse(*, lo_up: bool = True) -> int:
        raise SyscallError(1, "unshare", detail="make a network namespace")

    monkeypatch.setattr(_sys, "netns_new", refuse)
    fds_before = _netns_fds()
    with Container(TRUE).rootfs(rootfs).memory("64M").warm(2) as box:
        deadline = time.monotonic() + 5
        while box.error is None and time.monotonic() < deadline:
            time.sleep(0.01)
        assert isinstance(box.error, SyscallError) and "network namespace" in str(box.error)
        for _ in range(2):  # the ordinary way now, all of it
            assert box.run().returncode == 0
    assert _netns_fds() == fds_before


def test_joining_a_mount_namespace_puts_the_root_where_asked(rootfs: Path) -> None:
    import nsprim.lowlevel
    from nsprim.plan import Exec, FdMap, Plan, SetNs

    mnt = os.open("/proc/self/ns/mnt", os.O_RDONLY | os.O_CLOEXEC)
    root = os.open(rootfs, os.O_PATH | os.O_DIRECTORY | os.O_CLOEXEC)
    r, w = os.pipe2(os.O_CLOEXEC)
    try:
        plan = Plan(
            (
                SetNs(mnt, NamespaceType.MNT.flag, root_fd=root),  # as a chrooted caller's pool needs
                FdMap(((w, 1),)),
                Exec("/bin/sh", ["sh", "-c", "cat /marker; pwd"], {}),
            )
        )
        with nsprim.lowlevel.start(plan, close_after=[w]) as p:
            assert p.wait() == 0
        assert os.read(r, 100) == b"inside\n/\n"  # the busybox root's own file, from its /
    finally:
        for fd in (mnt, root, r):
            os.close(fd)


def test_many_threads_share_one_warm_template(rootfs: Path) -> None:
    import threading

    results: list[int] = []
    errors: list[BaseException] = []
    with Container(["/bin/sh", "-c", "readlink /proc/self/ns/net"]).image([rootfs]).memory("64M").warm(3) as box:

        def worker() -> None:
            try:
                for _ in range(6):
                    r = box.run(capture_output=True)
                    results.append(r.returncode)
                    nets.append(r.stdout)
            except BaseException as exc:  # pragma: no cover - reported below
                errors.append(exc)

        nets: list[bytes | None] = []
        threads = [threading.Thread(target=worker) for _ in range(8)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
    assert not errors, errors
    assert results == [0] * 48
    assert all(n and n.startswith(b"net:[") for n in nets)


def test_removing_an_ended_containers_group_handles_stragglers_and_children() -> None:
    import subprocess

    from nsprim.cgroup import CGroup
    from nsprim.container.host import remove_group

    parent = os.environ.get("NSPRIM_CGROUP_PARENT")
    if not parent:
        pytest.skip("no cgroup parent for this run")
    cg = CGroup.create(f"nsprim-{os.getpid():x}rm", parent=parent)
    cg.child("sub")
    straggler = subprocess.Popen(["sleep", "60"])
    try:
        cg.add(straggler.pid)
        dirs = list(cg.directories.values())
        remove_group(cg, forget=False)  # the fast path refuses: members and a child group
        assert straggler.wait(timeout=10) == -9
        assert not any(d.exists() for d in dirs)
    finally:
        if straggler.poll() is None:
            straggler.kill()
            straggler.wait()


def _group_names() -> set[str]:
    """The groups in this test run's cgroup (where containers go), by name."""
    session = os.environ.get("NSPRIM_CGROUP_PARENT", "").lstrip("/")
    assert session, "no cgroup for this test run"
    return {g.name for h in Path("/sys/fs/cgroup").iterdir() if (h / session).is_dir() for g in (h / session).iterdir()}


@pytest.mark.slow
def test_a_pool_starved_of_cpu_owes_only_a_bounded_number_of_removals(rootfs: Path) -> None:
    """Its thread runs only on an idle CPU: with the CPUs busy, ended groups must not pile up."""
    before = _group_names()
    most = 0
    with cpu_hogs(2) as cpus:
        affinity = os.sched_getaffinity(0)
        os.sched_setaffinity(0, cpus)  # this thread, so the pool's thread and the containers too
        try:
            with Container(TRUE).rootfs(rootfs).warm(2) as box:
                for _ in range(150):
                    assert box.run().returncode == 0
                    most = max(most, len(_group_names() - before))
        finally:
            os.sched_setaffinity(0, affinity)
    # the pool's own, those it still has to remove, and the one it is removing
    assert most <= 2 + MAX_BACKLOG + 1, f"{most} groups alive at once"
