"""The container's cgroup: where ``linux.cgroupsPath`` puts it, and how its init is born in it.

``cgroupsPath`` absolute is from the hierarchies' roots; relative, from the
runtime's own group (as runc reads it); empty, ``/nsprim-runtime/<id>``.
Missing parent groups are made and left in place, as runc leaves them, but
for that default parent, which the runtime owns: the last ``delete`` of a
container under it removes it again.
The init enters a cgroup v2 group at its birth (``CLONE_INTO_CGROUP``)
and joins v1 groups by writing ``0`` to their ``tasks`` first thing.

``linux.resources`` becomes the group's limits (:mod:`nsprim.oci.resources`);
what is not applied here is refused by name, never dropped.  The devices
list is written to the v1 devices controller's ``devices.deny`` and
``devices.allow`` in order, once the container's ``/dev`` is made; a host whose devices controller is cgroup v2
(an eBPF program) has its list refused.
"""

from __future__ import annotations

import contextlib
import errno
import os

from ...errors import SpecError, SyscallError
from .store import DEFAULT_PARENT

TYPE_CHECKING = False  # `delete` needs remove_default_parent only: the spec model and the plan are imported late
if TYPE_CHECKING:
    from collections.abc import Callable
    from pathlib import Path

    from ...cgroup import CGroup, Resources
    from ...cgroup.host import Hierarchy
    from ...plan import Step
    from ..resources import DeviceRule
    from ..spec import LinuxResources, Spec

__all__ = [
    "DEFAULT_PARENT",
    "cgroup_path",
    "create_group",
    "remove_default_parent",
    "placement",
    "join_steps",
    "check_resources",
    "Limits",
    "apply_devices",
]


# The devices every container has (runtime-spec "Default Devices", /dev/pts and /dev/ptmx with them),
# allowed after the spec's own rules as runc and crun allow them.
_DEFAULT_ALLOWED = ((1, 3), (1, 5), (1, 7), (1, 8), (1, 9), (5, 0), (5, 2), (136, None))


class Limits:
    """A spec's ``linux.resources``, checked: the cgroup limits and the device rules."""

    def __init__(self, resources: LinuxResources | None, path: str = "linux.resources") -> None:
        from ..resources import DeviceRule, device_rules, to_resources

        self.resources: Resources = to_resources(resources, path)
        rules = device_rules(resources, path)
        default = tuple(DeviceRule(True, "c", major, minor, "rwm") for major, minor in _DEFAULT_ALLOWED)
        self.devices: tuple[DeviceRule, ...] = (*rules, *default) if rules else ()
        if self.devices:
            from ...cgroup import Controller
            from ...cgroup.host import cached_host_info

            where = cached_host_info().controllers.get(Controller.DEVICES)
            if where is None or where.version != 1:
                raise SpecError(
                    f"{path}.devices: this host's devices controller is cgroup v2 (an eBPF program), "
                    "which nsprim-runtime does not load",
                    field=f"{path}.devices",
                )


def cgroup_path(spec: Spec, container_id: str) -> str:
    """The group's path from the hierarchies' roots."""
    raw = spec.linux.cgroups_path if spec.linux is not None else ""
    if ":" in raw:
        raise SpecError(
            f'linux.cgroupsPath: "{raw}" is a systemd slice path (nsprim-runtime manages cgroupfs)',
            field="linux.cgroupsPath",
        )
    if not raw:
        return f"/{DEFAULT_PARENT}/{container_id}"
    if raw.startswith("/"):
        return os.path.normpath(raw)
    from ...cgroup import CGroup

    own = CGroup.from_pid().path
    return os.path.normpath(f"{own.rstrip('/')}/{raw}")


def check_resources(resources: LinuxResources | None) -> Limits:
    """The limits of *resources*, or the error that names the first this runtime cannot apply."""
    return Limits(resources)


