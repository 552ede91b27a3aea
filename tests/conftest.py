"""Test-suite wide safety and leak checks.

* As root, the whole pytest process first moves into a new mount namespace
  whose ``/`` is made recursively private: whatever a test mounts (persisted
  namespaces included) can never reach the host's mount table.  A test that
  finds itself in the host's mount namespace fails before it starts.
* Every test is checked for leftovers: mounts added to our namespace (they
  are unmounted, so that later tests start clean), child processes (zombies
  included), ``nsprim``-named files in ``/run/netns``, cgroups, open file
  descriptors (pidfds, namespace descriptors...), threads (warm pools...),
  entries in the state directories (``state_dir()`` and the proc view's
  beside it; the shared lock files and directories excepted) and a changed
  dumpability of the pytest process (a vfork-mode child's ``prctl`` or uid
  switch that stuck to its parent).  A test that leaks fails.
* Under ``CI=true`` a test skipped for a missing tool or library is a
  failure: every tool a test needs is installed by ``scripts/quickstart.sh``,
  and a missing install step must show up red.
"""

from __future__ import annotations

import contextlib
import ctypes
import glob
import os
import re
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from .tools import MissingTool, in_ci

IS_ROOT = os.geteuid() == 0


def in_host_mount_ns() -> bool:
    """Whether we share the mount namespace of pid 1 (or, if that is hidden, of our parent)."""
    mine = os.stat("/proc/self/ns/mnt").st_ino
    for pid in (1, os.getppid()):
        try:
            return os.stat(f"/proc/{pid}/ns/mnt").st_ino == mine
        except OSError:
            continue
    return True  # cannot tell: assume the worst


def pytest_configure(config: pytest.Config) -> None:
    if not IS_ROOT:
        return
    import nsprim

    if os.environ.get("NSPRIM_TEST_PRIVATE_MNT") != str(os.getpid()):
        # Single-threaded here, as unshare(CLONE_NEWNS) requires; also makes / recursively private.
        nsprim.unshare("mnt")
        os.environ["NSPRIM_TEST_PRIVATE_MNT"] = str(os.getpid())


# Skip reasons that mean "something is not installed", whoever raised them.
_MISSING = re.compile(r"missing tool|not installed|could not import|No module named", re.I)


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Iterator[None]:
    outcome = yield
    report: pytest.TestReport = outcome.get_result()  # type: ignore[attr-defined]
    if not (report.skipped and in_ci()) or hasattr(report, "wasxfail"):
        return
    reason = report.longrepr[2] if isinstance(report.longrepr, tuple) else str(report.longrepr)
    excinfo = call.excinfo
    if (excinfo is not None and excinfo.errisinstance(MissingTool)) or _MISSING.search(reason):
        report.outcome = "failed"
        report.longrepr = (
            f"CI=true: skipped for a missing dependency, which scripts/quickstart.sh must install: {reason}"
        )


def _mount_ids() -> set[str]:
    with open("/proc/self/mountinfo") as f:
        return {line.split(" ", 1)[0] + " " + line.split()[4] for line in f}


def _children() -> set[int]:
    out: set[int] = set()
    for task in Path("/proc/self/task").iterdir():
        try:
            out.update(int(p) for p in (task / "children").read_text().split())
        except OSError:
            continue
    return out


def _cgroups() -> set[str]:
    """nsprim groups outside any test group, and groups inside this run's test group.

    (Other ``nsprim-test-*`` groups belong to other test runs, or to the
    cgroup tests, which check their own.)
    """
    root = Path("/sys/fs/cgroup")
    found: set[str] = set()
    try:
        # nsprim-runtime: the runtime's default parent, made and removed by the runtime's commands
        for name in ("nsprim-[0-9a-f]*", "nsprim-runtime", "nsprim-example-*"):
            for pattern in (name, f"*/{name}"):  # cgroup v2's root, or a v1 hierarchy's
                found.update(str(p) for p in root.glob(pattern) if p.is_dir())
        session = os.environ.get("NSPRIM_CGROUP_PARENT")
        if session:
            for hierarchy in root.iterdir():
                d = hierarchy / session.lstrip("/")
                if d.is_dir():
                    found.update(str(p) for p in d.iterdir() if p.is_dir())
    except FileNotFoundError:  # a group vanished while we looked: look again
        return _cgroups()
    return found


def _fds() -> set[str]:
    """This process's open descriptors, as number and target, but the cleanup watcher's
    (made on first use, kept for the life of the process)."""
    from nsprim._sys import watcher

    kept = watcher._state.get("fd") if watcher._state.get("owner") == os.getpid() else None
    found = set()
    for fd in os.listdir("/proc/self/fd"):
        if fd != str(kept):
            with contextlib.suppress(OSError):  # the listing's own descriptor, closed by now
                found.add(f"{fd} -> {os.readlink(f'/proc/self/fd/{fd}')}")
    return found


def _threads() -> set[int]:
    return {int(tid) for tid in os.listdir("/proc/self/task")}


def _netns_files() -> set[str]:
    d = Path("/run/netns")
    return {p.name for p in d.iterdir() if "nsprim" in p.name} if d.is_dir() else set()


