"""The cleanup watcher: what a SIGKILLed owner registered is removed, what it forgot is not."""

from __future__ import annotations

import contextlib
import ctypes
import os
import secrets
import select
import signal
import subprocess
import sys
import textwrap
import time
from collections.abc import Callable
from pathlib import Path

import pytest

import nsprim

from .conftest import cpu_hogs, requires_root

SRC = str(Path(nsprim.__file__).resolve().parent.parent)


def _killed_owner(script: str, before_kill: Callable[[list[str]], object] | None = None) -> list[str]:
    """Run *script* (it prints one line, then sleeps), SIGKILL it, return that line's words
    (given to *before_kill* first)."""
    env = {**os.environ, "PYTHONPATH": SRC}
    argv = [sys.executable, "-c", textwrap.dedent(script)]
    owner = subprocess.Popen(argv, stdout=subprocess.PIPE, env=env, text=True)
    try:
        assert owner.stdout is not None
        words = owner.stdout.readline().split()
        if before_kill is not None:
            before_kill(words)
    finally:
        owner.kill()
        owner.wait()
    return words


def _killed_fork_as_nobody(fn: Callable[[], str], before_kill: Callable[[list[str]], object]) -> None:
    """Fork; the child drops to uid 65534, runs *fn* and sleeps; *before_kill* gets the words of
    what *fn* returned, then the child is SIGKILLed (a fork: no interpreter to find for nobody)."""
    import nsprim.container  # noqa: F401  (loaded while the interpreter's library is readable: nobody may not read it)

    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:  # pragma: no cover - runs in the child
        try:
            os.close(r)
            os.setgroups([])
            os.setresgid(65534, 65534, 65534)
            os.setresuid(65534, 65534, 65534)
            ctypes.CDLL(None).prctl(4, 1, 0, 0, 0)  # PR_SET_DUMPABLE, as a real unprivileged process is
            os.chdir("/")
            os.write(w, (fn() + "\n").encode())
            time.sleep(600)
        except BaseException as exc:
            os.write(w, f"error {type(exc).__name__}: {exc}\n".encode())
        finally:
            os._exit(1)
    os.close(w)
    try:
        with os.fdopen(r) as f:
            before_kill(f.readline().split())
    finally:
        os.kill(pid, signal.SIGKILL)
        os.waitpid(pid, 0)


def _gone(paths: list[Path], timeout: float = 10.0) -> bool:
    deadline = time.monotonic() + timeout
    while any(p.exists() for p in paths) and time.monotonic() < deadline:
        time.sleep(0.02)
    return not any(p.exists() for p in paths)


def test_registered_trees_of_any_path_length_are_removed_and_forgotten_ones_kept(tmp_path: Path) -> None:
    trees = [tmp_path / ("t" * n) for n in (1, 200, 255)]  # records of different lengths in one pipe
    deep = tmp_path / "deep"
    for t in trees:
        (t / "sub").mkdir(parents=True)
        (t / "sub" / "file").write_text("x")
    deep.mkdir()
    kept = tmp_path / "kept"
    kept.mkdir()
    script = f"""
        import time
        from nsprim._sys import watcher
        for p in {[str(t) for t in trees]!r} + [{str(kept)!r}]:
            watcher.watch_tree(p)
        watcher.forget_tree({str(kept)!r})
        print("ready", flush=True)
        time.sleep(600)
    """
    assert _killed_owner(script) == ["ready"]
    assert _gone(trees)
    assert kept.is_dir()


@requires_root
def test_a_killed_owners_warm_pool_leaves_no_cgroup() -> None:
    script = """
        import time
        from nsprim.container import Container
        box = Container(["true"]).host_root().memory("64M").warm(3)
        deadline = time.monotonic() + 10
        while len(box._supply._cgroups) < 3 and time.monotonic() < deadline:
            time.sleep(0.01)
        print(*(d for cg in box._supply._cgroups for d in cg.directories.values()), flush=True)
        time.sleep(600)
    """
    dirs = [Path(d) for d in _killed_owner(script)]
    assert len(dirs) >= 3 and all(d.is_absolute() for d in dirs)
    assert _gone(dirs)


