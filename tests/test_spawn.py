"""spawn/run/Process: errors, descriptors, threads, unprivileged callers, no leftovers."""

from __future__ import annotations

import os
import signal
import threading
import time
from pathlib import Path

import pytest

import nsprim
import nsprim.lowlevel
from nsprim import IdMap
from nsprim.errors import ConfigError, ExecutableNotFoundError, StepError, TimeoutExpired
from nsprim.plan import Chdir, Exec, Mount, Plan

from .conftest import requires_root, run_as_nobody


def test_missing_executable_is_a_step_error_not_status_127() -> None:
    with pytest.raises(ExecutableNotFoundError) as info:
        nsprim.run(["/no/such/program"], new={"uts"})
    err = info.value
    assert isinstance(err, StepError) and isinstance(err, FileNotFoundError)
    assert err.errno == 2 and err.path == "/no/such/program"
    assert "exec `/no/such/program`: No such file or directory" in str(err)
    with pytest.raises(ExecutableNotFoundError, match="exec `no-such-program-anywhere`"):
        nsprim.run(["no-such-program-anywhere"])


def test_not_executable_file(tmp_path: Path) -> None:
    f = tmp_path / "script"
    f.write_text("#!/bin/sh\n")
    with pytest.raises(StepError) as info:
        nsprim.run([str(f)])
    assert info.value.errno == 13 and "is it executable?" in str(info.value)


@requires_root
def test_failed_step_names_step_and_path_and_leaves_nothing() -> None:
    with pytest.raises(StepError) as info:
        nsprim.run(["true"], new={"mnt"}, steps=[Mount("proc", "/definitely/missing", "proc")])
    err = info.value
    assert err.errno == 2
    assert str(err).startswith("mount `proc` on `/definitely/missing`: No such file or directory")
    assert isinstance(err.step, Mount) and err.index >= 1


def test_path_search_uses_the_given_environment(tmp_path: Path) -> None:
    prog = tmp_path / "hello-nsprim"
    prog.write_text("#!/bin/sh\necho found\n")
    prog.chmod(0o755)
    r = nsprim.run(["hello-nsprim"], env={"PATH": f"/nonexistent:{tmp_path}"}, capture_output=True)
    assert r.stdout == b"found\n"


def test_environment_and_cwd(tmp_path: Path) -> None:
    r = nsprim.run(
        ["sh", "-c", "pwd; echo $FOO"], env={"FOO": "bar", "PATH": "/usr/bin:/bin"}, cwd=tmp_path, capture_output=True
    )
    assert r.stdout == f"{tmp_path}\nbar\n".encode()


def test_stdin_stdout_stderr_pipes_and_stdout_merge() -> None:
    r = nsprim.run(["sh", "-c", "cat; echo err >&2"], input=b"hello", capture_output=True)
    assert (r.stdout, r.stderr) == (b"hello", b"err\n")
    r = nsprim.run(["sh", "-c", "echo out; echo err >&2"], stdout=nsprim.PIPE, stderr=nsprim.STDOUT)
    assert sorted(r.stdout.split()) == [b"err", b"out"]  # type: ignore[union-attr]


def test_only_requested_descriptors_are_inherited() -> None:
    r, w = os.pipe()  # inheritable on purpose: nsprim must still not pass it
    keep_r, keep_w = os.pipe()
    try:
        out = nsprim.run(["sh", "-c", "ls /proc/self/fd"], pass_fds=[keep_w], capture_output=True).stdout
    finally:
        for fd in (r, w, keep_r, keep_w):
            os.close(fd)
    fds = sorted(int(x) for x in (out or b"").split())
    # 0-2, the kept one, and the fd ls uses to read the directory
    assert keep_w in fds and r not in fds and w not in fds
    assert len(fds) == 5


def test_process_wait_timeout_signal_and_context_manager() -> None:
    p = nsprim.spawn(["sleep", "30"], new={"uts"})  # not pid 1: that one ignores SIGTERM
    with p:
        with pytest.raises(TimeoutExpired):
            p.wait(timeout=0.05)
        assert p.poll() is None
        p.send_signal(signal.SIGTERM)
        assert p.wait(timeout=5) == -signal.SIGTERM
        assert p.pidfd == -1
    p.kill()  # harmless after reaping
    with nsprim.spawn(["sleep", "30"]) as q:
        pid = q.pid
    assert q.returncode == -signal.SIGKILL
    assert not Path(f"/proc/{pid}").exists()


def test_run_timeout_kills_and_reaps() -> None:
    start = time.monotonic()
    with pytest.raises(TimeoutExpired):
        nsprim.run(["sleep", "30"], timeout=0.2)
    assert time.monotonic() - start < 5


