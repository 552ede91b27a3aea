"""Fixtures of the security tests.

A child started in vfork mode shares the parent's memory map until it execs,
and dumpability belongs to the memory map: a ``SetDumpable(False)`` step (or
a uid switch) in such a child must not leave the pytest process non-dumpable.
The suite's leak check (``tests/conftest.py``) fails a test after which it
is.
"""

from __future__ import annotations

from ..conftest import get_dumpable

__all__ = ["get_dumpable"]
