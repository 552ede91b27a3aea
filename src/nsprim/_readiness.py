"""Waiting for descriptors to become ready: blocking, or on the running asyncio loop.

The sync and async waits of nsprim (a process' exit through its pidfd, cgroup
events through an epoll descriptor, a pipe's next chunk) differ only in how
they sleep until a descriptor is ready; what they then read is shared code.
The async waits register *duplicates* of the descriptors with the loop: the
loop keeps one reader per descriptor number, so two tasks waiting on the same
process must not replace each other's callback.  No thread is started.
"""

from __future__ import annotations

import os
import select
from collections.abc import Iterable

__all__ = ["wait_readable", "wait_any_readable", "readable_async", "writable_async"]


def wait_readable(fd: int, timeout: float | None) -> bool:
    """Block until *fd* is readable or *timeout* seconds pass (None: forever); True if readable."""
    return wait_any_readable((fd,), timeout)


def wait_any_readable(fds: Iterable[int], timeout: float | None) -> bool:
    """Block until one of *fds* is readable or *timeout* seconds pass (None: forever); True if one is."""
    poller = select.poll()
    for fd in fds:
        poller.register(fd, select.POLLIN)
    ms = None if timeout is None else max(0, int(timeout * 1000 + 0.999))
    return bool(poller.poll(ms))


async def readable_async(*fds: int) -> None:
    """Return once one of *fds* is readable, sleeping on the running loop.

    Cancellation-safe: a cancelled wait unregisters its readers and closes its
    duplicates before the :class:`asyncio.CancelledError` goes on.
    """
    await _ready_async(fds, write=False)


async def writable_async(fd: int) -> None:
    """Return once *fd* is writable, sleeping on the running loop (cancellation-safe as :func:`readable_async`)."""
    await _ready_async((fd,), write=True)


async def _ready_async(fds: Iterable[int], *, write: bool) -> None:
    import asyncio  # only here: a command line that never waits asynchronously does not pay for it

    loop = asyncio.get_running_loop()
    waiter: asyncio.Future[None] = loop.create_future()

    def ready() -> None:
        if not waiter.done():
            waiter.set_result(None)

    dups: list[int] = []
    try:
        for fd in fds:
            dups.append(os.dup(fd))
            if write:
                loop.add_writer(dups[-1], ready)
            else:
                loop.add_reader(dups[-1], ready)
        await waiter
    finally:
        for dup in dups:
            if write:
                loop.remove_writer(dup)
            else:
                loop.remove_reader(dup)
            os.close(dup)