@requires_root
def test_spawn_from_a_threaded_program() -> None:
    stop = threading.Event()
    busy = [threading.Thread(target=lambda: [None for _ in iter(lambda: stop.is_set(), True)]) for _ in range(3)]
    for t in busy:
        t.start()
    results: list[bytes] = []
    errors: list[BaseException] = []

    def worker() -> None:
        try:
            for _ in range(10):
                r = nsprim.run(["sh", "-c", "echo $$"], new={"pid", "uts", "mnt", "user"}, capture_output=True)
                results.append(r.stdout or b"")
        except BaseException as exc:
            errors.append(exc)

    spawners = [threading.Thread(target=worker) for _ in range(4)]
    try:
        for t in spawners:
            t.start()
        for t in spawners:
            t.join()
    finally:
        stop.set()
        for t in busy:
            t.join()
    assert not errors
    assert results == [b"1\n"] * 40


@requires_root
def test_unprivileged_caller_gets_a_user_namespace_with_itself_as_root() -> None:
    """A process with uid 65534 (no capabilities) spawns through nsprim in a new user namespace."""

    def body() -> str:
        res = nsprim.run(
            ["sh", "-c", "id -u; cat /proc/self/uid_map; hostname"],
            new={"user", "uts", "mnt", "pid"},
            hostname="rootless",
            mount_proc=True,
            capture_output=True,
        )
        return (res.stdout or res.stderr or b"?").decode()

    lines = run_as_nobody(body).split("\n")
    assert lines[0] == "0"
    assert lines[1].split() == ["0", "65534", "1"]
    assert lines[2] == "rootless"


def test_id_map_without_user_namespace_is_refused() -> None:
    with pytest.raises(ConfigError, match="new user namespace"):
        nsprim.spawn(["true"], uid_map=IdMap.single(0, 1000))
    with pytest.raises(ConfigError, match="mount_proc"):
        nsprim.spawn(["true"], mount_proc=True)
    with pytest.raises(ConfigError):
        nsprim.spawn([])


def test_low_level_plan_start_and_step_index() -> None:
    plan = Plan((Chdir("/"), Chdir("/nonexistent-dir"), Exec("/bin/true", ["true"], {})))
    with pytest.raises(StepError) as info:
        nsprim.lowlevel.start(plan)
    assert info.value.index == 1 and "chdir `/nonexistent-dir`" in str(info.value)
    ok = Plan((Chdir("/"), Exec("/bin/true", ["true"], {})))
    with nsprim.lowlevel.start(ok) as p:
        assert p.wait() == 0
    with nsprim.lowlevel.start(ok) as p:  # a plan is encoded once and reusable
        assert p.wait() == 0


def test_setup_timings_cover_the_clone_and_every_step() -> None:
    plan = Plan((Chdir("/"), Chdir("/tmp"), Exec("/bin/true", ["true"], {})))
    with nsprim.lowlevel.start(plan, timings=True) as p:
        assert p.wait() == 0
    if not plan.vfork_safe:
        assert p.setup_us == ()
        return
    # the clone, then one duration per step; the exec ends when the parent resumes
    assert len(p.setup_us) == 1 + len(plan.steps)
    assert all(us >= 0 for us in p.setup_us) and p.setup_us[-1] > 0
    with nsprim.lowlevel.start(plan) as q:  # off by default
        assert q.wait() == 0 and q.setup_us == ()


def test_python_payload_sees_default_signal_dispositions() -> None:
    # Python ignores SIGPIPE for itself; the payload must get the default back.
    out = nsprim.run(["grep", "SigIgn", "/proc/self/status"], capture_output=True).stdout or b""
    ignored = int(out.split()[1], 16)
    assert not ignored & (1 << (signal.SIGPIPE - 1))


def _signal_masks(pid: int) -> dict[str, int]:
    status = Path(f"/proc/{pid}/status").read_text()
    return {
        k: int(v, 16)
        for k, v in (line.split(":\t") for line in status.splitlines() if line[:6] in ("SigIgn", "SigCgt"))
    }


def _children() -> set[int]:
    out = set()
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                stat_line = (entry / "stat").read_text()
            except OSError:
                continue
            if int(stat_line.rsplit(")", 1)[1].split()[1]) == os.getpid():
                out.add(int(entry.name))
    return out


