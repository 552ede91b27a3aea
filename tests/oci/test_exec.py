"""``exec`` on real bundles: the process joins the init's namespaces and cgroup, gets the
process's settings (flags or ``--process FILE``), attached or detached; the state
machine's errors (a stopped, paused or unknown container)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from ..conftest import requires_root
from .bundles import make_bundle
from .conftest import Runtime, runtime_command, unique

pytestmark = requires_root

HARNESS = str(Path(__file__).with_name("subreaper.py"))


def _run_detached(runtime: Runtime, bundle: Path, cid: str) -> None:
    runtime.detached("run", "--detach", "--bundle", str(bundle), cid)


@pytest.fixture
def cid() -> str:
    return unique("exec")


@pytest.fixture
def running(runtime: Runtime, tmp_path: Path, cid: str) -> object:
    """A running container (``sleep``), deleted with --force at the end."""
    bundle = make_bundle(tmp_path / "b", cid, "sleep", "600", hostname="inside")
    try:
        _run_detached(runtime, bundle, cid)
        yield bundle
    finally:
        runtime("delete", "--force", cid)


def test_exec_joins_the_container_and_returns_the_status(runtime: Runtime, running: Path, cid: str) -> None:
    init = json.loads(runtime.ok("state", cid))["pid"]
    script = (
        "hostname; echo pid=$$; for n in net mnt ipc uts; do readlink /proc/self/ns/$n; done;"
        " cat /proc/self/cgroup | grep -c .; ls /bin/busybox; exit 7"
    )
    r = runtime("exec", cid, "sh", "-c", script)
    assert r.returncode == 7, r.stderr
    lines = r.stdout.splitlines()
    assert lines[0] == "inside"
    assert lines[1] != f"pid={init}" and int(lines[1].split("=")[1]) > 1  # in the container's pid namespace
    for name, seen in zip(("net", "mnt", "ipc", "uts"), lines[2:6], strict=True):
        assert seen == os.readlink(f"/proc/{init}/ns/{name}")
    assert lines[-1] == "/bin/busybox"
    with open(f"/proc/{init}/cgroup") as f:
        assert len(f.read().splitlines()) == int(lines[6])


def test_exec_is_in_the_init_cgroup(runtime: Runtime, running: Path, cid: str, tmp_path: Path) -> None:
    out = tmp_path / "cg"
    r = runtime("exec", cid, "sh", "-c", "cat /proc/self/cgroup; exec sleep 0")
    assert r.returncode == 0, r.stderr
    init = json.loads(runtime.ok("state", cid))["pid"]
    # inside a cgroup namespace the paths are relative; without one they are the host's
    with open(f"/proc/{init}/cgroup") as f:
        assert sorted(r.stdout.splitlines()) == sorted(f.read().splitlines())
    del out


def test_exec_flags_apply_over_the_process(runtime: Runtime, running: Path, cid: str) -> None:
    r = runtime(
        "exec", "--env", "GREETING=hello", "--cwd", "/tmp", "--user", "1000:1001", "--additional-gids", "5",
        cid, "sh", "-c", 'echo "$GREETING $(pwd) $(id -u) $(id -g) $(id -G)"; grep CapEff /proc/self/status',
    )  # fmt: skip
    assert r.returncode == 0, r.stderr
    lines = r.stdout.splitlines()
    assert lines[0] == "hello /tmp 1000 1001 1001 5"
    assert lines[1].split() == ["CapEff:", "0000000000000000"]  # uid 1000 keeps no effective capability
    r = runtime("exec", "--no-new-privs", cid, "grep", "NoNewPrivs", "/proc/self/status")
    assert r.stdout.split() == ["NoNewPrivs:", "1"], r.stderr


def test_exec_cap_adds_a_capability(runtime: Runtime, running: Path, cid: str) -> None:
    def eff(*extra: str) -> int:
        r = runtime("exec", *extra, cid, "grep", "CapEff", "/proc/self/status")
        assert r.returncode == 0, r.stderr
        return int(r.stdout.split()[1], 16)

    sys_admin = 1 << 21
    assert eff() & sys_admin == 0
    assert eff("--cap", "CAP_SYS_ADMIN") & sys_admin


def test_exec_process_file_detached_with_pid_file(runtime: Runtime, running: Path, cid: str, tmp_path: Path) -> None:
    """containerd's shim and conmon: ``exec --process FILE --detach --pid-file F``, under a subreaper."""
    process = json.loads((running / "config.json").read_text())["process"]
    out = tmp_path / "out"
    process.update(args=["sh", "-c", "echo from $PWD as $(id -u); sleep 0.2; exit 4"], cwd="/etc")
    process["user"] = {"uid": 2, "gid": 2}
    (tmp_path / "process.json").write_text(json.dumps(process))
    pid_file = tmp_path / "exec.pid"
    rt = " ".join([*runtime_command(), "--root", str(runtime.root)])
    script = (
        f"{rt} exec --process {tmp_path / 'process.json'} --detach --pid-file {pid_file} {cid} > {out}"
        " && echo exec-returned"
    )
    r = subprocess.run([sys.executable, HARNESS, script, "5"], capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stderr
    pid = int(pid_file.read_text())
    assert r.stdout.splitlines() == ["exec-returned", f"reaped {pid} 4"], r.stdout
    assert out.read_text() == "from /etc as 2\n"


def test_exec_errors_engines_map(runtime: Runtime, running: Path, cid: str) -> None:
    r = runtime("exec", cid, "no-such-program")
    assert r.returncode == 1 and "executable file not found in $PATH" in r.stderr, r.stderr
    r = runtime("exec", cid, "/bin/noexec")
    assert r.returncode == 1 and "Permission denied" in r.stderr, r.stderr
    msg = runtime.fails("exec", "--process", "/nonexistent/process.json", cid)
    assert "/nonexistent/process.json" in msg
    msg = runtime.fails("exec", cid)
    assert "the command to run is missing" in msg
    msg = runtime.fails("exec", "--tty", cid, "true")
    assert "--console-socket" in msg
    msg = runtime.fails("exec", "--apparmor", "unconfined", cid, "true")
    assert "process.apparmorProfile" in msg
    msg = runtime.fails("exec", "--user", "nobody", cid, "true")
    assert "--user" in msg


def test_exec_state_machine_errors(runtime: Runtime, tmp_path: Path, cid: str) -> None:
    assert "does not exist" in runtime.fails("exec", "nsprim-no-such-container", "true")
    bundle = make_bundle(tmp_path / "b", cid, "sleep", "600")
    try:
        _run_detached(runtime, bundle, cid)
        runtime.ok("pause", cid)
        assert "it is paused (use --ignore-paused" in runtime.fails("exec", cid, "true")
        runtime.ok("resume", cid)
        runtime.ok("kill", cid, "KILL")
        runtime.wait_status(cid, "stopped")
        assert "it is stopped" in runtime.fails("exec", cid, "true")
    finally:
        runtime("delete", "--force", cid)
    assert not runtime.store.exists(cid)


def test_exec_into_a_created_container(runtime: Runtime, tmp_path: Path, cid: str) -> None:
    bundle = make_bundle(tmp_path / "b", cid, "sleep", "600", hostname="early")
    try:
        runtime.detached("create", "--bundle", str(bundle), cid)
        r = runtime("exec", cid, "hostname")
        assert (r.returncode, r.stdout) == (0, "early\n"), r.stderr
        assert runtime.status(cid) == "created"
    finally:
        runtime("delete", "--force", cid)
