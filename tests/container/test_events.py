"""RunningContainer.events(): exit, OOM kill, freeze/thaw, pressure and memory.high, on an asyncio loop.

Also run in the pure cgroup v2 VM (``nox -s vm``): there the memory events
come from ``memory.events``, here (a hybrid host) from v1's eventfd notices.
A directory root (the host's ``/``): the VM's kernel has no overlay module.
"""

from __future__ import annotations

import asyncio
import os
import signal
import sys

import pytest

from nsprim.cgroup import CpusetResources, MemoryResources, PressureTrigger, Resources, host_info
from nsprim.container import Container
from nsprim.container.events import ContainerEvent, EventKind
from nsprim.errors import UnsupportedError

from ..conftest import requires_root

pytestmark = [requires_root, pytest.mark.cgroup_v2]

PYTHON = os.path.realpath(sys.executable)
HOG = "chunks = []\nfor i in range(64):\n    chunks.append(b'x' * (8 << 20))\n"


def _threads() -> int:
    return len(os.listdir("/proc/self/task"))


def _fds() -> set[str]:
    return set(os.listdir("/proc/self/fd"))


async def _all(events: object) -> list[ContainerEvent]:
    return [e async for e in events]  # type: ignore[attr-defined]


def test_an_oom_kill_then_the_exit() -> None:
    async def main() -> tuple[list[ContainerEvent], int]:
        async with await Container([PYTHON, "-c", HOG]).rootfs("/").memory("48M").start_async() as box:
            seen = await asyncio.wait_for(_all(box.events()), 60)
            return seen, await box.wait_async()

    seen, status = asyncio.run(main())
    kinds = [e.kind for e in seen]
    assert EventKind.OOM_KILL in kinds and kinds[-1] is EventKind.EXIT
    assert kinds.index(EventKind.OOM) < kinds.index(EventKind.OOM_KILL)
    assert next(e for e in seen if e.kind is EventKind.OOM_KILL).count == 1
    assert seen[-1] == ContainerEvent(EventKind.EXIT, returncode=-signal.SIGKILL) and status == -signal.SIGKILL


async def _until(condition: object, timeout: float = 10.0) -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while not condition():  # type: ignore[operator]
        assert loop.time() < deadline, "timed out"
        await asyncio.sleep(0.01)


def test_freeze_and_thaw_then_the_exit_with_no_thread() -> None:
    async def main() -> list[ContainerEvent]:
        async with await Container(["sleep", "60"]).rootfs("/").start_async() as box:
            try:
                events = box.events([EventKind.FROZEN, EventKind.THAWED, EventKind.EXIT])
            except UnsupportedError as exc:
                pytest.skip(str(exc))
            before = _threads()
            seen: list[ContainerEvent] = []

            async def follow() -> None:
                async for event in events:
                    seen.append(event)

            task = asyncio.ensure_future(follow())
            await asyncio.sleep(0.1)
            box.freeze()
            await _until(lambda: len(seen) >= 1)
            box.thaw()
            await _until(lambda: len(seen) >= 2)
            assert _threads() == before  # the waits are readers on the loop
            box.kill()
            await asyncio.wait_for(task, 10)
            return seen

    seen = asyncio.run(main())
    assert [e.kind for e in seen] == [EventKind.FROZEN, EventKind.THAWED, EventKind.EXIT]
    assert seen[-1].returncode == -signal.SIGKILL


def test_freeze_async_and_thaw_async_await_the_kernels_word_on_the_loop() -> None:
    async def main() -> list[ContainerEvent]:
        async with await Container(["sleep", "60"]).rootfs("/").start_async() as box:
            group = box.cgroup
            assert group is not None
            async with box.events([EventKind.FROZEN, EventKind.THAWED]) as events:
                await asyncio.wait_for(box.freeze_async(), 10)
                assert group.frozen
                first = await asyncio.wait_for(events.__anext__(), 10)
                await asyncio.wait_for(box.thaw_async(), 10)
                assert not group.frozen
                second = await asyncio.wait_for(events.__anext__(), 10)
            return [first, second]

    assert [e.kind for e in asyncio.run(main())] == [EventKind.FROZEN, EventKind.THAWED]


