"""Waiting for a descriptor to become readable: blocking, or on the running asyncio loop.

The sync and async waits of nsprim (a process' exit through its pidfd, cgroup
events through an epoll descriptor) differ only in how they sleep until one
descriptor is readable; what they then read is shared code.  The async wait
registers a *duplicate* of the descriptor with the loop: the loop keeps one
reader per descriptor number, so two tasks waiting on the same process must
not replace each other's callback.  No thread is started.
"""

from __future__ import annotations

import os
import select

__all__ = ["wait_readable", "readable_async"]


def wait_readable(fd: int, timeout: float | None) -> bool:
    """Block until *fd* is readable or *timeout* seconds pass (None: forever); True if readable."""
    poller = select.poll()
    poller.register(fd, select.POLLIN)
    ms = None if timeout is None else max(0, int(timeout * 1000 + 0.999))
    return bool(poller.poll(ms))


async def readable_async(fd: int) -> None:
    """Return once *fd* is readable, sleeping on the running loop.

    Cancellation-safe: a cancelled wait unregisters its reader and closes its
    duplicate before the :class:`asyncio.CancelledError` goes on.
    """
    import asyncio  # only here: a command line that never waits asynchronously does not pay for it

    loop = asyncio.get_running_loop()
    waiter: asyncio.Future[None] = loop.create_future()
    dup = os.dup(fd)
    try:

        def ready() -> None:
            if not waiter.done():
                waiter.set_result(None)

        loop.add_reader(dup, ready)
        try:
            await waiter
        finally:
            loop.remove_reader(dup)
    finally:
        os.close(dup)
