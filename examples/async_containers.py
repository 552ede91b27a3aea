"""Containers on one asyncio loop: many side by side, commands run inside, a cancelled task
cleaned up, and a memory hog's events as they happen.

Every wait is a reader on the loop (the containers' pidfds and pipes): no
thread per container, however many run (the starts' system calls run on a few
shared worker threads, which leave when idle).  Run as root:
``python examples/async_containers.py``.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import sys
import time

from nsprim.container import Container
from nsprim.container.events import EventKind

# The interpreter itself, not a virtual environment's link to it (which the container may not see).
PYTHON = os.path.realpath(sys.executable)
HOG = "chunks = []\nwhile True: chunks.append(bytearray(8 << 20))"


async def many_side_by_side(count: int) -> None:
    t0 = time.monotonic()
    runs = [
        Container(["sh", "-c", f"sleep 0.5; echo job {i} is pid $$ in $(hostname)"])
        .host_root()
        .hostname(f"job-{i}")
        .memory("64M")
        .run_async(capture_output=True, timeout=30)
        for i in range(count)
    ]
    results = await asyncio.gather(*runs)
    took = time.monotonic() - t0
    for r in results[:3]:
        print((r.stdout or b"").decode().strip())
    print(f"{count} containers of 0.5 s each finished in {took:.2f} s on one loop, {_threads()} thread(s)")


async def commands_inside() -> None:
    async with await Container(["sleep", "60"]).host_root().hostname("web").start_async() as box:
        for cmd in (["hostname"], ["sh", "-c", "echo my pid is $$"]):
            r = await box.exec_async(cmd, capture_output=True, timeout=10)
            print(f"$ {' '.join(cmd)}\n{(r.stdout or b'').decode().strip()}")
    print(f"container {box.id} stopped and cleaned up; exit status {box.returncode}")


async def a_cancelled_task() -> None:
    started: list[int] = []

    async def serve() -> None:
        async with await Container(["sleep", "60"]).host_root().start_async() as box:
            started.append(box.pid)
            await box.wait_async()

    task = asyncio.ensure_future(serve())
    await asyncio.sleep(0.2)
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await task
    left = os.path.exists(f"/proc/{started[0]}")
    print(f"cancelled: its pid 1 ({started[0]}) is {'still there' if left else 'gone'}, and its cgroup with it")


async def a_memory_hogs_events() -> None:
    async with await Container([PYTHON, "-c", HOG]).host_root().memory("64M").start_async() as box:
        async for event in box.events():
            if event.kind is EventKind.EXIT:
                print(f"event: exit, status {event.returncode}")
            else:
                print(f"event: {event.kind.value}" + (f" (count {event.count})" if event.count is not None else ""))


def _threads() -> int:
    return len(os.listdir("/proc/self/task"))


async def main() -> int:
    await many_side_by_side(50)
    await commands_inside()
    await a_cancelled_task()
    await a_memory_hogs_events()
    return 0


if __name__ == "__main__":
    sys.exit(asyncio.run(main()))
