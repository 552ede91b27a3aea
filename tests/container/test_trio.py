"""The async API under trio: run_async, start_async, wait_async, async with, exec_async, events.

One implementation serves asyncio and trio: only the sleep until a descriptor
is ready differs (``trio.lowlevel.wait_readable`` here).  A cancelled scope
leaves no process, cgroup, mount or state directory entry behind (the suite's
leak checker fails the test otherwise; these tests also look themselves)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
from pathlib import Path

import pytest

from nsprim import IdMap
from nsprim._offload import MAX_WORKERS
from nsprim.container import Container, RunningContainer
from nsprim.container.events import ContainerEvent, EventKind
from nsprim.errors import ExecutableNotFoundError, TimeoutExpired

from ..conftest import _cgroups, _children, requires_root, state_entries

try:
    import trio
except ImportError:
    trio = None

pytestmark = requires_root


@pytest.fixture(autouse=True)
def _needs_trio() -> None:
    """Without trio each test is skipped, which under CI=true is a failure: the tests session installs it."""
    pytest.importorskip("trio")


def _threads() -> int:
    return len(os.listdir("/proc/self/task"))


def _gone(box: RunningContainer, dirs: list[Path]) -> bool:
    return box.returncode is not None and not Path(f"/proc/{box.pid}").exists() and not any(d.exists() for d in dirs)


def _dirs(box: RunningContainer) -> list[Path]:
    assert box.cgroup is not None
    return list(box.cgroup.directories.values())


def test_importing_nsprim_imports_neither_trio_nor_asyncio() -> None:
    code = "import sys, nsprim, nsprim.container; print(sorted({'trio', 'anyio', 'asyncio'} & {*sys.modules}))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"


def test_run_async_under_trio(rootfs: Path) -> None:
    data = os.urandom(1 << 20)  # larger than a pipe: both directions pumped by one task

    async def main() -> None:
        r = await (
            Container(["sh", "-c", "cat; echo err >&2; exit 3"])
            .rootfs(rootfs)
            .run_async(capture_output=True, input=data)
        )
        assert (r.returncode, r.stdout, r.stderr) == (3, data, b"err\n")
        assert r.stats is not None
        with pytest.raises(TimeoutExpired) as info:
            await Container(["sleep", "30"]).rootfs(rootfs).run_async(timeout=0.2)
        assert info.value.killed
        with pytest.raises(ExecutableNotFoundError):
            await Container(["/no/such/program"]).rootfs(rootfs).run_async()

    trio.run(main)


def test_start_wait_and_async_with_under_trio(rootfs: Path) -> None:
    async def main() -> tuple[RunningContainer, list[Path]]:
        async with await Container(["sh", "-c", "sleep 0.3; exit 5"]).rootfs(rootfs).start_async() as box:
            dirs = _dirs(box)
            with pytest.raises(TimeoutExpired):
                await box.wait_async(timeout=0.05)
            with trio.move_on_after(0.05):  # trio's own deadline: the container goes on
                await box.wait_async()
            assert box.returncode is None
            assert await box.wait_async() == 5
        return box, dirs

    assert _gone(*trio.run(main))


def test_exec_async_under_trio(rootfs: Path) -> None:
    async def main() -> None:
        async with await Container(["sleep", "30"]).rootfs(rootfs).hostname("box").start_async() as box:
            r = await box.exec_async(["sh", "-c", "hostname; cat; exit 4"], input=b"in\n", capture_output=True)
            assert (r.returncode, r.stdout) == (4, b"box\nin\n")
            outs: list[bytes | None] = [None] * 10

            async def one(i: int) -> None:
                outs[i] = (await box.exec_async(["echo", str(i)], capture_output=True)).stdout

            async with trio.open_nursery() as nursery:
                for i in range(10):
                    nursery.start_soon(one, i)
            assert outs == [f"{i}\n".encode() for i in range(10)]
            with pytest.raises(TimeoutExpired):
                await box.exec_async(["sleep", "30"], timeout=0.2)
            with trio.move_on_after(0.2):
                await box.exec_async(["sleep", "30"])
            assert box._execs == [] and box.returncode is None  # reaped; the container goes on

    trio.run(main)


def test_events_under_trio(rootfs: Path) -> None:
    async def main() -> list[ContainerEvent]:
        async with await Container(["sleep", "30"]).rootfs(rootfs).start_async() as box:
            seen = []
            async with box.events([EventKind.EXIT]) as events:
                box.kill()
                async for event in events:
                    seen.append(event)
            return seen

    assert trio.run(main) == [ContainerEvent(EventKind.EXIT, returncode=-signal.SIGKILL)]


def test_events_closed_from_another_task_end_the_iteration(rootfs: Path) -> None:
    async def main() -> list[ContainerEvent]:
        async with await Container(["sleep", "30"]).rootfs(rootfs).start_async() as box:
            events = box.events([EventKind.EXIT])
            seen = []

            async def read() -> None:
                async for event in events:
                    seen.append(event)

            async with trio.open_nursery() as nursery:
                nursery.start_soon(read)
                await trio.sleep(0.05)
                events.close()
            return seen

    assert trio.run(main) == []


@pytest.mark.parametrize("checkpoints", [0, 1, 2, 3, 5, 8])
@pytest.mark.parametrize("userns", [False, True], ids=["vfork", "fork"])
def test_a_start_cancelled_at_any_point_leaves_nothing(rootfs: Path, checkpoints: int, userns: bool) -> None:
    state, cgroups = state_entries(), _cgroups()
    started: list[RunningContainer] = []

    async def main() -> None:
        c = Container(["sleep", "30"]).rootfs(rootfs).tmpfs("/scratch")
        if userns:
            ids = IdMap.single(0, 300000, 65536)
            c = c.user_namespace(ids, ids)

        async def start() -> None:
            started.append(await c.start_async())

        async with trio.open_nursery() as nursery:
            nursery.start_soon(start)
            for _ in range(checkpoints):
                await trio.lowlevel.checkpoint()
            nursery.cancel_scope.cancel()

    trio.run(main)
    for box in started:  # it had started before the cancellation came
        box.close()
    assert not _children() and state_entries() == state and _cgroups() == cgroups


def test_a_cancelled_scope_leaves_no_process_cgroup_or_mount(rootfs: Path) -> None:
    seen: list[tuple[RunningContainer, list[Path]]] = []

    async def main() -> None:
        with trio.move_on_after(0.3):
            async with await Container(["sleep", "30"]).rootfs(rootfs).tmpfs("/scratch").start_async() as box:
                seen.append((box, _dirs(box)))
                await box.wait_async()

    trio.run(main)
    ((box, dirs),) = seen
    assert box.returncode == -signal.SIGKILL and _gone(box, dirs)


def test_fifty_containers_awaited_in_one_trio_run_with_no_thread_per_container(rootfs: Path) -> None:
    async def main() -> list[int]:
        before = _threads()
        boxes = [
            await Container(["sh", "-c", f"sleep 0.5; exit {i % 7}"]).rootfs(rootfs).start_async() for i in range(50)
        ]
        statuses = [-1] * len(boxes)
        try:
            started = _threads()
            assert started - before <= MAX_WORKERS  # the starts' shared workers, not yet gone

            async def wait(i: int) -> None:
                statuses[i] = await boxes[i].wait_async()

            async with trio.open_nursery() as nursery:
                for i in range(len(boxes)):
                    nursery.start_soon(wait, i)
                await trio.sleep(0.1)
                assert _threads() <= started  # every wait is a pidfd the loop watches
            return statuses
        finally:
            for b in boxes:
                await b.aclose()

    assert trio.run(main) == [i % 7 for i in range(50)]


def test_the_blocking_part_of_a_start_runs_while_trio_goes_on() -> None:
    from nsprim.lowlevel import run_waits_async, start_steps
    from nsprim.plan import Exec, Plan, Sync

    plan = Plan((Sync("the parent acts"), Exec("/bin/true", ["true"], {})))
    loop_ran = threading.Event()

    def action(pid: int) -> None:
        assert loop_ran.wait(10), "trio did not run while the start's parent action did"

    async def main() -> int:
        async def mark() -> None:
            loop_ran.set()

        async with trio.open_nursery() as nursery:
            nursery.start_soon(mark)
            with await run_waits_async(start_steps(plan, parent_actions=[action])) as proc:
                return await proc.wait_async()

    assert trio.run(main) == 0


def test_freeze_and_thaw_with_their_events_under_trio(rootfs: Path) -> None:
    async def main() -> list[EventKind]:
        async with await Container(["sleep", "60"]).rootfs(rootfs).start_async() as box:
            group = box.cgroup
            assert group is not None
            async with box.events([EventKind.FROZEN, EventKind.THAWED]) as events:
                with trio.fail_after(10):
                    await box.freeze_async()
                    assert group.frozen
                    first = await events.__anext__()
                    await box.thaw_async()
                    assert not group.frozen
                    second = await events.__anext__()
            return [first.kind, second.kind]

    assert trio.run(main) == [EventKind.FROZEN, EventKind.THAWED]


@pytest.mark.parametrize("backend", ["asyncio", "trio"])
def test_anyio_on_either_backend(rootfs: Path, backend: str) -> None:
    anyio = pytest.importorskip("anyio")  # a failure under CI=true: the tests session installs it

    async def main() -> tuple[int, bytes | None, int]:
        r = await Container(["sh", "-c", "cat; exit 2"]).rootfs(rootfs).run_async(capture_output=True, input=b"x")
        with anyio.move_on_after(0.3):  # cancelled inside the block: killed and cleaned up
            async with await Container(["sleep", "30"]).rootfs(rootfs).start_async() as box:
                await box.wait_async()
        return r.returncode, r.stdout, box.returncode or 0

    assert anyio.run(main, backend=backend) == (2, b"x", -signal.SIGKILL)
