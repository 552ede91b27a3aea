"""Fixtures for the cgroup tests: a private group per test, children that wait to be placed, leak checks.

Safety rules enforced here:

* every group a test makes lives under a fresh ``nsprim-test-<random>`` group
  at the root of each hierarchy — never inside a cgroup we did not create;
* processes are started only through :class:`Children`, which kills and
  reaps them on every path;
* an autouse fixture fails any test that leaves a ``nsprim-test-*``
  directory of this session under any cgroup mount (and removes it, so the
  next test starts clean); groups of other, concurrent sessions are left alone;
* the v2 roots' ``cgroup.subtree_control`` is restored at the end of the session.
"""

from __future__ import annotations

import contextlib
import os
import secrets
import select
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from nsprim.cgroup import ROOT, CGroup, Controller, HostInfo, host_info

PREFIX = "nsprim-test-"
# This pytest process's own prefix: other sessions (run concurrently) use nsprim-test-* too, and their
# groups are never ours to judge or remove.
SESSION_PREFIX = f"{PREFIX}{secrets.token_hex(3)}-"
SRC = str(Path(__file__).resolve().parents[2] / "src")

# Each child first blocks on stdin until the test has moved it into its group.
PRELUDE = "import sys\nsys.stdin.readline()\n"


def _mounts() -> list[Path]:
    try:
        return [h.mount_point for h in host_info().hierarchies]
    except Exception:
        return []


def leftover_dirs(max_depth: int = 4) -> set[Path]:
    """Every ``nsprim-test-*`` directory under any cgroup mount (searched to *max_depth*)."""
    found: set[Path] = set()
    for mount in _mounts():
        stack = [(mount, 0)]
        while stack:
            d, depth = stack.pop()
            try:
                entries = [e for e in os.scandir(d) if e.is_dir(follow_symlinks=False)]
            except OSError:
                continue
            for e in entries:
                if e.name.startswith(PREFIX):
                    found.add(Path(e.path))
                elif depth < max_depth:
                    stack.append((Path(e.path), depth + 1))
    return found


def _remove_tree(d: Path) -> None:
    for sub in sorted((p for p in d.rglob("*") if p.is_dir()), key=lambda p: len(p.parts), reverse=True):
        with contextlib.suppress(OSError):
            sub.rmdir()
    with contextlib.suppress(OSError):
        d.rmdir()


PURE_MODULES = ("test_units.py", "test_procfs.py", "test_pressure_trigger.py")


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Skip the kernel tests of this directory without root or a cgroup file system (pure tests always run)."""
    if os.geteuid() == 0 and _mounts():
        return
    skip = pytest.mark.skip(reason="needs root and a cgroup file system")
    here = Path(__file__).parent
    for item in items:
        if item.path.parent == here and item.path.name not in PURE_MODULES:
            item.add_marker(skip)


@pytest.fixture(scope="session", autouse=True)
def _restore_v2_roots() -> Iterator[None]:
    """Put the v2 roots' subtree_control back as we found it (tests may enable controllers there)."""
    if os.geteuid() != 0:
        yield
        return
    roots = [h.mount_point for h in host_info().hierarchies if h.version == 2]
    before = {r: set((r / "cgroup.subtree_control").read_text().split()) for r in roots}
    yield
    for r, was in before.items():
        now = set((r / "cgroup.subtree_control").read_text().split())
        for c in now - was:
            with contextlib.suppress(OSError):
                (r / "cgroup.subtree_control").write_text(f"-{c}")


@pytest.fixture(autouse=True)
def no_cgroup_leftovers() -> Iterator[None]:
    """Fail the test if it leaves a ``nsprim-test-*`` cgroup directory of this session behind (and remove it)."""
    before = leftover_dirs()
    yield
    left = {d for d in leftover_dirs() - before if d.name.startswith(SESSION_PREFIX)}
    if left:
        for d in left:
            _remove_tree(d)
        pytest.fail(f"cgroup directories left behind: {sorted(map(str, left))}")


