"""Waiting for descriptors to become ready: blocking, or from a coroutine (asyncio or trio).

The sync and async waits of nsprim (a process' exit through its pidfd, cgroup
events through an epoll descriptor, a pipe's next chunk) differ only in how
they sleep until a descriptor is ready; what they then read is shared code.

An async wait sleeps until the loop reports one of its descriptors ready, the
only step that depends on the event loop: readers (and writers) of the
running asyncio loop, or ``trio.lowlevel.wait_readable`` in a trio run (told
apart by which of them runs in this thread; trio is imported only by a
program that runs it).  No thread is started.  Cancellation is the library's
own (:class:`asyncio.CancelledError`, ``trio.Cancelled``): a cancelled wait
has unregistered and closed its duplicates before the cancellation goes on.
"""

from __future__ import annotations

import contextlib
import os
import select
import sys
import time
from collections.abc import Iterable

__all__ = [
    "wait_readable",
    "wait_any_readable",
    "readable_async",
    "writable_async",
    "ready_async",
    "running_library",
]


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


def running_library() -> str:
    """``"asyncio"`` or ``"trio"``: which of them runs the calling coroutine.

    Raises :class:`RuntimeError` (as both libraries do for their own calls made
    outside them) when neither runs in this thread."""
    asyncio = sys.modules.get("asyncio")
    if asyncio is not None:
        with contextlib.suppress(RuntimeError):
            asyncio.get_running_loop()
            return "asyncio"
    trio = sys.modules.get("trio")
    if trio is not None:
        with contextlib.suppress(RuntimeError):
            trio.lowlevel.current_task()
            return "trio"
    raise RuntimeError("nsprim's async API runs in an asyncio event loop or a trio run: neither runs here")


async def readable_async(*fds: int, deadline: float | None = None) -> bool:
    """Return once one of *fds* is readable (True), or at *deadline* (a :func:`time.monotonic`
    reading; False), sleeping in the running event loop."""
    ready, _ = await ready_async(fds, (), deadline=deadline)
    return bool(ready)


async def writable_async(fd: int, deadline: float | None = None) -> bool:
    """Return once *fd* is writable (True), or at *deadline* (False), sleeping in the running event loop."""
    _, ready = await ready_async((), (fd,), deadline=deadline)
    return bool(ready)


async def ready_async(
    reads: Iterable[int], writes: Iterable[int] = (), *, deadline: float | None = None
) -> tuple[set[int], set[int]]:
    """Sleep in the running event loop until one of *reads* is readable or one of *writes*
    writable (a hang-up or an error counts as both), or until *deadline* (a
    :func:`time.monotonic` reading); return the readable ones and the writable ones
    the loop saw (both empty at the deadline).  It always sleeps through at least one
    turn of the loop: a task that reads a busy pipe lets the others run, and a
    cancellation reaches it.

    The loop watches duplicates of the descriptors: it keeps one registration per
    descriptor number, which two tasks waiting on one process must not share.  What
    the loop reports is what is returned, never a second look: a pressure trigger's
    readiness is consumed by the look that sees it."""
    wanted = [(fd, False) for fd in reads] + [(fd, True) for fd in writes]
    library = running_library()  # outside a loop, fail before anything is made
    dups: list[tuple[int, int, bool]] = []
    try:
        for fd, write in wanted:
            dups.append((os.dup(fd), fd, write))
        if library == "trio":
            seen = await _sleep_trio(dups, deadline)
        else:
            seen = await _sleep_asyncio(dups, deadline)
    finally:
        for dup, _fd, _write in dups:
            os.close(dup)
    return {fd for fd, write in seen if not write}, {fd for fd, write in seen if write}


async def _sleep_asyncio(dups: list[tuple[int, int, bool]], deadline: float | None) -> set[tuple[int, bool]]:
    import asyncio

    loop = asyncio.get_running_loop()
    waiter: asyncio.Future[None] = loop.create_future()
    seen: set[tuple[int, bool]] = set()

    def ready(fd: int, write: bool) -> None:
        seen.add((fd, write))
        if not waiter.done():
            waiter.set_result(None)

    def timed_out() -> None:
        if not waiter.done():
            waiter.set_result(None)

    added: list[tuple[int, bool]] = []
    timer = None
    try:
        for dup, fd, write in dups:
            if write:
                loop.add_writer(dup, ready, fd, True)
            else:
                loop.add_reader(dup, ready, fd, False)
            added.append((dup, write))
        if deadline is not None:
            timer = loop.call_later(max(0.0, deadline - time.monotonic()), timed_out)
        await waiter
    finally:
        for dup, write in added:
            if write:
                loop.remove_writer(dup)
            else:
                loop.remove_reader(dup)
        if timer is not None:
            timer.cancel()
    return seen


async def _sleep_trio(dups: list[tuple[int, int, bool]], deadline: float | None) -> set[tuple[int, bool]]:
    import trio

    seen: set[tuple[int, bool]] = set()
    left = float("inf") if deadline is None else max(0.0, deadline - time.monotonic())

    async def one(dup: int, fd: int, write: bool, done: trio.CancelScope | None) -> None:
        await (trio.lowlevel.wait_writable if write else trio.lowlevel.wait_readable)(dup)
        seen.add((fd, write))
        if done is not None:
            done.cancel()

    with trio.move_on_after(left):
        if len(dups) == 1:
            await one(*dups[0], None)
        else:
            async with trio.open_nursery() as nursery:
                for dup, fd, write in dups:
                    nursery.start_soon(one, dup, fd, write, nursery.cancel_scope)
        if not dups:
            await trio.sleep_forever()
    return seen
