"""Process.wait_async: exits through pidfd readiness on the event loop, no thread, cancellation-safe."""

from __future__ import annotations

import asyncio
import os
import signal
import threading

import pytest

import nsprim
from nsprim.errors import TimeoutExpired

from .conftest import requires_root


def _threads() -> int:
    return len(os.listdir("/proc/self/task"))


@requires_root
def test_wait_async_returns_the_status_the_sync_wait_would() -> None:
    async def main() -> tuple[int, int]:
        with nsprim.spawn(["sh", "-c", "exit 7"], new={"uts"}) as p, nsprim.spawn(["sleep", "30"], new={"uts"}) as q:
            first = await p.wait_async()
            q.kill()
            return first, await q.wait_async()

    assert asyncio.run(main()) == (7, -signal.SIGKILL)


@requires_root
def test_many_processes_awaited_together_use_no_thread() -> None:
    async def main() -> list[int]:
        procs = [nsprim.spawn(["sh", "-c", f"sleep 0.2; exit {i % 5}"], new={"uts"}) for i in range(30)]
        try:
            before = _threads()
            tasks = [asyncio.ensure_future(p.wait_async()) for p in procs]
            await asyncio.sleep(0.05)
            assert _threads() == before  # every wait is a reader on the loop, none a thread
            return list(await asyncio.gather(*tasks))
        finally:
            for p in procs:
                p.close()

    assert asyncio.run(main()) == [i % 5 for i in range(30)]


@requires_root
def test_a_cancelled_wait_leaves_the_process_waitable_and_no_reader() -> None:
    async def main() -> int:
        with nsprim.spawn(["sleep", "30"], new={"uts"}) as p:
            fds_before.update(os.listdir("/proc/self/fd"))
            with pytest.raises(TimeoutError):
                async with asyncio.timeout(0.1):
                    await p.wait_async()
            assert p.returncode is None and p.pidfd >= 0
            assert set(os.listdir("/proc/self/fd")) == fds_before  # the wait's duplicate is closed
            p.kill()
            return await p.wait_async()

    fds_before: set[str] = set()
    assert asyncio.run(main()) == -signal.SIGKILL


@requires_root
def test_two_tasks_waiting_on_one_process_both_wake() -> None:
    async def main() -> list[int]:
        with nsprim.spawn(["sh", "-c", "sleep 0.2; exit 3"], new={"uts"}) as p:
            return list(await asyncio.gather(p.wait_async(), p.wait_async(), p.wait_async()))

    assert asyncio.run(main()) == [3, 3, 3]


@requires_root
def test_the_sync_wait_times_out_and_then_collects() -> None:
    with nsprim.spawn(["sleep", "30"], new={"uts"}) as p:
        with pytest.raises(TimeoutExpired):
            p.wait(0.05)
        p.terminate()
        assert p.wait(10) == -signal.SIGTERM
        assert p.exit_fd() == -1


def test_a_released_process_is_left_to_be_reaped_by_another() -> None:
    """release() closes our descriptors and never reaps, even a process that has ended."""
    import gc
    import time

    proc = nsprim.spawn(["true"])
    pid = proc.pid
    deadline = time.monotonic() + 10
    from pathlib import Path

    while Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z":
        assert time.monotonic() < deadline
        time.sleep(0.01)
    proc.release()
    del proc
    gc.collect()
    assert os.waitpid(pid, 0) == (pid, 0)  # still ours to reap: nothing took its status


def test_the_blocking_part_of_an_async_start_runs_while_the_loop_goes_on() -> None:
    """The parent's part of a start (here a parent action, which waits for the loop to have run a
    task) is on a shared worker thread, not on the loop's: on the loop, it would wait in vain."""
    from nsprim.lowlevel import run_waits_async, start_steps
    from nsprim.plan import Exec, Plan, Sync

    plan = Plan((Sync("the parent acts"), Exec("/bin/true", ["true"], {})))
    loop_ran = threading.Event()
    acted_on: list[str] = []

    def action(pid: int) -> None:
        acted_on.append(threading.current_thread().name)
        assert loop_ran.wait(10), "the loop did not run while the start's parent action did"

    async def main() -> int:
        async def mark() -> None:
            loop_ran.set()

        marker = asyncio.ensure_future(mark())
        with await run_waits_async(start_steps(plan, parent_actions=[action])) as proc:
            await marker
            return await proc.wait_async()

    assert asyncio.run(main()) == 0
    assert acted_on == ["nsprim-offload"]
