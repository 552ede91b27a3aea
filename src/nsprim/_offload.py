"""Blocking work off the event loop's thread: :func:`off_loop`.

Starting a container is a few milliseconds of system calls that cannot be
awaited (creating the cgroup, the clone, which in vfork mode suspends the
calling thread until the child's exec, writing id maps).  An async start runs
them here, on one of a few worker threads shared by every start of the
process (never a thread per container), and awaits the job's end as a reader
of a descriptor: the same readiness every other async wait of nsprim uses,
whatever the event loop.  Workers leave after a short idle time, so a program
that stopped starting containers has no thread of nsprim left.
"""

from __future__ import annotations

import os
import threading
from collections import deque
from collections.abc import Callable
from typing import Generic, TypeVar

from ._readiness import readable_async, wait_readable

__all__ = ["off_loop", "MAX_WORKERS", "IDLE_SECONDS"]

_T = TypeVar("_T")

#: At most this many worker threads at once (starts beyond wait their turn in the queue).
MAX_WORKERS = max(2, min(4, os.cpu_count() or 1))
#: A worker with no job for this long ends.
IDLE_SECONDS = 0.25


class _Job(Generic[_T]):
    """One call of a worker: its outcome, and an eventfd written once it is there."""

    def __init__(self, fn: Callable[[], _T]) -> None:
        self.fn = fn
        self.done_fd = os.eventfd(0, os.EFD_CLOEXEC)
        self.value: _T | None = None
        self.error: BaseException | None = None

    def run(self) -> None:
        try:
            self.value = self.fn()
        except BaseException as exc:  # handed to the awaiting task, raised there
            self.error = exc
        finally:
            os.eventfd_write(self.done_fd, 1)

    def outcome(self) -> _T:
        if self.error is not None:
            try:
                raise self.error
            finally:
                self.error = None  # no cycle through the traceback
        return self.value  # type: ignore[return-value]


class _Pool:
    """A queue and up to :data:`MAX_WORKERS` daemon threads that take from it."""

    def __init__(self) -> None:
        self.cond = threading.Condition()
        self.queue: deque[_Job[object]] = deque()
        self.workers = 0
        self.idle = 0

    def submit(self, job: _Job[object]) -> None:
        with self.cond:
            self.queue.append(job)
            if self.idle >= len(self.queue):
                self.cond.notify()
                return
            if self.workers >= MAX_WORKERS:
                return  # a busy worker takes it next
            self.workers += 1
        try:
            threading.Thread(target=self._work, name="nsprim-offload", daemon=True).start()
        except BaseException:
            with self.cond:
                self.workers -= 1
                self.queue.remove(job)
            raise

    def _work(self) -> None:
        while True:
            with self.cond:
                while not self.queue:
                    self.idle += 1
                    try:
                        self.cond.wait(IDLE_SECONDS)
                    finally:
                        self.idle -= 1
                    if not self.queue:
                        self.workers -= 1
                        return
                job = self.queue.popleft()
            job.run()


_pool = _Pool()


def _reset_after_fork() -> None:
    global _pool
    _pool = _Pool()  # a forked child has none of the parent's threads


os.register_at_fork(after_in_child=_reset_after_fork)


async def off_loop(fn: Callable[[], _T], undo: Callable[[_T, BaseException], None] | None = None) -> _T:
    """Call *fn* on a shared worker thread and await its result (or exception) without a thread
    of the loop's own: the job's end is a descriptor the loop watches.

    A call in progress cannot be stopped.  Cancelled meanwhile, this blocks until
    *fn* returned, passes what it returned and the cancellation to *undo* (to kill
    what it started, say), and then lets the cancellation go on: nothing *fn*
    made outlives the cancelled task."""
    job: _Job[_T] = _Job(fn)
    try:
        _pool.submit(job)  # type: ignore[arg-type]
        try:
            await readable_async(job.done_fd)
        except BaseException as exc:
            wait_readable(job.done_fd, None)
            if job.error is None and undo is not None:
                undo(job.value, exc)  # type: ignore[arg-type]
            job.error = None
            raise
        return job.outcome()
    finally:
        os.close(job.done_fd)
