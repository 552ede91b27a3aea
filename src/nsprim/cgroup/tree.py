"""The directories of a group's tree: creating them with their controllers, and removing them.

What :class:`~nsprim.cgroup.CGroup` does to the file system when it creates,
updates or deletes a group, as functions of paths and the host's layout.
"""

from __future__ import annotations

import errno
import time
from pathlib import Path
from typing import Final

from nsprim.cgroup import files
from nsprim.cgroup.files import Write
from nsprim.cgroup.host import Controller, Hierarchy, HostInfo, read_v2_controllers
from nsprim.cgroup.resources import Resources
from nsprim.cgroup.v1 import MemoryNow, plan_v1
from nsprim.cgroup.v2 import plan_v2
from nsprim.errors import CGroupBusyError, SyscallError, UnsupportedError

__all__ = ["init_cpuset", "enable_v2_controllers", "resource_writes", "rmdir_retrying"]

_RMDIR_RETRY: Final = 2.0


def init_cpuset(parent: Path, d: Path, *, fresh: bool) -> None:
    """A new v1 cpuset group starts empty; give it its parent's CPUs and nodes so tasks can join."""
    for name in ("cpuset.cpus", "cpuset.mems"):
        if not fresh and files.read_text(d / name).strip():
            continue
        value = files.read_text(parent / name).strip()
        if not value:
            value = (files.try_read_text(parent / name.replace("cpuset.", "cpuset.effective_")) or "").strip()
        files.write_text(d / name, value)


def enable_v2_controllers(h: Hierarchy, parent: Path, controllers: set[Controller], needed: set[Controller]) -> None:
    """Enable *controllers* in ``cgroup.subtree_control`` of every ancestor from the root down to *parent*."""
    wanted = {c for c in controllers if c.v2_name is not None}
    if not wanted:  # e.g. a hybrid host's v2 tree, which serves none of them
        return
    chain = [parent]
    while chain[-1] != h.mount_point and h.mount_point in chain[-1].parents:
        chain.append(chain[-1].parent)
    for d in reversed(chain):
        enabled = read_v2_controllers(d, "cgroup.subtree_control")
        if wanted <= enabled:
            continue  # the common case: one read per ancestor
        available = read_v2_controllers(d)
        for c in sorted(controllers, key=lambda c: c.value):
            if c in enabled or c not in available or c.v2_name is None:
                continue
            try:
                files.write_text(
                    d / "cgroup.subtree_control",
                    f"+{c.v2_name}",
                    hint="the no-internal-processes rule: this cgroup has processes of its own; "
                    "create the group under a parent without processes"
                    if d != h.mount_point
                    else None,
                )
            except SyscallError:
                if c in needed:
                    raise


def resource_writes(
    resources: Resources, info: HostInfo, spanned: set[Hierarchy], memory_now: MemoryNow | None = None
) -> list[Write]:
    """The writes that set *resources* in the hierarchies *spanned*; refuses a controller none of them serves."""
    plan: list[Write] = []
    serving = info.controllers
    for c in sorted(resources.controllers(), key=lambda c: c.value):
        h = serving.get(c)
        if h is None or h not in spanned:
            raise UnsupportedError(
                f"controller `{c.value}` is not available to this group (host mode: {info.mode.value})",
                feature=c.value,
            )
        if h.version == 1:
            plan += plan_v1(resources, c, info.mode.value, memory_now)
        else:
            plan += plan_v2(resources, c, info.mode.value)
    return plan


def rmdir_retrying(d: Path) -> None:
    """rmdir, retrying EBUSY briefly (a group's last task can take a moment to be released)."""
    deadline = time.monotonic() + _RMDIR_RETRY
    while True:
        try:
            files.rmdir(d)
            return
        except SyscallError as exc:
            if exc.errno == errno.ENOENT:
                return
            if exc.errno != errno.EBUSY:
                raise
            if time.monotonic() >= deadline:
                raise CGroupBusyError(errno.EBUSY, "rmdir", d, hint=exc.hint) from exc
            time.sleep(0.01)