def test_a_pressure_trigger_fires() -> None:
    trigger = PressureTrigger("cpu", stall=0.05, window=2.0)
    busy = "while :; do :; done & while :; do :; done"  # two loops on one CPU: each waits half the time

    async def main() -> list[ContainerEvent]:
        box = (
            await Container(["sh", "-c", busy])
            .rootfs("/")
            .resources(Resources(cpuset=CpusetResources(cpus="0")))
            .start_async()
        )
        async with box:
            try:
                events = box.events([EventKind.PRESSURE], pressure=[trigger])
            except UnsupportedError as exc:
                pytest.skip(str(exc))
            async with events:
                first = await asyncio.wait_for(events.__anext__(), 20)
            return [first]

    assert asyncio.run(main()) == [ContainerEvent(EventKind.PRESSURE, trigger=trigger)]


def test_memory_high_hits_on_v2() -> None:
    if host_info().version_of("memory") != 2:
        pytest.skip("memory.high is cgroup v2's")

    async def main() -> ContainerEvent:
        box = (
            await Container([PYTHON, "-c", HOG])
            .rootfs("/")
            .resources(Resources(memory=MemoryResources(high="32M")))
            .start_async()
        )
        async with box, box.events([EventKind.MEMORY_HIGH]) as events:
            return await asyncio.wait_for(events.__anext__(), 60)

    event = asyncio.run(main())
    assert event.kind is EventKind.MEMORY_HIGH and event.count is not None and event.count >= 1


def test_what_the_host_cannot_deliver_is_refused_at_once() -> None:
    if host_info().version_of("memory") != 1:
        pytest.skip("the memory controller is cgroup v2's here")

    async def main() -> None:
        async with await Container(["sleep", "60"]).rootfs("/").memory("64M").start_async() as box:
            with pytest.raises(UnsupportedError, match="`memory_high`") as info:
                box.events([EventKind.MEMORY_HIGH])
            assert info.value.feature == "memory_high"
            events = box.events()  # the default: what can be delivered
            assert EventKind.OOM_KILL in events.kinds and EventKind.MEMORY_HIGH not in events.kinds
            events.close()

    asyncio.run(main())


def test_leaving_early_closes_every_descriptor() -> None:
    async def main() -> None:
        async with await Container(["sleep", "60"]).rootfs("/").memory("64M").start_async() as box:
            fds = _fds()
            events = box.events()
            with pytest.raises(asyncio.TimeoutError):
                await asyncio.wait_for(events.__anext__(), 0.2)  # nothing happens meanwhile
            assert _fds() != fds
            del events  # the last reference: its readers and descriptors go with it
            assert _fds() == fds
            async with box.events() as events:
                with pytest.raises(asyncio.TimeoutError):
                    await asyncio.wait_for(events.__anext__(), 0.2)
            assert _fds() == fds

    asyncio.run(main())


def test_the_exit_comes_through_while_an_exec_d_process_waits_to_be_reaped() -> None:
    async def main() -> list[ContainerEvent]:
        async with await Container(["sh", "-c", "sleep 0.5"]).rootfs("/").start_async() as box:
            box.exec(["sleep", "60"])  # killed with pid 1's namespace; pid 1 ends once it is reaped
            return await asyncio.wait_for(_all(box.events()), 30)

    assert asyncio.run(main()) == [ContainerEvent(EventKind.EXIT, returncode=0)]


def test_after_the_exit_there_is_only_the_exit() -> None:
    async def main() -> list[ContainerEvent]:
        async with await Container(["true"]).rootfs("/").start_async() as box:
            await box.wait_async()
            with pytest.raises(UnsupportedError, match="ended"):
                box.events([EventKind.OOM_KILL])
            return await _all(box.events())

    assert asyncio.run(main()) == [ContainerEvent(EventKind.EXIT, returncode=0)]
