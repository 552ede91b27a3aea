"""Blobs transferred some at once: :func:`run_each`, which stops the others when one fails."""

from __future__ import annotations

import threading
from collections.abc import Callable, Sequence
from concurrent.futures import FIRST_EXCEPTION, ThreadPoolExecutor, wait
from typing import TypeVar

__all__ = ["Stopped", "run_each"]

T = TypeVar("T")


class Stopped(Exception):
    """Another transfer of the same work failed: this one gives up (raised by the work itself)."""


def run_each(work: Callable[[T], None], items: Sequence[T], jobs: int, stop: threading.Event, name: str) -> None:
    """``work(item)`` for each of *items*, *jobs* at a time (in threads named after *name*).

    When one fails, *stop* is set (the work checks it between chunks and raises
    :class:`Stopped`), what has not started is cancelled, and the first real
    error is raised once all have finished.
    """
    if len(items) <= 1 or jobs <= 1:
        for item in items:
            if stop.is_set():
                raise Stopped
            work(item)
        return
    with ThreadPoolExecutor(max_workers=min(jobs, len(items)), thread_name_prefix=name) as pool:
        futures = [pool.submit(work, item) for item in items]
        wait(futures, return_when=FIRST_EXCEPTION)
        if any(f.done() and not f.cancelled() and f.exception() is not None for f in futures):
            stop.set()
            for f in futures:
                f.cancel()
            wait(futures)
            errors = [f.exception() for f in futures if f.done() and not f.cancelled()]
            first = next((e for e in errors if e is not None and not isinstance(e, Stopped)), None)
            raise first or Stopped()