# Made on first use and shared by every container from then on: never removed.
SHARED_STATE = frozenset({"userns.lock", "veth.lock", "containers", "root"})
#: Kept on purpose for every later container (compiled seccomp programs, by content; the programs of
#: ``nsprim run`` command lines, nsprim.cli.kept): no test's leftover.
STATE_CACHES = frozenset({"seccomp", "plans"})


def state_entries() -> set[str]:
    """What is in the state directory (and one level into its shared directories) and in the
    proc view's directory beside it, the shared lock files and directories themselves excepted."""
    from nsprim.container.host import state_dir
    from nsprim.container.procview import view_directory

    state = state_dir()
    found: set[str] = set()
    for base in (state, view_directory(state, "-").parent):
        with contextlib.suppress(FileNotFoundError, NotADirectoryError):
            for entry in os.scandir(base):
                if base == state and entry.name in STATE_CACHES:
                    continue
                if base != state or entry.name not in SHARED_STATE:
                    found.add(entry.path)
                elif entry.is_dir(follow_symlinks=False):
                    with contextlib.suppress(FileNotFoundError, NotADirectoryError):
                        found.update(sub.path for sub in os.scandir(entry.path))
    return found


def _not_in_use(entries: set[str]) -> set[str]:
    """The entries but those named after a live container's cgroup: another test run's (the machine
    is shared), whose container still runs; one of ours left behind has no group any more."""
    root = Path("/sys/fs/cgroup")
    return {
        e
        for e in entries
        if not any(
            any(root.glob(pattern.format(glob.escape(Path(e).name))))
            for pattern in ("{}", "*/{}", "nsprim-test-*/{}", "*/nsprim-test-*/{}")
        )
    }


_libc = ctypes.CDLL(None, use_errno=True)
PR_GET_DUMPABLE = 3
PR_SET_DUMPABLE = 4


def get_dumpable() -> int:
    """prctl(PR_GET_DUMPABLE) of the calling process."""
    return int(_libc.prctl(PR_GET_DUMPABLE, 0, 0, 0, 0))


@pytest.fixture(autouse=True)
def no_leaks(request: pytest.FixtureRequest) -> Iterator[None]:
    """Fail the test if it leaves a mount, a child process, a netns file, a cgroup, a descriptor,
    a thread or a state directory entry behind, or the pytest process's dumpability changed."""
    if IS_ROOT and in_host_mount_ns():
        pytest.fail("refusing to run: still in the host's mount namespace")
    mounts, children, netns, cgroups = _mount_ids(), _children(), _netns_files(), _cgroups()
    fds, threads, state, dumpable = _fds(), _threads(), state_entries(), get_dumpable()
    yield
    if (now := get_dumpable()) != dumpable:
        _libc.prctl(PR_SET_DUMPABLE, dumpable, 0, 0, 0)  # later tests start as usual
    if request.node.get_closest_marker("allow_leaks"):
        return
    # A child killed at the very end may need a moment to be reaped by its test, a thread to end.
    deadline = time.monotonic() + 2.0
    while True:
        new_children, new_fds, new_threads = _children() - children, _fds() - fds, _threads() - threads
        if not (new_children or new_fds or new_threads) or time.monotonic() > deadline:
            break
        time.sleep(0.02)
    problems = []
    if new_children:
        problems.append(f"child processes left: {sorted(new_children)}")
    if new_fds:
        problems.append(f"file descriptors left: {sorted(new_fds)}")
    if new_threads:
        names = {t.native_id: t.name for t in threading.enumerate()}
        problems.append(f"threads left: {sorted(f'{tid} ({names.get(tid)})' for tid in new_threads)}")
    if now != dumpable:
        problems.append(f"dumpability changed from {dumpable} to {now}")
    if new_mounts := _mount_ids() - mounts:
        problems.append(f"mounts left: {sorted(new_mounts)}")
        _unmount(new_mounts)
    if new_netns := _netns_files() - netns:
        problems.append(f"/run/netns files left: {sorted(new_netns)}")
    deadline = time.monotonic() + 2.0  # the cleanup watcher may still be at work
    while (new_cgroups := _cgroups() - cgroups) and time.monotonic() < deadline:
        time.sleep(0.05)
    if new_cgroups:
        problems.append(f"cgroups left: {sorted(new_cgroups)}")
    while (new_state := _not_in_use(state_entries() - state)) and time.monotonic() < deadline:
        time.sleep(0.05)
    if new_state:
        problems.append(f"state directory entries left: {sorted(new_state)}")
    if problems:
        pytest.fail("leak: " + "; ".join(problems))


def _unmount(mounts: set[str]) -> None:
    """Detach the mounts that _mount_ids() listed, the latest first."""
    import nsprim.fs.mount
    from nsprim.fs.mountinfo import mountinfo

    ids = {int(m.split(" ", 1)[0]) for m in mounts}
    for m in sorted((m for m in mountinfo() if m.mount_id in ids), key=lambda m: m.mount_id, reverse=True):
        with contextlib.suppress(OSError):
            nsprim.fs.mount.umount(m.mount_point, detach=True)


