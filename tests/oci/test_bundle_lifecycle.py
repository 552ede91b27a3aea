"""``create``, ``start``, ``run`` and ``delete`` on real bundles (a busybox root), and the
state machine's errors the runtime spec demands."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from ..conftest import requires_root
from .bundles import make_bundle, write_config
from .conftest import Runtime, runtime_command, unique

pytestmark = requires_root

HARNESS = str(Path(__file__).with_name("subreaper.py"))


@pytest.fixture
def cid() -> str:
    return unique("oci")


def test_run_prints_and_exits_with_the_status(runtime: Runtime, tmp_path: Path, cid: str) -> None:
    bundle = make_bundle(tmp_path / "b", cid, "sh", "-c", "echo hi from $(hostname); exit 3")
    r = runtime("run", "--bundle", str(bundle), cid)
    assert (r.returncode, r.stdout) == (3, "hi from nsprim\n"), r.stderr
    assert not runtime.store.exists(cid)


def test_create_start_state_delete(runtime: Runtime, tmp_path: Path, cid: str) -> None:
    out = tmp_path / "out"
    bundle = make_bundle(tmp_path / "b", cid, "sh", "-c", "echo $$ > /proc/self/fd/1; exec sleep 60")
    pid_file = tmp_path / "pid"
    with out.open("w") as f:
        r = subprocess.run(
            [*runtime_command(), "--root", str(runtime.root), "create", "--bundle", str(bundle),
             "--pid-file", str(pid_file), cid],
            stdout=f, stderr=subprocess.DEVNULL, timeout=60,
        )  # fmt: skip
    assert r.returncode == 0
    doc = json.loads(runtime.ok("state", cid))
    assert doc["status"] == "created" and doc["pid"] == int(pid_file.read_text())
    assert doc["bundle"] == str(bundle) and doc["rootfs"] == str(bundle / "rootfs")
    assert out.read_text() == ""  # nothing of the process ran yet
    runtime.ok("start", cid)
    assert runtime.status(cid) == "running"
    assert "start needs a created container" in runtime.fails("start", cid)
    assert "it is running" in runtime.fails("delete", cid)
    runtime.ok("kill", cid, "KILL")
    runtime.wait_status(cid, "stopped")
    assert out.read_text() == "1\n"  # pid 1 of its own pid namespace
    runtime.ok("delete", cid)
    assert not runtime.store.exists(cid)


def test_delete_force_of_a_running_container(runtime: Runtime, tmp_path: Path, cid: str) -> None:
    bundle = make_bundle(tmp_path / "b", cid, "sleep", "60")
    runtime.detached("run", "--detach", "--bundle", str(bundle), cid)
    assert runtime.status(cid) == "running"
    runtime.ok("delete", "--force", cid)
    assert not runtime.store.exists(cid)


def test_delete_of_a_created_container_kills_it(runtime: Runtime, tmp_path: Path, cid: str) -> None:
    bundle = make_bundle(tmp_path / "b", cid, "true")
    runtime.detached("create", "--bundle", str(bundle), cid)
    runtime.ok("delete", cid)
    assert not runtime.store.exists(cid)


def test_unknown_and_duplicate_ids(runtime: Runtime, tmp_path: Path, cid: str) -> None:
    for verb in ("start", "state", "delete", "kill"):
        assert f"container `{cid}` does not exist" in runtime.fails(verb, cid)
    bundle = make_bundle(tmp_path / "b", cid, "true")
    runtime.detached("create", "--bundle", str(bundle), cid)
    assert "already exists" in runtime.fails("create", "--bundle", str(bundle), cid)
    assert runtime.status(cid) == "created"  # the first one is untouched
    assert "invalid container id" in runtime.fails("create", "--bundle", str(bundle), "../x")
    runtime.ok("delete", "--force", cid)


def test_the_engine_reaps_the_init(tmp_path: Path, cid: str) -> None:
    """Under a subreaper (as conmon and the shim are) the init is the engine's child once
    create exited: the engine waits for it and gets its exit status."""
    root = tmp_path / "root"
    bundle = make_bundle(tmp_path / "b", cid, "sh", "-c", "exit 7")
    rt = " ".join([*runtime_command(), "--root", str(root)])
    script = (
        f"{rt} create --bundle {bundle} --pid-file {tmp_path}/pid {cid} && {rt} start {cid} && "
        f"while [ $({rt} state {cid} | grep -c stopped) = 0 ]; do sleep 0.05; done"
    )
    r = subprocess.run([sys.executable, HARNESS, script, "2"], capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stderr
    pid = int((tmp_path / "pid").read_text())
    assert f"reaped {pid} 7" in r.stdout.splitlines()
    Runtime(root).ok("delete", cid)


def test_a_missing_program_fails_create_as_engines_expect(runtime: Runtime, tmp_path: Path, cid: str) -> None:
    """As runc and crun, the program is looked up before the init waits for ``start``."""
    bundle = make_bundle(tmp_path / "b", cid, "nonexistent")
    assert "executable file not found" in runtime.fails("create", "--bundle", str(bundle), cid)  # podman's 127
    assert not runtime.store.exists(cid)
    write_config(bundle, cid, "/bin/noexec")
    assert "permission denied" in runtime.fails("create", "--bundle", str(bundle), cid).lower()  # podman's 126
    write_config(bundle, cid, "/no/such/file")
    assert "no such file or directory" in runtime.fails("create", "--bundle", str(bundle), cid).lower()
    assert not runtime.store.exists(cid)


def test_a_program_that_goes_after_create_fails_start(runtime: Runtime, tmp_path: Path, cid: str) -> None:
    bundle = make_bundle(tmp_path / "b", cid, "/bin/gone")
    (bundle / "rootfs/bin/gone").write_text("#!/bin/sh\n")
    (bundle / "rootfs/bin/gone").chmod(0o755)
    runtime.detached("create", "--bundle", str(bundle), cid)
    (bundle / "rootfs/bin/gone").unlink()
    assert "no such file or directory" in runtime.fails("start", cid).lower()
    runtime.ok("delete", cid)


def test_isolation_as_the_spec_asks(runtime: Runtime, tmp_path: Path, cid: str) -> None:
    script = (
        "id -u; hostname; cat /proc/self/status | grep CapBnd; readlink /dev/fd; "
        "test -c /dev/null && echo null; echo x > /proc/sys/kernel/hostname 2>/dev/null || echo ro-sys; "
        "cat /proc/keys 2>&1 | wc -c; grep -c /proc/keys /proc/self/mountinfo; cat /proc/sys/net/ipv4/ip_forward"
    )
    bundle = make_bundle(
        tmp_path / "b", cid, "sh", "-c", script, hostname="box1",
        linux={"sysctl": {"net.ipv4.ip_forward": "1"}},
    )  # fmt: skip
    r = runtime("run", "--bundle", str(bundle), cid)
    assert r.returncode == 0, r.stderr
    lines = r.stdout.split()
    assert lines[:2] == ["0", "box1"]
    assert "CapBnd:" in r.stdout and "00000000200004" in r.stdout  # CAP_AUDIT_WRITE, KILL, NET_BIND_SERVICE
    assert "/proc/self/fd" in lines and "null" in lines and "ro-sys" in lines
    assert lines[-3:] == ["0", "1", "1"]  # /proc/keys masked; the sysctl written in its own netns


def test_preserve_fds_and_no_pivot(runtime: Runtime, tmp_path: Path, cid: str) -> None:
    bundle = make_bundle(tmp_path / "b", cid, "sh", "-c", "cat <&3; ls /proc/self/fd | wc -l")
    r_fd, w_fd = os.pipe()
    os.write(w_fd, b"through fd 3\n")
    os.close(w_fd)
    try:
        cmd = [*runtime_command(), "--root", str(runtime.root), "run", "--preserve-fds", "1", "--no-pivot",
               "--bundle", str(bundle), cid]  # fmt: skip
        # (fd 3 of the runtime is the pipe: placed after the fork, kept by pass_fds)
        r = subprocess.run(cmd, capture_output=True, text=True, timeout=60, pass_fds=(3,),
                           preexec_fn=lambda: os.dup2(r_fd, 3))  # fmt: skip
    finally:
        os.close(r_fd)
    assert r.returncode == 0, r.stderr
    # fds 0-3, and the one ls opens: nothing else of the runtime's reached the container
    assert r.stdout.split() == ["through", "fd", "3", "5"]


def test_console_socket_gets_the_pty(runtime: Runtime, tmp_path: Path, cid: str) -> None:
    import array
    import socket

    bundle = make_bundle(tmp_path / "b", cid, "sh", "-c", "stty size; echo on-tty")
    spec = json.loads((bundle / "config.json").read_text())
    spec["process"]["terminal"] = True
    spec["process"]["consoleSize"] = {"height": 30, "width": 100}
    (bundle / "config.json").write_text(json.dumps(spec))
    path = tmp_path / "console.sock"
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as server:
        server.bind(str(path))
        server.listen(1)
        runtime.detached("create", "--bundle", str(bundle), "--console-socket", str(path), cid)
        conn, _ = server.accept()
        with conn:
            fds = array.array("i")
            msg, anc, _flags, _addr = conn.recvmsg(256, socket.CMSG_SPACE(fds.itemsize))
            for level, kind, data in anc:
                if level == socket.SOL_SOCKET and kind == socket.SCM_RIGHTS:
                    fds.frombytes(data[: fds.itemsize])
    assert msg.startswith(b"/dev/pts/") and len(fds) == 1
    master = fds[0]
    try:
        runtime.ok("start", cid)
        runtime.wait_status(cid, "stopped")
        out = b""
        while True:
            try:
                chunk = os.read(master, 4096)
            except OSError:  # EIO: the other side is closed
                break
            if not chunk:
                break
            out += chunk
    finally:
        os.close(master)
    assert b"30 100" in out and b"on-tty" in out
    runtime.ok("delete", cid)
