"""Detached containers: reaped and recorded by their monitor, found by name from other processes."""

from __future__ import annotations

import json
import os
import secrets
import signal
import subprocess
import sys
import textwrap
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

import nsprim
import nsprim.lowlevel
from nsprim import _sys
from nsprim._sys import watcher
from nsprim._sys.spawn import MonitorSpec, core_file
from nsprim.cgroup import CGroup
from nsprim.container import Container, ContainerStatus, find, list_containers
from nsprim.container.registry import ContainerRunningError, NoSuchContainerError, containers_dir
from nsprim.errors import ConfigError, ExecutableNotFoundError
from nsprim.plan import Exec, Plan

from ..conftest import requires_root, run_as_nobody

pytestmark = requires_root

SRC = str(Path(nsprim.__file__).resolve().parent.parent)
SLEEP_IGNORING_TERM = ["sh", "-c", "trap '' TERM; sleep 1000"]  # ignores SIGTERM; ends at last should a test run die


@pytest.fixture(autouse=True)
def state(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """A state directory of this test's own (the CLI subprocesses inherit it); empty at the end."""
    d = tmp_path / "state"
    monkeypatch.setenv("NSPRIM_STATE_DIR", str(d))
    yield d
    for box in list_containers():  # a failed test must not leave running containers behind
        box.remove(force=True)
    assert not (d / "containers").exists() or not list((d / "containers").iterdir())


def unique(prefix: str = "box") -> str:
    return f"{prefix}-{secrets.token_hex(4)}"


def cli(*args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONPATH": SRC}
    return subprocess.run(
        [sys.executable, "-m", "nsprim", *args], capture_output=True, text=True, timeout=timeout, env=env
    )


def starttime(pid: int) -> int | None:
    try:
        return int(Path(f"/proc/{pid}/stat").read_bytes().rsplit(b")", 1)[1].split()[19])
    except (FileNotFoundError, ProcessLookupError):
        return None


def process_state(pid: int, start: int) -> str | None:
    """The state letter of the process that is *pid* and started at *start* ("Z": a zombie), or None if gone."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_bytes().rsplit(b")", 1)[1].split()
    except (FileNotFoundError, ProcessLookupError):
        return None
    return stat[0].decode() if int(stat[19]) == start else None


def assert_gone(box: nsprim.container.DetachedContainer) -> None:
    """Nothing of *box* left: processes, cgroups, entry."""
    s = box.state
    assert process_state(s.pid, s.starttime) is None, "the container's pid 1 is still there"
    # Ended; a zombie until init reaps it (the monitor is nobody's child: init's to reap, not ours).
    assert process_state(s.monitor_pid, s.monitor_starttime) in (None, "Z"), "the monitor is still there"
    assert not [d for d in s.cgroup_dirs if os.path.exists(d)]
    assert not box.directory.exists()


def test_a_detached_payload_that_exits_leaves_no_zombie() -> None:
    box = Container(["sh", "-c", "exit 0"]).name(unique()).detach().start()
    pid, start = box.pid, starttime(box.pid)  # None: already ended and reaped
    box.close()  # let go: nobody in this process waits for it
    deadline = time.monotonic() + 30
    while start is not None and process_state(pid, start) is not None and time.monotonic() < deadline:
        time.sleep(0.02)
    assert start is None or process_state(pid, start) is None, f"pid {pid} is still there (a zombie?)"
    handle = find(box.id)
    assert handle.wait(30) == 0
    handle.remove()


def test_the_monitor_records_the_end_and_removes_the_cgroup_but_keeps_the_entry() -> None:
    argv = ["sh", "-c", "echo out; echo err >&2; exit 3", "sh", 'a "quoted\\" arg', "ü\nnew line"]
    with Container(argv).name(unique()).detach().start() as box:
        assert box.cgroup is not None
        dirs = [str(d) for d in box.cgroup.directories.values()]
        assert all(os.path.isdir(d) for d in dirs)
        assert box.wait(30) == 3
    handle = find(box.id)
    record = json.loads((handle.directory / "state.json").read_text())
    assert record["command"] == argv  # the monitor's part keeps the record valid JSON
    assert (record["status"], record["exit_code"], record["signal"], record["oom_killed"]) == ("exited", 3, None, False)
    assert record["finished"] >= record["created"]
    assert handle.status is ContainerStatus.EXITED
    assert not [d for d in dirs if os.path.exists(d)]  # the group went when the container ended
    assert handle.log_path.read_text() == "out\nerr\n"
    assert [b.name for b in list_containers()] == [box.id]
    assert list_containers(running_only=True) == []
    handle.remove()
    assert_gone(handle)


def test_ps_stop_rm_by_name_from_other_processes() -> None:
    name, init_name = unique("cli"), unique("cli-init")
    r = cli("run", "-d", "--name", name, "--", *SLEEP_IGNORING_TERM)
    assert (r.returncode, r.stdout) == (0, f"{name}\n"), r.stderr
    r = cli("run", "-d", "--init", "--name", init_name, "--", "sleep", "1000")
    assert r.returncode == 0, r.stderr
    r = cli("ps")
    assert r.returncode == 0, r.stderr
    rows = {line.split()[0]: line.split()[1] for line in r.stdout.splitlines()[1:]}
    assert rows == {name: "running", init_name: "running"}
    boxes = {n: find(n) for n in (name, init_name)}

    r = cli("rm", name)
    assert r.returncode == 1 and "is running" in r.stderr and r.stderr.count("\n") == 1
    r = cli("stop", "-t", "0.5", name, init_name)
    assert (r.returncode, r.stdout.split()) == (0, [name, init_name]), r.stderr
    r = cli("ps")
    assert r.stdout.splitlines()[1:] == []
    r = cli("ps", "-a")
    rows = {line.split()[0]: " ".join(line.split()[1:3]) for line in r.stdout.splitlines()[1:]}
    # The shell ignores SIGTERM and was killed after the timeout; the init forwards it to sleep.
    assert rows == {name: "exited (137)", init_name: "exited (143)"}
    assert boxes[name].returncode == -signal.SIGKILL
    r = cli("rm", name, init_name)
    assert r.returncode == 0, r.stderr
    assert cli("ps", "-a", "-q").stdout == ""
    for box in boxes.values():
        assert_gone(box)
    r = cli("stop", name)
    assert r.returncode == 1 and f"no container named `{name}`" in r.stderr


def test_rm_force_kills_a_running_container() -> None:
    name = unique()
    Container(SLEEP_IGNORING_TERM).name(name).detach().start().close()
    box = find(name)
    with pytest.raises(ContainerRunningError):
        box.remove()
    assert box.status is ContainerStatus.RUNNING
    r = cli("rm", "-f", name)
    assert r.returncode == 0, r.stderr
    assert_gone(box)


@pytest.mark.parametrize("how", ["exits", "is killed"])
def test_a_detached_container_outlives_its_starter(tmp_path: Path, how: str) -> None:
    name = unique()
    canary = tmp_path / "canary"
    canary.mkdir()
    script = textwrap.dedent(f"""
        import os, sys, time
        from nsprim._sys import watcher
        from nsprim.container import Container
        box = Container({SLEEP_IGNORING_TERM!r}).name({name!r}).detach().start()
        # Removed by this process's cleanup watcher when it dies, after everything else it was given.
        watcher.watch_tree({str(canary)!r})
        print(box.pid, flush=True)
        if {how!r} == "exits":
            sys.exit(0)
        time.sleep(1000)
    """)
    env = {**os.environ, "PYTHONPATH": SRC}
    starter = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, text=True, env=env)
    try:
        assert starter.stdout is not None
        pid = int(starter.stdout.readline())
        if how == "is killed":
            starter.kill()
    finally:
        starter.wait(30)
    deadline = time.monotonic() + 30
    while canary.exists() and time.monotonic() < deadline:
        time.sleep(0.02)
    assert not canary.exists(), "the starter's watcher never ran"
    box = find(name)
    assert box.pid == pid
    assert box.status is ContainerStatus.RUNNING
    assert process_state(pid, box.state.starttime) not in (None, "Z")
    assert all(os.path.isdir(d) for d in box.state.cgroup_dirs)
    box.stop(timeout=0)
    assert box.returncode == -signal.SIGKILL
    box.remove()
    assert_gone(box)


def test_an_out_of_memory_end_is_recorded() -> None:
    code = "x = bytearray(400 << 20); print('survived')"
    name = unique()
    box = Container([sys.executable, "-c", code]).host_root().memory("64M").name(name).detach().start()
    box.close()
    handle = find(name)
    assert handle.wait(60) == -signal.SIGKILL
    assert handle.oom_killed
    r = cli("ps", "-a")
    assert f"{name} " in r.stdout and "exited (137, out of memory)" in r.stdout, r.stdout
    handle.remove()
    assert_gone(handle)


def test_auto_remove_leaves_nothing_once_it_ended() -> None:
    name = unique()
    r = cli("run", "-d", "--rm", "--name", name, "--", "sh", "-c", "exit 5")
    assert r.returncode == 0, r.stderr
    deadline = time.monotonic() + 30
    while (containers_dir() / name).exists() and time.monotonic() < deadline:
        time.sleep(0.02)
    assert not (containers_dir() / name).exists()
    with pytest.raises(NoSuchContainerError):
        find(name)


def test_the_starter_waits_and_learns_the_status_from_the_monitor() -> None:
    box = Container(SLEEP_IGNORING_TERM).detach(remove=True).start()
    box.kill()
    assert box.wait(30) == -signal.SIGKILL
    assert box.returncode == -signal.SIGKILL and not box.oom_killed
    assert not (containers_dir() / box.id).exists()  # auto-removed before the monitor said so
    box.close()


def test_a_failed_start_leaves_nothing() -> None:
    name = unique()
    with pytest.raises(ExecutableNotFoundError):
        Container(["/no/such/program"]).name(name).detach().start()
    assert not (containers_dir() / name).exists()
    # os.walk skips a directory that vanishes mid-walk (another run's group); glob would raise.
    assert not [d for _, dirs, _ in os.walk("/sys/fs/cgroup") for d in dirs if d == name]
    assert not [p for p in Path("/proc").glob("[0-9]*") if _comm(p) == "nsprim-monitor" and _is_ours(p, name)]


def _comm(p: Path) -> str:
    try:
        return (p / "comm").read_text().strip()
    except OSError:
        return ""


def _is_ours(p: Path, name: str) -> bool:
    """A monitor holds its container's state directory open as descriptor 5."""
    try:
        return os.readlink(p / "fd" / "5").endswith(f"/containers/{name}")
    except OSError:
        return False


IMAGES = {"own image": core_file(), "fork": None}  # the re-executed monitor, and the fork it falls back to


def monitored_sleep(entry: Path, cg: CGroup, exe: bytes | None) -> nsprim.Process:
    """`sleep 1000` under a monitor, with *entry* as its state directory and *cg* as its group."""
    dirfd = os.open(entry, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        spec = MonitorSpec(
            state_dirfd=dirfd,
            state_dir=os.fsencode(entry),
            state_prefix=b'{"name": "x", ',
            cgroup_dirs=tuple(os.fsencode(d) for d in cg.directories.values()),
            oom_file=None,
            remove_state=False,
            exe=exe,
        )
        proc = nsprim.lowlevel.start(Plan((Exec("/bin/sleep", ("sleep", "1000")),)), monitor=spec)
    finally:
        os.close(dirfd)
    watcher.watch_pid(proc.pid)  # should this test run die (the monitor would wait for it)
    return proc


@pytest.mark.parametrize("exe", IMAGES.values(), ids=IMAGES.keys())
def test_the_monitor_records_and_cleans_up_after_a_commit(tmp_path: Path, exe: bytes | None) -> None:
    entry = tmp_path / "entry"
    entry.mkdir()
    cg = CGroup.create(unique("monitor-g"), parent=os.environ.get("NSPRIM_CGROUP_PARENT", "/"))
    proc = monitored_sleep(entry, cg, exe)
    assert proc.monitor is not None
    proc.monitor.commit()
    monitor, python = proc.monitor.monitor_pid, os.path.realpath(sys.executable)
    try:
        deadline = time.monotonic() + 30  # it executes its image once it has told us about the child
        while exe is not None and os.readlink(f"/proc/{monitor}/exe") == python and time.monotonic() < deadline:
            time.sleep(0.01)
        maps = Path(f"/proc/{monitor}/maps").read_text()
        assert (python in maps) == (exe is None)  # its own image holds nothing of ours
    finally:
        proc.kill()
    assert proc.wait(30) == -signal.SIGKILL
    watcher.forget_pid(proc.pid)
    record = json.loads((entry / "state.json").read_text())
    assert (record["name"], record["pid"], record["status"], record["exit_code"]) == ("x", proc.pid, "exited", 137)
    assert record["monitor_pid"] == monitor
    assert not cg.exists()
    assert entry.exists()  # kept: not remove_state
    proc.close()


@pytest.mark.parametrize("exe", IMAGES.values(), ids=IMAGES.keys())
def test_the_monitor_cleans_up_if_the_starter_dies_before_the_verdict(tmp_path: Path, exe: bytes | None) -> None:
    """No 'g' nor 'a' on the control socket (the starter died while starting): the
    monitor kills the child and removes its cgroup and state directory."""
    entry = tmp_path / "entry"
    entry.mkdir()
    cg = CGroup.create(unique("monitor-eof"), parent=os.environ.get("NSPRIM_CGROUP_PARENT", "/"))
    proc = monitored_sleep(entry, cg, exe)
    assert proc.monitor is not None
    pid, start, monitor = proc.pid, proc.monitor.starttime, proc.monitor.monitor_pid
    assert process_state(pid, start) not in (None, "Z")
    monitor_fd = _sys.pidfd_open(monitor)
    try:
        proc.monitor.close()  # EOF without a verdict
        _ended_within(monitor_fd, 30)
    finally:
        os.close(monitor_fd)
        proc.close()
    watcher.forget_pid(pid)
    assert process_state(pid, start) is None
    assert not cg.exists()
    assert not entry.exists()


def _ended_within(pidfd: int, timeout: float) -> None:
    import select

    assert select.select([pidfd], [], [], timeout)[0], "still running"


def test_a_reused_pid_is_never_signalled() -> None:
    """A record whose pid now belongs to another process (its start time differs) is lost, not ours to kill."""
    name = unique()
    d = containers_dir() / name
    d.mkdir(parents=True)
    me = os.getpid()
    record = {
        "name": name, "command": ["x"], "created": time.time(), "cgroup": None, "cgroup_dirs": [],
        "pid": me, "starttime": (starttime(me) or 0) + 1, "monitor_pid": me, "monitor_starttime": 1,
        "status": "running",
    }  # fmt: skip
    (d / "state.json").write_text(json.dumps(record))
    box = find(name)
    box.kill()  # would end this test run if it trusted the pid
    box.stop(timeout=0)
    assert box.status is ContainerStatus.LOST
    assert "lost" in cli("ps", "-a").stdout
    box.remove()
    assert not d.exists()


@pytest.mark.parametrize("name", ["", "-x", "a/b", "..", "x" * 129, "sp ace"])
def test_a_bad_name_is_refused_before_anything_is_made(name: str) -> None:
    with pytest.raises(ConfigError, match="container name"):
        Container(["true"]).name(name).detach().start()
    assert not containers_dir().exists()


def test_a_name_in_use_is_refused() -> None:
    name = unique()
    first = Container(SLEEP_IGNORING_TERM).name(name).detach().start()
    first.close()
    with pytest.raises(ConfigError, match=f"container name `{name}` is already in use"):
        Container(["true"]).name(name).detach().start()
    assert find(name).status is ContainerStatus.RUNNING  # the first one is untouched
    find(name).remove(force=True)


def test_detach_refuses_what_needs_the_starter() -> None:
    with pytest.raises(ConfigError, match="proc"):
        Container(["true"]).host_root().proc_view().detach().start()
    assert not containers_dir().exists()


@pytest.fixture
def user_state() -> Iterator[Path]:
    """A state directory of nobody's, in a place nobody can reach."""
    import shutil
    import tempfile

    d = Path(tempfile.mkdtemp(prefix="nsprim-test-state-"))
    try:
        d.chmod(0o755)
        (d / "state").mkdir()
        os.chown(d / "state", 65534, 65534)
        yield d / "state"
    finally:
        shutil.rmtree(d)


def test_a_rootless_detached_container(user_state: Path) -> None:
    """Without root: no cgroup, a user namespace, the entry under a state directory of the user's."""
    state = user_state
    name = unique("rootless")

    def scenario() -> str:
        os.environ["NSPRIM_STATE_DIR"] = str(state)
        Container(["sh", "-c", "id -u; exit 7"]).name(name).detach().start().close()
        box = find(name)
        code = box.wait(30)
        text = f"{code} {box.status.value} {box.state.cgroup_dirs} {box.log_path.read_text().strip()}"
        box.remove()
        assert_gone(box)
        return text

    assert run_as_nobody(scenario) == "7 exited () 0"


def _interpreter(program: str) -> str:
    """PT_INTERP of a 64-bit little-endian ELF program (x86-64, aarch64)."""
    import struct

    with open(program, "rb") as f:
        data = f.read(1 << 16)
    phoff = struct.unpack_from("<Q", data, 0x20)[0]
    phentsize, phnum = struct.unpack_from("<HH", data, 0x36)
    for i in range(phnum):
        p_type, _flags, p_offset = struct.unpack_from("<IIQ", data, phoff + i * phentsize)
        if p_type == 3:  # PT_INTERP
            size = struct.unpack_from("<Q", data, phoff + i * phentsize + 32)[0]
            return data[p_offset : p_offset + size].rstrip(b"\0").decode()
    raise AssertionError(f"{program} has no interpreter")


def test_the_monitor_image_of_another_build_still_reaps_its_container() -> None:
    """What the monitor must know comes from a different build (the core's file was replaced
    after the starter loaded it): nothing to record, but the container is reaped, not killed."""
    loader = _interpreter(os.path.realpath(sys.executable))
    image = os.fsdecode(core_file())
    r, w = os.pipe()
    monitor = os.fork()
    if monitor == 0:  # pragma: no cover - the child: becomes the image, the parent of a sleep
        try:
            payload = os.fork()
            if payload == 0:
                os.execv("/bin/sleep", ["sleep", "1000"])
            os.write(w, str(payload).encode())
            os.dup2(os.pidfd_open(payload), 3)
            blob = os.memfd_create("not-a-monitor-blob", 0)
            os.write(blob, b"\x6e\x73\x70\x6d" + b"\0" * 200)  # the magic, then nothing that fits
            os.dup2(blob, 6)
            os.execve(loader, ["nsprim-monitor", image], {})
        finally:
            os._exit(127)
    os.close(w)
    payload = int(os.read(r, 32) or b"0")
    os.close(r)
    try:
        assert payload > 0
        deadline = time.monotonic() + 30
        # The image has read its memfd once descriptor 6 is closed.
        while time.monotonic() < deadline and (
            _comm(Path(f"/proc/{monitor}")) != "nsprim-monitor" or os.path.exists(f"/proc/{monitor}/fd/6")
        ):
            time.sleep(0.01)
        assert _comm(Path(f"/proc/{monitor}")) == "nsprim-monitor"
        children = Path(f"/proc/{monitor}/task/{monitor}/children").read_text().split()
        assert children == [str(payload)], "the image killed its container"
    finally:
        if payload > 0:
            os.kill(payload, signal.SIGKILL)  # ours: started by our child
        _, status = os.waitpid(monitor, 0)
    assert os.waitstatus_to_exitcode(status) == 1  # it reaped the payload, then ended
