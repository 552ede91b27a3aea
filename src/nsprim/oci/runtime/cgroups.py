"""The container's cgroup: where ``linux.cgroupsPath`` puts it, and how its init is born in it.

``cgroupsPath`` absolute is from the hierarchies' roots; relative, from the
runtime's own group (as runc reads it); empty, ``/nsprim-runtime/<id>``.
Missing parent groups are made and left in place, as runc leaves them.
The init enters a cgroup v2 group at its birth (``CLONE_INTO_CGROUP``)
and joins v1 groups by writing ``0`` to their ``tasks`` first thing.

``linux.resources`` is applied by the group's limits; what is not yet
applied here is refused by name, never dropped.
"""

from __future__ import annotations

import os
from collections.abc import Callable

from ...cgroup import ROOT, CGroup
from ...errors import SpecError
from ...plan import Step, WriteFile
from ..spec import LinuxResources, Spec

__all__ = ["cgroup_path", "create_group", "placement", "check_resources"]


def cgroup_path(spec: Spec, container_id: str) -> str:
    """The group's path from the hierarchies' roots."""
    raw = spec.linux.cgroups_path if spec.linux is not None else ""
    if ":" in raw:
        raise SpecError(
            f'linux.cgroupsPath: "{raw}" is a systemd slice path (nsprim-runtime manages cgroupfs)',
            field="linux.cgroupsPath",
        )
    if not raw:
        return f"/nsprim-runtime/{container_id}"
    if raw.startswith("/"):
        return os.path.normpath(raw)
    own = CGroup.from_pid().path
    return os.path.normpath(f"{own.rstrip('/')}/{raw}")


def check_resources(resources: LinuxResources | None) -> None:
    """Refuse the limits this runtime does not apply yet (naming the first)."""
    if resources is None:
        return
    data = resources.to_dict()
    for key in sorted(data):
        if data[key] not in (None, [], {}, ""):
            field = f"linux.resources.{key}"
            raise SpecError(f"{field}: not applied by nsprim-runtime yet", field=field)


def create_group(
    spec: Spec, container_id: str, before_mkdir: Callable[[tuple[os.PathLike[str], ...]], object]
) -> CGroup:
    """Make the container's group (its parents as needed)."""
    path = cgroup_path(spec, container_id)
    parts = [p for p in path.split("/") if p]
    if not parts or any(p in (".", "..") for p in parts):
        raise SpecError(f'linux.cgroupsPath: "{path}" is not a group below the root', field="linux.cgroupsPath")
    parent: CGroup | str = ROOT
    for name in parts[:-1]:
        parent = CGroup.create(name, parent=parent, exist_ok=True)
    return CGroup.create(parts[-1], parent=parent, before_mkdir=before_mkdir)


def placement(group: CGroup) -> tuple[list[Step], int]:
    """The steps that join the v1 groups, and a descriptor of the v2 group to be born in (or -1)."""
    from ... import _sys

    dirs = group.directories
    v2 = [d for h, d in dirs.items() if h.version == 2]
    into = len(v2) == 1 and _sys.have_clone3()
    steps: list[Step] = [
        WriteFile(d / ("tasks" if h.version == 1 else "cgroup.procs"), b"0")
        for h, d in sorted(dirs.items(), key=lambda hd: hd[0].version)
        if h.version == 1 or not into
    ]
    fd = os.open(v2[0], os.O_PATH | os.O_DIRECTORY | os.O_CLOEXEC) if into else -1
    return steps, fd
