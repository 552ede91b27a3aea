"""What a live container keeps in the process that started it: its handle, and nothing per container else."""

from __future__ import annotations

import gc
import os
from pathlib import Path

from nsprim.container import Container, RunningContainer
from nsprim.process import DEVNULL

from ..conftest import requires_root

pytestmark = requires_root

#: Objects the garbage collector tracks per live handle (19 measured: the handle, its process, preparation
#: and cgroup, their lists, tuples and paths).  Every one is walked by each full collection of the caller:
#: a process with 1,000 live containers must not pay for more.
MOST_TRACKED_PER_HANDLE = 24
LIVE = 10


def _threads() -> int:
    return len(os.listdir("/proc/self/task"))


def _fds() -> int:
    return len(os.listdir("/proc/self/fd"))


def test_a_live_handle_holds_few_tracked_objects_one_descriptor_and_no_thread(rootfs: Path) -> None:
    box = Container(["/bin/sleep", "60"]).rootfs(rootfs)
    with box.start(stdout=DEVNULL):
        pass  # what is made once per process (the plan, the security policy) is made here
    gc.collect()
    before = {id(o) for o in gc.get_objects()}
    threads, fds = _threads(), _fds()
    handles: list[RunningContainer] = []
    try:
        for _ in range(LIVE):
            handles.append(box.start(stdout=DEVNULL))
        gc.collect()
        added = [o for o in gc.get_objects() if id(o) not in before]
        assert len(added) <= MOST_TRACKED_PER_HANDLE * LIVE, sorted({type(o).__qualname__ for o in added})
        assert _fds() - fds == LIVE  # its pidfd
        assert _threads() == threads
    finally:
        for handle in handles:
            handle.close()
    assert _fds() == fds