@pytest.mark.parametrize("mode", ["vfork", "fork"])
def test_between_clone_and_exec_no_handler_of_the_caller_is_left(tmp_path: Path, mode: str) -> None:
    """The child runs no handler of ours before exec (CLONE_CLEAR_SIGHAND, or a reset in the child); what
    the caller ignores stays ignored, except SIGPIPE and SIGXFSZ, which Python ignores for itself."""
    from nsprim.plan import Init, WriteFile

    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)
    bit = {s: 1 << (s - 1) for s in (signal.SIGUSR1, signal.SIGUSR2, signal.SIGINT, signal.SIGPIPE)}
    plan = Plan(((Init(),) if mode == "fork" else ()) + (WriteFile(fifo, b"go"), Exec("/bin/true", ["true"], {})))
    assert plan.vfork_safe == (mode == "vfork")
    old = signal.signal(signal.SIGUSR1, signal.SIG_IGN), signal.signal(signal.SIGUSR2, lambda *_: None)
    before = _children()
    started: list[nsprim.Process] = []
    spawner = threading.Thread(target=lambda: started.append(nsprim.lowlevel.start(plan)))  # vfork: held until exec
    try:
        assert _signal_masks(os.getpid())["SigCgt"] & bit[signal.SIGUSR2]
        spawner.start()
        deadline = time.monotonic() + 10
        while not (_children() - before) and time.monotonic() < deadline:
            time.sleep(0.005)
        (child,) = _children() - before  # it cannot pass the FIFO step (its exec comes after) until we read
        internal = (1 << 31) | (1 << 32)  # glibc's own (32, 33): its sigaction cannot reset them, the kernel's can
        masks = _signal_masks(child)
        while time.monotonic() < deadline and (masks["SigCgt"] & ~internal or masks["SigIgn"] & bit[signal.SIGPIPE]):
            time.sleep(0.005)  # seen just after the clone: its reset may still be under way
            masks = _signal_masks(child)
        with open(fifo, "rb") as f:
            assert f.read() == b"go"
    finally:
        spawner.join(10)
        signal.signal(signal.SIGUSR1, old[0])
        signal.signal(signal.SIGUSR2, old[1])
    assert started[0].wait() == 0
    assert masks["SigCgt"] & ~internal == 0
    assert masks["SigIgn"] & bit[signal.SIGUSR1]
    assert not masks["SigIgn"] & bit[signal.SIGPIPE]


def test_a_child_killed_during_setup_is_an_error_not_a_finished_process() -> None:
    from nsprim.errors import ChildDiedError
    from nsprim.plan import Sync

    plan = Plan((Sync("the parent acts"), Chdir("/"), Exec("/bin/true", ["true"], {})))

    def kill_it(pid: int) -> None:
        # Once it waits at its sync step (asleep in read), as the OOM killer would kill it mid-setup.
        deadline = time.monotonic() + 10
        while Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "S":
            assert time.monotonic() < deadline
            time.sleep(0.001)
        os.kill(pid, signal.SIGKILL)

    with pytest.raises(ChildDiedError) as info:
        nsprim.lowlevel.start(plan, parent_actions=[kill_it])
    err = info.value
    assert isinstance(err, StepError) and err.index == 0 and err.signal == signal.SIGKILL
    assert "died during setup, before exec (killed by SIGKILL)" in str(err) and "[plan step 0]" in str(err)


def test_a_child_that_died_at_a_step_not_known_says_so() -> None:
    from nsprim.errors import ChildDiedError

    err = ChildDiedError(None, -1, signal=signal.SIGKILL)  # a zygote's fork: no record of its progress
    assert str(err) == ("the child died during its setup, before its payload (killed by SIGKILL); at a step not known")
    assert "before its first step" in str(ChildDiedError(None, 0, exit_status=1))


def test_fork_mode_outcomes_stay_apart_across_many_spawns_and_threads() -> None:
    """Fork-mode children keep their progress records in slots of one shared page: reused
    after each report, taken by several threads at once, each spawn reads its own."""
    from nsprim.plan import Sync

    ok = Plan((Sync("go"), Chdir("/"), Exec("/bin/true", ["true"], {})))
    bad = Plan((Sync("go"), Chdir("/nonexistent-dir"), Exec("/bin/true", ["true"], {})))
    errors: list[str] = []

    def worker(n: int) -> None:
        for i in range(n):
            try:
                if i % 2:
                    with pytest.raises(StepError) as info:
                        nsprim.lowlevel.start(bad, parent_actions=[lambda pid: None])
                    assert info.value.index == 1
                else:
                    with nsprim.lowlevel.start(ok, parent_actions=[lambda pid: None]) as p:
                        assert p.wait() == 0
            except BaseException as exc:  # reported below, from the main thread
                errors.append(repr(exc))

    threads = [threading.Thread(target=worker, args=(80,)) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    worker(300)  # past the page's 256 slots in one thread: every slot is given back
    assert errors == []
