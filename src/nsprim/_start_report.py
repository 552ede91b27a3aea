"""The failure record a started child writes on its start connection, and its reader.

Apart from :mod:`nsprim.handoff` (which re-exports it) because ``start``
reads it in a process of its own: it needs neither the plan's steps nor
the C core's.
"""

from __future__ import annotations

import os
import struct

from ._dataclass import dataclass

__all__ = ["StartReport", "read_start_report", "REPORT_SIZE"]

_REPORT = struct.Struct("iiii")  # struct nsp_report: index, kind, errno, part
#: The size of the failure record a started child writes on its start connection.
REPORT_SIZE = _REPORT.size


@dataclass(frozen=True)
class StartReport:
    """A step after :class:`~nsprim.handoff.WaitStart` failed: its index in the plan, kind and errno."""

    index: int
    kind: int
    errno: int
    part: int


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
    index, kind, err, part = _REPORT.unpack(data)
    return StartReport(index, kind, err, part)