@pytest.fixture(scope="session")
def host() -> HostInfo:
    """The host's cgroup layout."""
    return host_info()


def need(host: HostInfo, controller: str) -> int:
    """The cgroup version serving *controller*; skips the test if the host lacks it."""
    version = host.version_of(controller)
    if version is None:
        pytest.skip(f"this host ({host.mode.value}) has no {controller} controller")
    return version


class Child:
    """A ``python -c`` child that waits on stdin until :meth:`release`; output read line by line."""

    def __init__(self, code: str) -> None:
        env = dict(os.environ)
        env["PYTHONPATH"] = SRC + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
        self.proc = subprocess.Popen(
            [sys.executable, "-c", PRELUDE + code],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=env,
        )

    @property
    def pid(self) -> int:
        """The child's pid."""
        return self.proc.pid

    def release(self) -> None:
        """Let the child run past its prelude."""
        assert self.proc.stdin is not None
        self.proc.stdin.write("go\n")
        self.proc.stdin.flush()

    def send(self, line: str) -> None:
        """Write a line to the child's stdin."""
        assert self.proc.stdin is not None
        self.proc.stdin.write(line + "\n")
        self.proc.stdin.flush()

    def readline(self, timeout: float = 90.0) -> str:
        """The next line of output; fails the test after *timeout* seconds.

        Generous: a Python child under a CPU quota in the emulated VM, on a busy
        host, can take tens of seconds to start; only a hung child should fail."""
        assert self.proc.stdout is not None
        ready, _, _ = select.select([self.proc.stdout], [], [], timeout)
        if not ready:
            pytest.fail(f"child {self.pid} printed nothing within {timeout} s")
        line = self.proc.stdout.readline()
        if not line:
            status = self.proc.wait(10)
            err = self.proc.stderr.read() if self.proc.stderr is not None else ""
            pytest.fail(f"child {self.pid} exited with status {status} before printing; stderr:\n{err}")
        return line.strip()

    def wait(self, timeout: float = 30.0) -> int:
        """Wait for exit and return the status (negative: killed by that signal)."""
        return self.proc.wait(timeout)

    def stop(self) -> None:
        """Kill (if needed) and reap the child, closing its pipes."""
        if self.proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                self.proc.send_signal(signal.SIGKILL)
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.proc.wait(10)
        for f in (self.proc.stdin, self.proc.stdout, self.proc.stderr):
            if f is not None:
                with contextlib.suppress(OSError):
                    f.close()


class Children:
    """Starts :class:`Child` processes and guarantees they are gone after the test."""

    def __init__(self) -> None:
        self.started: list[Child] = []

    def start(self, code: str, group: CGroup | None = None, *, release: bool = True) -> Child:
        """Start a child; with *group*, move it in before letting it run."""
        child = Child(code)
        self.started.append(child)
        if group is not None:
            group.add(child.pid)
        if release:
            child.release()
        return child

    def stop_all(self) -> None:
        """Kill and reap every child started."""
        for child in self.started:
            child.stop()


@pytest.fixture
def children() -> Iterator[Children]:
    """A :class:`Children` factory whose processes are killed and reaped at teardown."""
    kids = Children()
    try:
        yield kids
    finally:
        kids.stop_all()


@pytest.fixture
def base(children: Children) -> Iterator[CGroup]:
    """A fresh ``nsprim-test-<random>`` group at the root of every hierarchy, removed after the test."""
    group = CGroup.create(SESSION_PREFIX + secrets.token_hex(4), ROOT)
    try:
        yield group
    finally:
        deadline = time.monotonic() + 10
        children.stop_all()
        while group.exists():
            try:
                if group.frozen:
                    group.thaw()
                if group.procs(recursive=True):
                    group.kill()
                group.delete(recursive=True, timeout=2.0)
            except Exception:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.05)


def controller_names(host: HostInfo) -> list[str]:
    """Names of the controllers the host offers."""
    return sorted(c.value for c in host.controllers if isinstance(c, Controller))