def apply_devices(group: CGroup, rules: tuple[DeviceRule, ...]) -> None:
    """Write the device rules, in order, to the group's v1 devices controller."""
    if not rules:
        return
    from ...cgroup import Controller

    directory = group.directory(Controller.DEVICES)
    for rule in rules:
        target = directory / ("devices.allow" if rule.allow else "devices.deny")
        try:
            with open(target, "w") as f:
                f.write(rule.line())
        except OSError as exc:
            raise SyscallError(exc.errno or 0, f"write `{rule.line()}` to", target) from None


def create_group(
    spec: Spec,
    container_id: str,
    before_mkdir: Callable[[tuple[os.PathLike[str], ...]], object],
    limits: Limits | None = None,
    forget: Callable[[tuple[os.PathLike[str], ...]], object] | None = None,
) -> CGroup:
    """Make the container's group (its parents as needed) with the cgroup limits of *limits*.

    *before_mkdir* registers the group's directories with a cleanup before the first is made; if
    the group cannot be made, *forget* is given them back (a directory that was there already,
    another container's, must not be cleaned up when this process ends).  Its device rules are
    written by :func:`apply_devices` once the init has made the container's ``/dev`` (as runc writes
    them), before the payload runs."""
    path = cgroup_path(spec, container_id)
    parts = [p for p in path.split("/") if p]
    if not parts or any(p in (".", "..") for p in parts):
        raise SpecError(f'linux.cgroupsPath: "{path}" is not a group below the root', field="linux.cgroupsPath")

    registered: list[tuple[os.PathLike[str], ...]] = []

    def register(dirs: tuple[os.PathLike[str], ...]) -> None:
        before_mkdir(dirs)
        registered.append(dirs)

    try:
        return _create_group(path, parts, register, limits)
    except BaseException:
        if forget is not None:
            for dirs in registered:
                try:
                    forget(dirs)
                except Exception:
                    pass
        raise


def _create_group(
    path: str, parts: list[str], register: Callable[[tuple[os.PathLike[str], ...]], None], limits: Limits | None
) -> CGroup:
    from ...cgroup import ROOT, CGroup

    for attempt in (1, 2):
        parent: CGroup | str = ROOT
        for name in parts[:-1]:
            parent = CGroup.create(name, parent=parent, exist_ok=True)
        try:
            return CGroup.create(
                parts[-1], parent=parent, resources=limits.resources if limits else None, before_mkdir=register
            )
        except SyscallError as exc:
            # A concurrent delete removed the default parent between the two mkdirs: make it again.
            if exc.errno != errno.ENOENT or attempt == 2:
                remove_default_parent(path)
                raise
    raise AssertionError("unreachable")


def remove_default_parent(path: str | None) -> None:
    """Remove the runtime's default parent group once its last container's group is gone."""
    if path is None or not path.startswith(f"/{DEFAULT_PARENT}/"):
        return
    from ...cgroup.host import cached_host_info

    for h in cached_host_info().hierarchies:
        with contextlib.suppress(OSError):  # still in use (EBUSY), or not in this hierarchy
            os.rmdir(h.mount_point / DEFAULT_PARENT)


def placement(group: CGroup) -> tuple[list[Step], int]:
    """The steps that join the v1 groups, and a descriptor of the v2 group to be born in (or -1)."""
    steps, into = join_steps(list(group.directories.items()))
    fd = os.open(into, os.O_PATH | os.O_DIRECTORY | os.O_CLOEXEC) if into is not None else -1
    return steps, fd


def join_steps(dirs: list[tuple[Hierarchy, Path]]) -> tuple[list[Step], Path | None]:
    """How an init enters the group of *dirs* (hierarchy and directory): the steps that join
    its v1 groups (and its v2 group without clone3), and the v2 directory it is born in (or None)."""
    from ... import _sys
    from ...plan import WriteFile

    v2 = [d for h, d in dirs if h.version == 2]
    into = len(v2) == 1 and _sys.have_clone3()
    steps: list[Step] = [
        WriteFile(d / ("tasks" if h.version == 1 else "cgroup.procs"), b"0")
        for h, d in sorted(dirs, key=lambda hd: hd[0].version)
        if h.version == 1 or not into
    ]
    return steps, v2[0] if into else None
