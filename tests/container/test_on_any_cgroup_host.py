"""Containers on whatever cgroup layout the host has (also run in the pure cgroup v2 VM: `nox -s vm`).

A directory root (the host's ``/``, read-only): the VM's kernel has no overlay module.
"""

from __future__ import annotations

import contextlib
import os
import signal
import sys
from pathlib import Path

import pytest

import nsprim
from nsprim.container import Container

from ..conftest import requires_root, run_as_nobody

pytestmark = [requires_root, pytest.mark.cgroup_v2]

PYTHON = os.path.realpath(sys.executable)


def test_limits_are_enforced_and_reported() -> None:
    r = Container([PYTHON, "-c", "x = bytearray(200 << 20)"]).rootfs("/").memory("48M").run()
    assert r.returncode == -signal.SIGKILL and r.oom_killed
    r = Container(["sh", "-c", "echo $$; tail -n 1 /proc/self/cgroup"]).rootfs("/").pids(16).run(capture_output=True)
    pid, cgroup_line = (r.stdout or b"").decode().split()
    assert pid == "1" and cgroup_line.endswith(":/")  # its own cgroup namespace, rooted at its group


def test_executor_calls_forked_by_its_zygote_are_born_in_their_own_limited_groups() -> None:
    from nsprim.call import CallDiedError, SandboxExecutor

    from ..call import payloads

    template = Container().rootfs("/").memory("48M").pids(16)
    with SandboxExecutor(template, max_workers=2) as pool:
        assert pool.submit(payloads.whoami).result()["pid"] == 1
        assert pool._workers.zygote is not None  # the warm path
        oom = pool.submit(payloads.hog, 200).exception()
        assert isinstance(oom, CallDiedError) and oom.oom_killed
        assert pool.submit(payloads.hog, 8).result() == 8


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


def _each_limit_without_root() -> str:
    """Run as uid 65534: a container per limit, then the CLI; one line of outcome each."""
    import io

    from nsprim import cli
    from nsprim.errors import CgroupUnavailableError

    lines = []
    for limit in ("memory", "cpus", "pids"):
        box = Container(["true"]).rootfs("/")
        box = box.memory("64M") if limit == "memory" else box.cpus(1) if limit == "cpus" else box.pids(16)
        try:
            lines.append(f"ran: {box.run().returncode}")
        except CgroupUnavailableError as exc:
            lines.append(f"refused: {exc}")
    err = io.StringIO()
    with contextlib.redirect_stderr(err):
        status = cli.main(["run", "--rootfs", "/", "--memory", "64M", "--", "true"])
    return "\n".join([*lines, f"cli {status}: {err.getvalue()}"])


def test_limits_without_root_and_without_a_delegated_cgroup_are_refused() -> None:
    # uid 65534 in the test's cgroup, which nobody delegated to it (on a hybrid host, the memory,
    # cpu and pids controllers are cgroup v1, whose groups are root's anyway).
    lines = run_as_nobody(_each_limit_without_root).split("\n")
    for line, name in zip(lines[:3], ("memory", "cpu", "pids"), strict=True):
        assert line.startswith(f"refused: the {name} limit needs a cgroup you can write: "), line
        assert "run as root, or delegate a cgroup v2 subtree" in line and "Delegate=yes" in line
    assert lines[3].startswith("cli 125: nsprim run: --memory needs a cgroup you can write: ")
    assert lines[4:] == [""]  # one line on stderr


def test_limits_without_root_are_enforced_in_a_delegated_cgroup(container_cgroup_parent: str | None) -> None:
    """A cgroup v2 group whose files belong to uid 65534, the caller in a leaf under it: the
    container's group is made beside the leaf, and its limits hold."""
    import secrets
    from pathlib import Path

    from nsprim.cgroup import CGroup, host_info

    info = host_info()
    if info.version_of("memory") != 2 or info.version_of("pids") != 2 or container_cgroup_parent is None:
        pytest.skip(f"a delegation needs the memory and pids controllers on cgroup v2 (mode: {info.mode.value})")
    v2 = info.unified
    assert v2 is not None
    base = CGroup([(v2, v2.mount_point / container_cgroup_parent.lstrip("/"))], info)
    delegated = CGroup.create(f"delegated-{secrets.token_hex(4)}", base, controllers=["memory", "pids"])
    d = delegated.unified_dir
    assert d is not None
    leaf = d / "leaf"
    try:
        leaf.mkdir()
        for p in (d, d / "cgroup.procs", d / "cgroup.subtree_control", d / "cgroup.threads"):
            os.chown(p, 65534, 65534)  # what systemd's Delegate=yes does

        def body() -> str:
            os.environ.pop("NSPRIM_CGROUP_PARENT", None)  # the suite's parent is root's: the delegated one instead
            r = Container(["dd", "if=/dev/zero", "of=/dev/null", "bs=200M", "count=1"]).rootfs("/").memory("48M").run()
            with Container(["sleep", "60"]).rootfs("/").memory("48M").pids(16).start() as box:
                group = box.cgroup
                assert group is not None and group.unified_dir is not None
                seen = [
                    str(group.unified_dir.parent == Path(d)),
                    (group.unified_dir / "memory.max").read_text().strip(),
                    (group.unified_dir / "pids.max").read_text().strip(),
                ]
                box.kill()
            return " ".join([str(r.returncode), str(r.oom_killed), *seen, str(group.exists())])

        Container(["true"]).rootfs("/").run()  # host facts cached here, where this process is, go with the fork
        out = run_as_nobody(body, cgroup=leaf)
        assert out.split() == [str(-signal.SIGKILL), "True", "True", str(48 << 20), "16", "False"], out
    finally:
        with contextlib.suppress(OSError):
            leaf.rmdir()
        delegated.delete(recursive=True, timeout=5.0)


def test_a_detached_containers_monitor_records_an_oom_kill_and_removes_the_group(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import secrets

    from nsprim.container import find

    monkeypatch.setenv("NSPRIM_STATE_DIR", str(tmp_path))
    name = f"oom-{secrets.token_hex(4)}"
    box = Container([PYTHON, "-c", "x = bytearray(200 << 20)"]).rootfs("/").memory("48M").name(name).detach().start()
    assert box.cgroup is not None
    dirs = list(box.cgroup.directories.values())
    box.close()  # let go: the monitor records the end
    handle = find(name)
    assert handle.wait(60) == -signal.SIGKILL
    assert handle.oom_killed
    assert not any(d.exists() for d in dirs)
    handle.remove()
    assert not handle.directory.exists()
