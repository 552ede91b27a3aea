"""The failure record a started child writes on its start connection, and its reader.

Apart from :mod:`nsprim.handoff` (which re-exports it) because ``start``
reads it in a process of its own: it needs neither the plan's steps nor
the C core's.
"""

from __future__ import annotations

import os
import sys

__all__ = ["StartReport", "read_start_report", "REPORT_SIZE"]

# struct nsp_report: index, kind, errno, part, native ints (read without `struct`, a shared library to load)
#: The size of the failure record a started child writes on its start connection.
REPORT_SIZE = 16


class StartReport:
    """A step after :class:`~nsprim.handoff.WaitStart` failed: its index in the plan, kind and errno.

    A value (immutable, compared by its fields), made without a value-class decorator: ``start``
    reads one in a process that imports nothing else of the kind."""

    __slots__ = ("errno", "index", "kind", "part")

    index: int
    kind: int
    errno: int
    part: int

    def __init__(self, index: int, kind: int, errno: int, part: int) -> None:
        for name, value in (("index", index), ("kind", kind), ("errno", errno), ("part", part)):
            object.__setattr__(self, name, value)

    def __setattr__(self, name: str, value: object) -> None:
        raise AttributeError(f"cannot assign to field {name!r} of a StartReport")

    def _fields(self) -> tuple[int, int, int, int]:
        return (self.index, self.kind, self.errno, self.part)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, StartReport) and self._fields() == other._fields()

    def __hash__(self) -> int:
        return hash(self._fields())

    def __repr__(self) -> str:
        return f"StartReport(index={self.index}, kind={self.kind}, errno={self.errno}, part={self.part})"


def read_start_report(fd: int) -> StartReport | None:
    """Read the start connection *fd* to its end: ``None`` when the child exec'd (or died
    silently), else the failure record of the step that failed."""
    data = b""
    while len(data) < REPORT_SIZE:
        chunk = os.read(fd, REPORT_SIZE - len(data))
        if not chunk:
            break
        data += chunk
    if len(data) != REPORT_SIZE:
        return None
    index, kind, err, part = (int.from_bytes(data[i : i + 4], sys.byteorder, signed=True) for i in (0, 4, 8, 12))
    return StartReport(index, kind, err, part)
