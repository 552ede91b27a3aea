"""Containers on an asyncio loop: run_async, start_async, wait_async, async with, exec_async.

Every wait is a reader on the loop (pidfds, pipes): no thread is started, and
a cancelled task leaves no process, cgroup or mount behind (the suite's leak
checker fails the test otherwise)."""

from __future__ import annotations

import asyncio
import os
import signal
import time
from pathlib import Path

import pytest

from nsprim import IdMap
from nsprim._offload import MAX_WORKERS
from nsprim.container import Container, RunningContainer
from nsprim.errors import ConfigError, ExecutableNotFoundError, TimeoutExpired

from ..conftest import _cgroups, _children, requires_root, state_entries

pytestmark = requires_root


def _threads() -> int:
    return len(os.listdir("/proc/self/task"))


def _group_dirs(box: RunningContainer) -> list[Path]:
    assert box.cgroup is not None  # as root, every container has one
    return list(box.cgroup.directories.values())


def _gone(box: RunningContainer, dirs: list[Path]) -> bool:
    """pid 1 reaped, no process of it left and every directory of its cgroup removed."""
    return box.returncode is not None and not Path(f"/proc/{box.pid}").exists() and not any(d.exists() for d in dirs)


def test_run_async_returns_what_run_returns(rootfs: Path) -> None:
    async def main() -> None:
        r = (
            await Container(["sh", "-c", "echo $$; cat; echo err >&2; exit 3"])
            .rootfs(rootfs)
            .run_async(capture_output=True, input=b"fed\n")
        )
        assert (r.returncode, r.stdout, r.stderr) == (3, b"1\nfed\n", b"err\n")
        assert r.stats is not None and not r.oom_killed

    asyncio.run(main())


def test_run_async_with_a_large_input_and_output(rootfs: Path) -> None:
    data = os.urandom(1 << 20)  # larger than a pipe: both directions must be pumped at once

    async def main() -> bytes | None:
        r = await Container(["cat"]).rootfs(rootfs).run_async(capture_output=True, input=data)
        return r.stdout

    assert asyncio.run(main()) == data


def test_run_async_times_out_kills_and_cleans_up(rootfs: Path) -> None:
    async def main() -> None:
        with pytest.raises(TimeoutExpired) as info:
            await Container(["sleep", "30"]).rootfs(rootfs).run_async(timeout=0.2)
        assert info.value.killed

    asyncio.run(main())


def test_start_async_wait_async_and_the_handle_cleans_up(rootfs: Path) -> None:
    async def main() -> tuple[RunningContainer, list[Path]]:
        async with await Container(["sh", "-c", "exit 5"]).rootfs(rootfs).start_async() as box:
            dirs = _group_dirs(box)
            assert await box.wait_async() == 5
            assert box.final_stats is not None
        return box, dirs

    assert _gone(*asyncio.run(main()))


def test_a_hundred_containers_awaited_on_one_loop_with_no_thread(rootfs: Path) -> None:
    async def main() -> list[int]:
        before = _threads()
        boxes = [
            await Container(["sh", "-c", f"sleep 0.5; exit {i % 7}"]).rootfs(rootfs).start_async() for i in range(100)
        ]
        try:
            started = _threads()  # the starts' shared workers, if they have not left yet: a few, never 100
            assert started - before <= MAX_WORKERS
            waits = [asyncio.ensure_future(b.wait_async()) for b in boxes]
            await asyncio.sleep(0.1)
            assert _threads() <= started  # every wait is a pidfd reader on the loop
            return list(await asyncio.gather(*waits))
        finally:
            for b in boxes:
                await b.aclose()

    assert asyncio.run(main()) == [i % 7 for i in range(100)]


@pytest.mark.parametrize("yields", [0, 1, 2, 3, 5, 8])
@pytest.mark.parametrize("userns", [False, True], ids=["vfork", "fork"])
def test_a_start_cancelled_at_any_point_leaves_nothing(rootfs: Path, yields: int, userns: bool) -> None:
    """Cancelled while the worker prepares and clones, while the loop awaits the child's report,
    or just after: no process, cgroup, mount or state directory entry remains."""
    state, cgroups = state_entries(), _cgroups()

    async def main() -> RunningContainer | None:
        c = Container(["sleep", "30"]).rootfs(rootfs).tmpfs("/scratch")
        if userns:  # id maps written by the parent: fork mode, the child's setup awaited on the loop
            ids = IdMap.single(0, 300000, 65536)
            c = c.user_namespace(ids, ids)
        task = asyncio.ensure_future(c.start_async())
        for _ in range(yields):
            await asyncio.sleep(0)
        task.cancel()
        try:
            return await task
        except asyncio.CancelledError:
            return None

    box = asyncio.run(main())
    if box is not None:  # it had started before the cancellation came
        box.close()
    assert not _children() and state_entries() == state and _cgroups() == cgroups


def test_run_async_side_by_side(rootfs: Path) -> None:
    async def main() -> tuple[list[bytes | None], float]:
        t0 = time.monotonic()
        runs = [
            Container(["sh", "-c", f"sleep 0.5; echo {i}"]).rootfs(rootfs).run_async(capture_output=True)
            for i in range(20)
        ]
        results = await asyncio.gather(*runs)
        return [r.stdout for r in results], time.monotonic() - t0

    outs, _took = asyncio.run(main())
    assert outs == [f"{i}\n".encode() for i in range(20)]


