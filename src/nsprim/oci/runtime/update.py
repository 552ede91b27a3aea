"""``update``: change a running container's cgroup limits, as ``runc update`` does.

The new limits come from ``--resources FILE`` (``-``: standard input; a
``linux.resources`` object alone, as containerd's shim sends it) and from
runc's flags, which win over the file.  They are checked like a bundle's
(:class:`~nsprim.oci.runtime.cgroups.Limits`) before anything is written, and
only the settings given change.
"""

from __future__ import annotations

import sys

from .commands import container_group, state_error
from .store import CREATED, PAUSED, RUNNING, Store, live_status

TYPE_CHECKING = False  # typing itself is not imported: a runtime command starts fast
if TYPE_CHECKING:
    from .cli import Globals

__all__ = ["cmd_update", "resources_document"]

# flag -> (object, field, kind): "size" takes runc's sizes ("64m", "-1")
_FLAGS = {
    "memory": ("memory", "limit", "size"),
    "memory_reservation": ("memory", "reservation", "size"),
    "memory_swap": ("memory", "swap", "size"),
    "cpu_share": ("cpu", "shares", "int"),
    "cpu_quota": ("cpu", "quota", "int"),
    "cpu_period": ("cpu", "period", "int"),
    "cpu_rt_period": ("cpu", "realtimePeriod", "int"),
    "cpu_rt_runtime": ("cpu", "realtimeRuntime", "int"),
    "cpuset_cpus": ("cpu", "cpus", "str"),
    "cpuset_mems": ("cpu", "mems", "str"),
    "pids_limit": ("pids", "limit", "int"),
    "blkio_weight": ("blockIO", "weight", "int"),
}


def resources_document(opts: dict[str, object]) -> dict[str, object]:
    """The ``linux.resources`` object the options describe (the file's, then the flags')."""
    from ...errors import SpecError
    from . import jsonio

    doc: dict[str, object] = {}
    source = opts.get("resources")
    if source:
        try:
            if source == "-":
                text = sys.stdin.read()
            else:
                with open(str(source)) as f:
                    text = f.read()
        except OSError as exc:
            raise SpecError(f"read `{source}`: {exc.strerror}", field="--resources") from None
        try:
            loaded = jsonio.loads(text)
        except ValueError as exc:
            raise SpecError(f"--resources `{source}`: not JSON ({exc})", field="--resources") from None
        if not isinstance(loaded, dict):
            raise SpecError(f"--resources `{source}`: expected a JSON object", field="--resources")
        doc = loaded
    for flag, (section, key, kind) in _FLAGS.items():
        value = opts.get(flag)
        if value is None:
            continue
        part = doc.setdefault(section, {})
        if not isinstance(part, dict):
            raise SpecError(f"--resources: {section} is not an object", field=f"resources.{section}")
        part[key] = _size(str(value), flag) if kind == "size" else value
    for flag in ("l3_cache_schema", "mem_bw_schema"):
        if opts.get(flag) is not None:
            option = "--" + flag.replace("_", "-")
            raise SpecError(f"{option}: Intel RDT is not applied by nsprim-runtime", field=option)
    return doc


def _size(text: str, flag: str) -> int:
    from ...cgroup import parse_size
    from ...errors import ConfigError, SpecError

    if text.strip() == "-1":
        return -1
    try:
        return int(parse_size(text))
    except (ConfigError, ValueError):
        option = "--" + flag.replace("_", "-")
        raise SpecError(f'{option}: "{text}" is not a size (bytes, or with k, m, g)', field=option) from None


def cmd_update(g: Globals, opts: dict[str, object], args: list[str]) -> int:
    """``update [--resources FILE] [flags] ID``: apply new limits to the container's cgroup."""
    from ..spec import LinuxResources
    from .cgroups import Limits, apply_devices

    limits = Limits(LinuxResources.from_dict(resources_document(opts), "resources"), "resources")
    with Store(g.root).lock(args[0]) as locked:
        record = locked.record
        status = live_status(record)
        if status not in (CREATED, RUNNING, PAUSED):
            raise state_error("update", record, status, "limits change while it is created, running or paused")
        group = container_group(record)
        if group is None:
            from ...errors import UnsupportedError

            raise UnsupportedError(f"update container `{record.id}`: it has no cgroup", feature="cgroup")
        group.update(limits.resources)
        apply_devices(group, limits.devices)
    return 0