def _ended(pidfd: int, timeout: float) -> bool:
    """True once the process of *pidfd* has exited (waiting up to *timeout* seconds)."""
    p = select.poll()
    p.register(pidfd, select.POLLIN)
    return bool(p.poll(timeout * 1000))


def _pidfds(pids: list[str]) -> list[int]:
    assert pids and all(p.isdigit() for p in pids), f"the owner printed {pids!r}"
    return [os.pidfd_open(int(p)) for p in pids]


def _kill_all(pidfds: list[int]) -> None:
    for fd in pidfds:
        with contextlib.suppress(ProcessLookupError):
            signal.pidfd_send_signal(fd, signal.SIGKILL)
        _ended(fd, 10.0)
        os.close(fd)


def test_forgetting_one_pid_keeps_every_other_pid_watched() -> None:
    script = """
        import subprocess, time
        from nsprim._sys import watcher
        procs = [subprocess.Popen(["sleep", "600"]) for _ in range(3)]
        for p in procs:
            watcher.watch_pid(p.pid)
        watcher.forget_pid(procs[0].pid)
        print(*(p.pid for p in procs), flush=True)
        time.sleep(600)
    """
    fds: list[int] = []
    _killed_owner(script, lambda pids: fds.extend(_pidfds(pids)))
    forgotten, *watched = fds
    try:
        assert all(_ended(fd, 10.0) for fd in watched), "a watched process outlived its owner"
        assert not _ended(forgotten, 0.2), "the watcher killed a process it was told to forget"
    finally:
        _kill_all([forgotten, *watched])


@requires_root
def test_a_killed_rootless_owner_takes_every_container_along_after_one_ended() -> None:
    def owner() -> str:
        from nsprim.container import Container

        boxes = [Container(["sleep", "600"]).host_root().start() for _ in range(2)]
        Container(["true"]).host_root().run()  # ends: its registration is forgotten, and only its
        return " ".join(str(b.pid) for b in boxes)

    fds: list[int] = []
    _killed_fork_as_nobody(owner, lambda pids: fds.extend(_pidfds(pids)))
    try:
        assert len(fds) == 2
        assert all(_ended(fd, 10.0) for fd in fds), "a rootless container outlived its owner"
    finally:
        _kill_all(fds)


@requires_root
def test_a_rootless_owner_killed_before_its_start_returned_takes_the_container_along() -> None:
    def owner() -> str:
        import threading

        from nsprim._sys import spawn as raw
        from nsprim.container import Container

        cloned: list[int] = []
        paused = threading.Event()
        read_report = raw.read_report

        def read_report_then_pause(handles: raw.SpawnHandles) -> raw.Report | None:
            # The child was released and has exec'd; start() would return next: the owner stops here.
            report = read_report(handles)
            cloned.append(handles.pid)
            paused.set()
            time.sleep(600)
            return report

        raw.read_report = read_report_then_pause  # type: ignore[assignment]
        threading.Thread(target=lambda: Container(["sleep", "600"]).host_root().start(), daemon=True).start()
        paused.wait(60)
        return " ".join(str(pid) for pid in cloned) or "never cloned"

    fds: list[int] = []
    _killed_fork_as_nobody(owner, lambda pids: fds.extend(_pidfds(pids)))
    try:
        assert len(fds) == 1
        assert _ended(fds[0], 10.0), "a rootless container outlived an owner killed inside its start()"
    finally:
        _kill_all(fds)


# Each pauses the owner for good right after its first mkdir of a group (or of a /proc view directory):
# registered only after making it, that directory would outlive the SIGKILL.
_PAUSED_AFTER_MKDIR = {
    "cold": ("from nsprim.cgroup import files as fs", "Container(['true']).host_root().run()"),
    "warm": ("from nsprim.cgroup import files as fs", "Container(['true']).host_root().warm(1)"),
    "proc_view": ("import pathlib as fs", "Container(['true']).host_root().proc_view().run()"),
}


