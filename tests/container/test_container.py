"""Container: real isolation, limits, exec, cleanup on every path, concurrency, bad input."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import textwrap
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

import nsprim
from nsprim.container import Container
from nsprim.errors import ConfigError, ExecutableNotFoundError

from ..conftest import requires_root, run_as_nobody
from ..tools import need_tool, static_busybox
from .conftest import BUSYBOX

pytestmark = requires_root


def out(result: object) -> str:
    return (result.stdout or b"").decode()  # type: ignore[attr-defined]


def test_payload_is_pid_1_with_own_hostname_and_no_host_files(rootfs: Path, tmp_path: Path) -> None:
    secret = tmp_path / "host-secret"
    secret.write_text("x")
    script = f"echo $$; hostname; ls /; cat /marker; ls {secret} 2>&1; cat /proc/self/net/dev | tail -n +3"
    r = Container(["/bin/sh", "-c", script]).rootfs(rootfs).hostname("sandbox").run(capture_output=True)
    assert r.returncode == 0, r.stderr
    lines = out(r).splitlines()
    assert lines[0] == "1"
    assert lines[1] == "sandbox"
    assert "marker" in lines and "busybox" not in lines and "usr" not in lines
    assert "inside" in lines
    assert any("No such file" in line for line in lines)
    assert [line.split(":")[0].strip() for line in lines if ":" in line and "No such" not in line] == ["lo"]


def test_old_root_is_gone_from_mountinfo_and_root_is_read_only(rootfs: Path) -> None:
    r = Container(["/bin/sh", "-c", "cat /proc/self/mountinfo; touch /newfile"]).rootfs(rootfs).run(capture_output=True)
    mounts = out(r).splitlines()
    targets = {m.split()[4] for m in mounts}
    assert "/" in targets and "/proc" in targets and "/dev" in targets
    assert not any(t.startswith("/run/nsprim") for t in targets)
    assert r.returncode != 0 and b"Read-only file system" in (r.stderr or b"")
    assert not (rootfs / "newfile").exists()


def test_host_root_sandbox_is_writable_but_ephemeral(tmp_path: Path) -> None:
    target = tmp_path / "written-inside"
    r = Container(["sh", "-c", f"echo hi > {target} && cat {target}"]).host_root().run(capture_output=True)
    assert out(r) == "hi\n"
    assert not target.exists()  # the write landed in the tmpfs upper layer


def test_masked_and_read_only_kernel_paths(rootfs: Path) -> None:
    script = "cat /proc/keys | wc -c; ls /sys/firmware | wc -l; echo 1 > /proc/sys/kernel/ns_last_pid; echo rc=$?"
    r = Container(["/bin/sh", "-c", script]).rootfs(rootfs).run(capture_output=True)
    lines = out(r).split()
    assert lines[0] == "0" and lines[1] == "0"
    assert lines[-1] != "rc=0"
    assert b"Read-only file system" in (r.stderr or b"")


def test_memory_limit_oom_kill_is_reported(rootfs: Path) -> None:
    code = "x = bytearray(200 * 1024 * 1024); print('survived')"
    r = Container([sys.executable, "-c", code]).host_root().memory("48M").run(capture_output=True)
    assert r.returncode == -signal.SIGKILL
    assert r.oom_killed
    assert b"survived" not in (r.stdout or b"")


def test_pids_limit_holds_against_a_fork_bomb() -> None:
    bomb = textwrap.dedent(
        """
        import errno, os, time
        children = 0
        while children < 500:
            try:
                pid = os.fork()
            except OSError as exc:
                print(children, errno.errorcode[exc.errno]); break
            if pid == 0:
                time.sleep(30); os._exit(0)
            children += 1
        """
    )
    r = Container([sys.executable, "-c", bomb]).host_root().pids(20).run(capture_output=True, timeout=60)
    count, err = out(r).split()
    assert err == "EAGAIN"
    assert int(count) == 19  # the bomb itself is the 20th


def test_limits_inside_report_the_container_limit() -> None:
    code = "from nsprim.cgroup import limits; l = limits(); print(l.memory_limit)"
    src = str(Path(nsprim.__file__).resolve().parent.parent)
    box = Container([sys.executable, "-c", code]).host_root().memory("96M").env(PYTHONPATH=src)
    r = box.run(capture_output=True)
    assert r.returncode == 0, r.stderr
    assert int(out(r).strip()) == 96 * 1024 * 1024


def test_exec_joins_all_namespaces_and_the_cgroup(rootfs: Path) -> None:
    with Container(["/bin/sleep", "60"]).rootfs(rootfs).hostname("box").memory("64M").start() as box:
        p = box.exec(["/bin/sh", "-c", "echo $$; hostname; cat /marker; cat /proc/1/cmdline"], stdout=nsprim.PIPE)
        stdout, _ = p.communicate()
        assert p.returncode == 0
        lines = stdout.decode().splitlines() if stdout else []
        assert lines[0] != "1" and lines[1] == "box" and lines[2] == "inside"
        assert lines[3].startswith("/bin/sleep")
        assert box.cgroup is not None and p.pid not in box.cgroup.procs()  # it has exited
        q = box.exec(["/bin/sleep", "30"])
        try:
            assert q.pid in box.cgroup.procs(recursive=True)
        finally:
            q.kill()
            q.wait()


def test_init_reaps_and_forwards_signals(rootfs: Path) -> None:
    with Container(["/bin/sleep", "60"]).rootfs(rootfs).init().start() as box:
        time.sleep(0.1)
        box.send_signal(signal.SIGTERM)
        assert box.wait(timeout=10) == 128 + signal.SIGTERM


def test_freeze_thaw_update_and_stats(rootfs: Path) -> None:
    from nsprim.cgroup import MemoryResources, Resources

    with Container(["/bin/sleep", "60"]).rootfs(rootfs).memory("64M").start() as box:
        box.freeze()
        assert box.cgroup is not None and box.cgroup.frozen
        box.thaw()
        box.update(Resources(memory=MemoryResources(max="32M")))
        assert box.stats().memory.limit == 32 * 1024 * 1024
        box.kill()
        assert box.wait(timeout=10) == -signal.SIGKILL


def test_cleanup_after_the_parent_is_sigkilled(tmp_path: Path) -> None:
    """A parent killed with SIGKILL mid-run: the watcher removes its container's processes and cgroup."""
    script = textwrap.dedent(
        """
        import sys, time
        from nsprim.container import Container
        box = Container(["sleep", "600"]).host_root().memory("64M").start()
        print(box.pid, box.cgroup.path if box.cgroup else "", flush=True)
        time.sleep(600)
        """
    )
    src = str(Path(nsprim.__file__).resolve().parent.parent)
    env = {**os.environ, "PYTHONPATH": src}
    parent = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, env=env, text=True)
    try:
        assert parent.stdout is not None
        pid_s, cg_path = parent.stdout.readline().split()
        assert Path(f"/proc/{pid_s}").exists()
        parent.kill()
        parent.wait()
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            alive = Path(f"/proc/{pid_s}").exists() and "Z" not in Path(f"/proc/{pid_s}/stat").read_text().split()[2]
            groups = [d for d in Path("/sys/fs/cgroup").glob(f"*{cg_path}") if d.is_dir()]
            if not alive and not groups:
                break
            time.sleep(0.05)
        assert not alive, "container process survived its parent"
        assert not groups, f"cgroups left: {groups}"
    finally:
        if parent.poll() is None:
            parent.kill()
            parent.wait()


