"""Fixtures of the security tests.

A child started in vfork mode shares the parent's memory map until it execs,
and dumpability belongs to the memory map: a ``SetDumpable(False)`` step (or
a uid switch) in such a child leaves the pytest process non-dumpable.  Each
test here restores it, so the rest of the suite sees the usual state.
"""

from __future__ import annotations

import ctypes
from collections.abc import Iterator

import pytest

_libc = ctypes.CDLL(None, use_errno=True)
PR_GET_DUMPABLE = 3
PR_SET_DUMPABLE = 4


def get_dumpable() -> int:
    """prctl(PR_GET_DUMPABLE) of the calling process."""
    return int(_libc.prctl(PR_GET_DUMPABLE, 0, 0, 0, 0))


@pytest.fixture(autouse=True)
def _restore_dumpable() -> Iterator[None]:
    before = get_dumpable()
    yield
    if get_dumpable() != before:
        _libc.prctl(PR_SET_DUMPABLE, before, 0, 0, 0)