@pytest.fixture(scope="session", autouse=True)
def container_cgroup_parent() -> Iterator[str | None]:
    """Containers started by tests live under one `nsprim-test-<random>` group."""
    if not IS_ROOT:
        yield None
        return
    import secrets

    from nsprim.cgroup import ROOT, CGroup

    try:
        prefix = os.environ.get("NSPRIM_TEST_CGROUP_PREFIX", "nsprim-test-")
        parent = CGroup.create(f"{prefix}{secrets.token_hex(4)}", parent=ROOT)
    except Exception:  # no usable cgroup hierarchy: containers run without one
        yield None
        return
    # Should this run be killed before its teardown, nsprim's own cleanup
    # watcher removes the group (and anything still in it).
    from nsprim._sys import watcher

    watcher.watch_cgroups(parent.directories.values())
    os.environ["NSPRIM_CGROUP_PARENT"] = parent.path
    try:
        yield parent.path
    finally:
        os.environ.pop("NSPRIM_CGROUP_PARENT", None)
        if parent.exists():
            parent.kill()
            parent.delete(recursive=True, timeout=5.0)
        watcher.forget_cgroups(parent.directories.values())


requires_root = pytest.mark.skipif(not IS_ROOT, reason="needs root")


def _code_paths() -> set[Path]:
    """The directories an unprivileged child needs to read to go on importing and running nsprim."""
    import nsprim

    paths = {Path(sys.prefix), Path(sys.base_prefix), Path(os.path.realpath(sys.executable)).parent}
    paths |= {Path(__file__).resolve().parents[1], Path(nsprim.__file__).resolve().parents[1]}
    return paths


def _reachable_by_others(paths: set[Path]) -> None:
    """Make *paths* reachable by any user, in a mount namespace of this process's own.

    A fresh machine keeps the project under ``/root`` (mode 0700): a child that
    dropped to uid 65534 could not import what it had not imported yet, nor
    exec the core's image for a monitor.  A user running nsprim can read their
    own installation; here each blocking directory (no search bit for others)
    is covered by a 0755 tmpfs holding binds of just the paths needed, in a new
    mount namespace, so that the test's own namespace and the host's stay as they are.
    """
    blocking: dict[Path, set[Path]] = {}
    for path in paths:
        for parent in reversed([path, *path.parents]):
            if parent != Path("/") and not os.stat(parent).st_mode & 0o001:
                blocking.setdefault(parent, set()).add(path)
                break
    if not blocking:
        return
    from nsprim import _sys, unshare
    from nsprim.fs.mount import tmpfs

    unshare("mnt")  # also makes / recursively private
    open_tree_clone, at_recursive, move_mount_f_empty_path = 1, 0x8000, 4
    for top, inside in blocking.items():
        if any(top != other and other in top.parents for other in blocking):
            continue  # covered by the tmpfs of a directory above it
        trees = {p: _sys.open_tree(-100, str(p), open_tree_clone | at_recursive | os.O_CLOEXEC) for p in inside}
        tmpfs(top, mode=0o755)
        for path, fd in trees.items():
            path.mkdir(parents=True, exist_ok=True)
            _sys.move_mount(fd, "", -100, str(path), move_mount_f_empty_path)
            os.close(fd)


def run_as_nobody(fn: Callable[[], object], cgroup: Path | None = None) -> str:
    """Run *fn* in a forked child that dropped to uid/gid 65534; return what it returned, as text.

    The child makes itself dumpable again, as a real unprivileged process is
    (changing uid cleared it, which would leave its /proc files to root).
    With *cgroup* (a cgroup v2 directory), it moves there first, while still root.
    """
    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:  # pragma: no cover - runs in the child
        code = 1
        try:
            os.close(r)
            if cgroup is not None:
                (cgroup / "cgroup.procs").write_text("0")
            _reachable_by_others(_code_paths())
            os.setgroups([])
            os.setresgid(65534, 65534, 65534)
            os.setresuid(65534, 65534, 65534)
            ctypes.CDLL(None).prctl(4, 1, 0, 0, 0)  # PR_SET_DUMPABLE
            os.chdir("/")
            os.write(w, str(fn()).encode())
            code = 0
        except BaseException as exc:
            os.write(w, f"{type(exc).__name__}: {exc}".encode())
        finally:
            os._exit(code)
    os.close(w)
    with os.fdopen(r, "rb") as f:
        text = f.read().decode()
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0, text
    return text


@contextlib.contextmanager
def cpu_hogs(count: int = 2) -> Iterator[set[int]]:
    """*count* busy-looping processes on the first *count* CPUs of this process, killed on exit;
    yields those CPUs (pin what should compete with them there)."""
    cpus = set(sorted(os.sched_getaffinity(0))[:count])
    hogs: list[subprocess.Popen[bytes]] = []
    try:
        for _ in range(count):
            hogs.append(subprocess.Popen([sys.executable, "-c", "while True: pass"]))
            os.sched_setaffinity(hogs[-1].pid, cpus)
        yield cpus
    finally:
        for hog in hogs:
            hog.kill()
            hog.wait()
