"""``events``: a container's statistics and OOM kills, as runc prints them.

``events --stats ID`` prints one ``{"type": "stats", "id": ID, "data": {...}}``
line; without ``--stats`` one such line every ``--interval`` (default 5 s),
and ``{"type": "oom", "id": ID}`` when the kernel's OOM killer has killed in
the container since the last line, until the container stops.  The data are
runc's fields, from the container's cgroup: ``cpu.usage`` (nanoseconds,
``total``, ``user``, ``kernel``), ``cpu.throttling``, ``memory.usage``
(bytes, ``usage``, ``max``, ``limit``), ``memory.swap`` and ``memory.raw``
(``memory.stat``), ``pids`` (``current``, ``limit``) and ``blkio``'s bytes and
operations per device.
"""

from __future__ import annotations

import sys
import time

from . import jsonio
from .commands import container_group, state_error
from .store import STOPPED, Store, live_status

TYPE_CHECKING = False  # typing itself is not imported: a runtime command starts fast
if TYPE_CHECKING:
    from ...cgroup import CGroup
    from .cli import Globals

__all__ = ["cmd_events", "stats_document"]

_UNITS = {"s": 1.0, "ms": 0.001, "m": 60.0}


def stats_document(group: CGroup) -> dict[str, object]:
    """runc's ``data`` object of a stats event, from *group*."""
    stats = group.stats()
    data: dict[str, object] = {}
    if stats.cpu is not None:
        c = stats.cpu
        data["cpu"] = {
            "usage": {"total": c.usage_usec * 1000, "user": c.user_usec * 1000, "kernel": c.system_usec * 1000},
            "throttling": {
                "periods": c.nr_periods or 0,
                "throttled_periods": c.nr_throttled or 0,
                "throttled_time": (c.throttled_usec or 0) * 1000,
            },
        }
    if stats.memory is not None:
        m = stats.memory
        usage: dict[str, int] = {"usage": m.current, "max": m.peak or 0}
        if m.limit is not None:
            usage["limit"] = m.limit
        data["memory"] = {"usage": usage, "swap": {"usage": m.swap_current or 0}, "raw": dict(m.stat)}
    if stats.pids is not None:
        pids: dict[str, int] = {"current": stats.pids.current}
        if stats.pids.max is not None:
            pids["limit"] = stats.pids.max
        data["pids"] = pids
    if stats.io is not None:
        data["blkio"] = {
            "ioServiceBytesRecursive": [
                {"major": int(major), "minor": int(minor), "op": op, "value": value}
                for d in stats.io.devices
                for major, _, minor in [d.device.partition(":")]
                for op, value in (("Read", d.rbytes), ("Write", d.wbytes))
            ],
            "ioServicedRecursive": [
                {"major": int(major), "minor": int(minor), "op": op, "value": value}
                for d in stats.io.devices
                for major, _, minor in [d.device.partition(":")]
                for op, value in (("Read", d.rios), ("Write", d.wios))
            ],
        }
    return data


def _interval(text: str) -> float:
    from ...errors import ConfigError

    for suffix in ("ms", "s", "m"):
        if text.endswith(suffix):
            number = text[: -len(suffix)]
            break
    else:
        number, suffix = text, "s"
    try:
        seconds = float(number) * _UNITS[suffix]
    except ValueError:
        seconds = -1.0
    if not seconds > 0:
        raise ConfigError(f'--interval: "{text}" is not a positive duration (5s, 500ms, 1m)', what="--interval")
    return seconds


def cmd_events(g: Globals, opts: dict[str, object], args: list[str]) -> int:
    """``events [--stats] [--interval D] ID``."""
    interval = _interval(str(opts.get("interval") or "5s"))
    store = Store(g.root)
    record = store.load(args[0])
    status = live_status(record)
    if status == STOPPED:
        raise state_error("events", record, status, "events are those of a container that runs")
    group = container_group(record)
    if group is None:
        from ...errors import UnsupportedError

        raise UnsupportedError(f"events of container `{record.id}`: it has no cgroup", feature="cgroup")
    kills = group.oom_kills()
    while True:
        line = {"type": "stats", "id": record.id, "data": stats_document(group)}
        sys.stdout.write(jsonio.dumps(line, compact=True) + "\n")
        sys.stdout.flush()
        if opts.get("stats"):
            return 0
        time.sleep(interval)
        if live_status(store.load(args[0])) == STOPPED or not group.exists():
            return 0
        now = group.oom_kills()
        if now > kills:
            sys.stdout.write(jsonio.dumps({"type": "oom", "id": record.id}, compact=True) + "\n")
            kills = now