def test_fifty_containers_from_eight_threads(rootfs: Path) -> None:
    errors: list[BaseException] = []
    results: list[str] = []
    lock = threading.Lock()

    def worker(n: int) -> None:
        for _ in range(n):
            try:
                r = Container(["/bin/sh", "-c", "echo $$"]).rootfs(rootfs).pids(16).run(capture_output=True)
                with lock:
                    results.append(out(r).strip())
            except BaseException as exc:
                with lock:
                    errors.append(exc)

    threads = [threading.Thread(target=worker, args=(7 if k < 2 else 6,)) for k in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors, errors[:3]
    assert results == ["1"] * 50
    # the setup made each child non-dumpable; with children sharing our memory
    # until exec, that must not have stuck to this process
    import ctypes

    assert ctypes.CDLL(None).prctl(3, 0, 0, 0, 0) == 1  # PR_GET_DUMPABLE
    assert not list(Path("/run/nsprim").glob("nsprim-*"))


def test_user_by_name_from_the_container_passwd(rootfs: Path) -> None:
    r = Container(["/bin/id"]).rootfs(rootfs).user("guest").run(capture_output=True)
    assert out(r).startswith("uid=405(guest) gid=100(users)")
    with pytest.raises(ConfigError, match="unknown user `nobody-here`"):
        Container(["/bin/id"]).rootfs(rootfs).user("nobody-here").run()


def test_bad_input_is_typed_and_leaves_nothing(rootfs: Path, tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="is not a directory"):
        Container(["/bin/true"]).rootfs(tmp_path / "missing").run()
    with pytest.raises(ExecutableNotFoundError, match="exec `/bin/no-such-program`"):
        Container(["/bin/no-such-program"]).rootfs(rootfs).memory("64M").run()
    with pytest.raises(ConfigError, match="below the 6M"):
        Container(["/bin/true"]).memory("1M")
    with pytest.raises(ConfigError, match="both create and join"):
        Container(
            ["/bin/true"],
            config=Container(["x"])
            .join("pid", os.getpid())
            .config.__class__(argv=("x",), join=((nsprim.NamespaceType.PID, "/proc/self/ns/pid"),)),
        ).run()
    with pytest.raises(ConfigError, match="no command"):
        Container().host_root().run()
    # nothing per container on the host: the shared state directory holds only the mount point
    if Path("/run/nsprim").exists():
        assert not list(Path("/run/nsprim").glob("**/nsprim-*"))


def test_bind_and_tmpfs_mounts(rootfs: Path, tmp_path: Path) -> None:
    shared = tmp_path / "shared"
    shared.mkdir()
    (shared / "data").write_text("from host")
    box = Container(["/bin/sh", "-c", "cat /mnt/data; touch /mnt/x; echo rc=$?; touch /tmp/y && echo tmp-ok"])
    r = box.rootfs(rootfs).bind(shared, "/mnt").tmpfs("/tmp").run(capture_output=True)
    text = out(r)
    assert "from host" in text and "rc=1" in text and "tmp-ok" in text
    assert not (shared / "x").exists()


@pytest.fixture
def public_rootfs(rootfs: Path) -> Iterator[Path]:
    """The busybox root in a directory an unprivileged user can reach."""
    import tempfile

    d = Path(tempfile.mkdtemp(prefix="nsprim-test-rootfs-"))
    try:
        d.chmod(0o755)
        shutil.copytree(rootfs, d / "root", symlinks=True)
        yield d / "root"
    finally:
        shutil.rmtree(d)


def test_rootless_container_same_isolation(public_rootfs: Path) -> None:
    rootfs = public_rootfs

    def body() -> str:
        script = "echo $$; id -u; hostname; ls /; wc -l < /proc/self/net/dev; touch /x 2>/dev/null || echo ro"
        r = Container(["/bin/sh", "-c", script]).rootfs(rootfs).hostname("rootless").run(capture_output=True)
        return out(r) + f"rc={r.returncode}"

    lines = run_as_nobody(body).split("\n")
    assert lines[:3] == ["1", "0", "rootless"]
    assert "marker" in lines and "usr" not in lines
    assert "3" in lines and "ro" in lines and lines[-1] == "rc=0"


def test_rootless_host_root_with_tmpfs() -> None:
    def body() -> str:
        box = Container(["sh", "-c", "id -u; touch /tmp/ok && echo tmp-ok"]).host_root().tmpfs("/tmp")
        return out(box.run(capture_output=True))

    assert run_as_nobody(body).split() == ["0", "tmp-ok"]


def test_veth_network_reaches_the_host_side() -> None:
    """A veth pair between a container and its creator — the creator itself in a
    network namespace made for the test, so no traffic touches the host's."""
    need_tool("ip", "iproute2")
    static_busybox()
    code = textwrap.dedent(
        f"""
        from nsprim.container import Container
        probe = "ip -4 -o addr show eth0; {BUSYBOX} ping -c 1 -W 2 10.200.0.1 >/dev/null && echo reached"
        r = Container(["sh", "-c", probe]).host_root().network("veth").run(capture_output=True)
        print(r.stdout.decode(), r.stderr.decode())
        """
    )
    src = str(Path(nsprim.__file__).resolve().parent.parent)
    r = nsprim.run(
        [sys.executable, "-c", code],
        new={"net"},
        env={**os.environ, "PYTHONPATH": src},
        capture_output=True,
        steps=[nsprim.plan.InterfaceUp("lo")],
    )
    text = (r.stdout or b"").decode()
    assert "10.200.0.2/30" in text and "reached" in text, (text, r.stderr)


def test_host_root_read_only_as_the_demo_uses_it() -> None:
    r = (
        Container(["sh", "-c", "echo $$; touch /usr/x 2>/dev/null || echo ro"])
        .rootfs("/")
        .tmpfs("/tmp")
        .run(capture_output=True)
    )
    assert out(r).split() == ["1", "ro"], r.stderr


def test_an_unusable_state_directory_is_a_clear_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("NSPRIM_STATE_DIR", "/proc/no-such-place")
    with pytest.raises(nsprim.SyscallError, match=r"mkdir `/proc/no-such-place/root`.*NSPRIM_STATE_DIR"):
        Container(["/bin/true"]).host_root().memory("64M").run()
