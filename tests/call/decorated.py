"""A module whose functions are sandboxed by decoration (imported inside the container too)."""

from __future__ import annotations

import os

import nsprim


@nsprim.sandboxed(memory="64M", pids=16, timeout=30)
def double(x: int) -> int:
    """Twice *x*."""
    return 2 * x


@nsprim.sandboxed(capture_output=True)
def where() -> int:
    print("inside")
    return os.getpid()


@nsprim.sandboxed(timeout=0.5)
def slow() -> None:
    import time

    time.sleep(60)