def test_a_cancelled_task_leaves_no_process_cgroup_or_mount(rootfs: Path) -> None:
    seen: list[tuple[RunningContainer, list[Path]]] = []

    async def body() -> None:
        async with await Container(["sleep", "30"]).rootfs(rootfs).tmpfs("/scratch").start_async() as box:
            seen.append((box, _group_dirs(box)))
            await box.wait_async()

    async def main() -> None:
        task = asyncio.ensure_future(body())
        await asyncio.sleep(0.2)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task

    asyncio.run(main())
    ((box, dirs),) = seen
    assert box.returncode == -signal.SIGKILL and _gone(box, dirs)


def test_a_cancelled_run_async_cleans_up(rootfs: Path) -> None:
    async def main() -> None:
        with pytest.raises(asyncio.TimeoutError):
            await asyncio.wait_for(Container(["sleep", "30"]).rootfs(rootfs).run_async(capture_output=True), 0.2)

    asyncio.run(main())


def test_cancelled_again_while_cleaning_up_still_cleans_up(rootfs: Path) -> None:
    seen: list[tuple[RunningContainer, list[Path]]] = []

    async def body() -> None:
        box = await Container(["sh", "-c", "trap '' TERM; sleep 30"]).rootfs(rootfs).start_async()
        seen.append((box, _group_dirs(box)))
        try:
            await asyncio.sleep(30)
        finally:
            closing = asyncio.ensure_future(box.aclose())
            await asyncio.sleep(0)
            closing.cancel()  # the cleanup's own wait cancelled: it must finish synchronously
            with pytest.raises(asyncio.CancelledError):
                await closing

    async def main() -> None:
        task = asyncio.ensure_future(body())
        await asyncio.sleep(0.2)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task

    asyncio.run(main())
    assert _gone(*seen[0])


def test_exec_async_runs_inside_and_returns_its_result(rootfs: Path) -> None:
    async def main() -> None:
        async with await Container(["sleep", "30"]).rootfs(rootfs).hostname("box").start_async() as box:
            r = await box.exec_async(["sh", "-c", "hostname; cat; exit 4"], input=b"in\n", capture_output=True)
            assert (r.returncode, r.stdout) == (4, b"box\nin\n")
            many = await asyncio.gather(*(box.exec_async(["echo", str(i)], capture_output=True) for i in range(10)))
            assert [m.stdout for m in many] == [f"{i}\n".encode() for i in range(10)]
            with pytest.raises(TimeoutExpired):
                await box.exec_async(["sleep", "30"], timeout=0.2)
            task = asyncio.ensure_future(box.exec_async(["sleep", "30"]))
            await asyncio.sleep(0.2)
            task.cancel()
            with pytest.raises(asyncio.CancelledError):
                await task
            assert box._execs == [] and box.returncode is None  # reaped; the container goes on

    asyncio.run(main())


def test_a_container_exits_while_exec_async_runs(rootfs: Path) -> None:
    async def main() -> int:
        async with await Container(["sh", "-c", "sleep 0.3"]).rootfs(rootfs).start_async() as box:
            task = asyncio.ensure_future(box.exec_async(["sleep", "30"]))
            status = await box.wait_async()  # pid 1 ends; its namespace's processes die with it
            r = await task
            assert r.returncode == -signal.SIGKILL
            return status

    assert asyncio.run(main()) == 0


def test_run_async_refuses_a_tty(rootfs: Path) -> None:
    async def main() -> None:
        with pytest.raises(ConfigError, match="terminal"):
            await Container(["true"]).rootfs(rootfs).tty().run_async()

    asyncio.run(main())


def test_a_start_with_parent_actions_awaits_the_childs_setup_on_the_loop(rootfs: Path) -> None:
    """A user namespace's id maps are written by the parent: the child is cloned in fork mode and
    the wait for its exec is a reader of the loop; cancelled there, nothing is left."""
    ids = IdMap.single(0, 300000, 65536)

    async def main() -> None:
        r = (
            await Container(["sh", "-c", "id -u; cat /proc/self/uid_map"])
            .rootfs(rootfs)
            .user_namespace(ids, ids)
            .run_async(capture_output=True, timeout=60)
        )
        assert r.returncode == 0, r.stderr
        assert (r.stdout or b"").split()[:4] == [b"0", b"0", b"300000", b"65536"]
        task = asyncio.ensure_future(Container(["sleep", "30"]).rootfs(rootfs).user_namespace(ids, ids).start_async())
        await asyncio.sleep(0)  # the task runs to its first wait: the child's report
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task

    asyncio.run(main())


def test_a_failed_start_raises_and_leaves_nothing(rootfs: Path) -> None:
    async def main() -> None:
        with pytest.raises(ExecutableNotFoundError):
            await Container(["/no/such/program"]).rootfs(rootfs).start_async()
        with pytest.raises(ExecutableNotFoundError):
            await Container(["/no/such/program"]).rootfs(rootfs).user_namespace().run_async()

    asyncio.run(main())
