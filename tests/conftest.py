"""Test-suite wide safety and leak checks.

* As root, the whole pytest process first moves into a new mount namespace
  whose ``/`` is made recursively private: whatever a test mounts (persisted
  namespaces included) can never reach the host's mount table.
* Every test is checked for leftovers: mounts added to our namespace,
  child processes (zombies included), and ``nsprim``-named files in
  ``/run/netns``.  A test that leaks fails.
"""

from __future__ import annotations

import os
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

IS_ROOT = os.geteuid() == 0


def pytest_configure(config: pytest.Config) -> None:
    if not IS_ROOT:
        return
    import nsprim

    if os.environ.get("NSPRIM_TEST_PRIVATE_MNT") != str(os.getpid()):
        # Single-threaded here, as unshare(CLONE_NEWNS) requires.
        nsprim.unshare("mnt")
        os.environ["NSPRIM_TEST_PRIVATE_MNT"] = str(os.getpid())


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


def _netns_files() -> set[str]:
    d = Path("/run/netns")
    return {p.name for p in d.iterdir() if "nsprim" in p.name} if d.is_dir() else set()


@pytest.fixture(autouse=True)
def no_leaks(request: pytest.FixtureRequest) -> Iterator[None]:
    """Fail the test if it leaves a mount, a child process or a netns file behind."""
    mounts, children, netns = _mount_ids(), _children(), _netns_files()
    yield
    if request.node.get_closest_marker("allow_leaks"):
        return
    # A child killed at the very end may need a moment to be reaped by its test.
    deadline = time.monotonic() + 2.0
    while (new_children := _children() - children) and time.monotonic() < deadline:
        time.sleep(0.02)
    problems = []
    if new_children:
        problems.append(f"child processes left: {sorted(new_children)}")
    if new_mounts := _mount_ids() - mounts:
        problems.append(f"mounts left: {sorted(new_mounts)}")
    if new_netns := _netns_files() - netns:
        problems.append(f"/run/netns files left: {sorted(new_netns)}")
    if problems:
        pytest.fail("leak: " + "; ".join(problems))


requires_root = pytest.mark.skipif(not IS_ROOT, reason="needs root")
