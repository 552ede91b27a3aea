"""Safety net for the file system tests: a private mount namespace and no leftovers.

Every test here mounts for real.  Before any test runs the pytest process
must be in a mount namespace of its own with ``/`` recursively private (the
suite-wide ``tests/conftest.py`` arranges that; this file does it too if
run alone), so that nothing can reach the host's mount table.  Each test is
then checked for mounts it left behind.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator

import pytest

import nsprim
import nsprim.fs.mount
from nsprim.fs.mountinfo import mountinfo

IS_ROOT = os.geteuid() == 0


def _in_host_mount_ns() -> bool:
    """Whether we share the mount namespace of pid 1 (or, if that is hidden, of our parent)."""
    mine = os.stat("/proc/self/ns/mnt").st_ino
    for pid in (1, os.getppid()):
        try:
            return os.stat(f"/proc/{pid}/ns/mnt").st_ino == mine
        except OSError:
            continue
    return True  # cannot tell: assume the worst


def pytest_configure(config: pytest.Config) -> None:
    if IS_ROOT and _in_host_mount_ns():
        nsprim.unshare("mnt")  # also makes / recursively private


@pytest.fixture(autouse=True)
def private_mounts_only() -> Iterator[None]:
    """Refuse to run a mounting test in the host's mount namespace; fail on leftover mounts."""
    if not IS_ROOT:
        pytest.skip("the file system tests mount for real and need root")
    if _in_host_mount_ns():
        pytest.fail("refusing to run: still in the host's mount namespace")
    before = {(m.mount_id, m.mount_point) for m in mountinfo()}
    yield
    left = {(m.mount_id, m.mount_point) for m in mountinfo()} - before
    if left:
        for _, point in sorted(left, reverse=True):  # clean up so that later tests start clean
            with contextlib.suppress(OSError):
                nsprim.fs.mount.umount(point, detach=True)
        pytest.fail(f"mounts left behind: {sorted(p for _, p in left)}")