@requires_root
@pytest.mark.parametrize("where", sorted(_PAUSED_AFTER_MKDIR))
def test_a_kill_right_after_a_mkdir_leaves_no_directory(where: str) -> None:
    patched, start = _PAUSED_AFTER_MKDIR[where]
    script = f"""
        import sys, time
        from nsprim.container import Container
        {patched}

        if fs.__name__ == "pathlib":
            made = fs.Path.mkdir

            def mkdir(self, *args, **kwargs):
                made(self, *args, **kwargs)
                if self.parent.name.endswith("-procview"):
                    print(self, flush=True)
                    time.sleep(600)

            fs.Path.mkdir = mkdir
        else:
            made = fs.mkdir

            def mkdir(path):
                made(path)
                print(path, flush=True)
                time.sleep(600)

            fs.mkdir = mkdir
        box = {start}
        deadline = time.monotonic() + 30  # a warm pool's thread makes the group: unless it failed
        while getattr(box, "error", None) is None and time.monotonic() < deadline:
            time.sleep(0.05)
        print("no mkdir:", getattr(box, "error", box), flush=True)
        time.sleep(600)
    """
    made = _killed_owner(script)
    assert len(made) == 1 and Path(made[0]).is_absolute(), made
    assert _gone([Path(made[0])])


def _payloads(token: str) -> int:
    """How many processes run `sleep 3600.<token>`."""
    count = 0
    for d in Path("/proc").iterdir():
        if d.name.isdigit():
            with contextlib.suppress(OSError):
                count += (d / "cmdline").read_bytes().split(b"\0")[:2] == [b"sleep", f"3600.{token}".encode()]
    return count


def _session_groups() -> set[Path]:
    """The groups in this test run's cgroup (where containers go), in every hierarchy."""
    session = os.environ.get("NSPRIM_CGROUP_PARENT", "").lstrip("/")
    assert session, "no cgroup for this test run"
    parents = [h / session for h in Path("/sys/fs/cgroup").iterdir() if (h / session).is_dir()]
    return {g for parent in parents for g in parent.iterdir() if g.is_dir()}


@requires_root
@pytest.mark.slow
@pytest.mark.parametrize("hogs", [0, 2], ids=["idle", "busy"])
def test_a_killed_owner_of_a_thousand_containers_leaves_nothing(hogs: int) -> None:
    """With *hogs*, the owner and its watcher share their CPUs with as many busy loops from the
    moment the containers run (starting them there would only make the test slow)."""
    token = str(secrets.randbelow(10**9))  # part of the payload's argument: sleep takes a number
    count = 1000
    cpus = sorted(os.sched_getaffinity(0))[: hogs or None]
    groups, mounts = _session_groups(), Path("/proc/self/mountinfo").read_text()
    script = f"""
        import os, resource, time
        os.sched_setaffinity(0, {cpus!r})
        soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)  # a pidfd per container
        resource.setrlimit(resource.RLIMIT_NOFILE, (max(soft, min(hard, 4 * {count})), hard))
        from nsprim.container import Container
        box = Container(["sleep", "3600.{token}"]).host_root().network("host")
        boxes = [box.start() for _ in range({count})]
        print(len(boxes), flush=True)
        time.sleep(600)
    """
    started: list[int] = []
    with contextlib.ExitStack() as stack:

        def before_kill(_words: list[str]) -> None:
            started.append(_payloads(token))
            if hogs:
                assert set(stack.enter_context(cpu_hogs(hogs))) == set(cpus)

        _killed_owner(script, before_kill)
        deadline = time.monotonic() + 5.0
        while (_payloads(token) or _session_groups() != groups) and time.monotonic() < deadline:
            time.sleep(0.05)
        left = _payloads(token), len(_session_groups() - groups)
    assert started == [count]
    assert left == (0, 0), "processes, cgroups left 5 s after the owner was killed"
    assert Path("/proc/self/mountinfo").read_text() == mounts
