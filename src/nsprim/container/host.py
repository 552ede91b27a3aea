"""What containers keep on the host: their state directory and their cgroups.

:func:`create_cgroup` makes a container's group (registered with the cleanup
watcher before its first directory exists), :func:`create_delegated_cgroup`
one in a subtree delegated to a caller without root, :func:`remove_group`
deletes an ended container's group.
"""

from __future__ import annotations

import contextlib
import errno
import os
from pathlib import Path

from .._sys import watcher
from ..cgroup import ROOT, CGroup, CGroupBusyError, Resources
from ..cgroup.delegation import delegated_parent
from ..cgroup.host import HostInfo, cached_host_info
from ..errors import SyscallError
from .config import ContainerConfig
from .rootfs import host_dirs

__all__ = [
    "state_dir",
    "ready_state_dir",
    "group_controllers",
    "create_cgroup",
    "create_delegated_cgroup",
    "remove_group",
]


def state_dir() -> Path:
    """Where containers keep their scratch directories: ``$NSPRIM_STATE_DIR``, else
    ``/run/nsprim`` for root and ``$XDG_RUNTIME_DIR/nsprim`` (or a per-user
    directory in the temporary directory) for everyone else."""
    if "NSPRIM_STATE_DIR" in os.environ:
        return Path(os.environ["NSPRIM_STATE_DIR"])
    if os.geteuid() == 0:
        return Path("/run/nsprim")
    runtime = os.environ.get("XDG_RUNTIME_DIR")
    if runtime and os.access(runtime, os.W_OK):
        return Path(runtime) / "nsprim"
    import tempfile  # only here: it imports random and shutil

    return Path(tempfile.gettempdir()) / f"nsprim-{os.geteuid()}"


def ready_state_dir(cfg: ContainerConfig) -> Path:
    """The state directory, with what *cfg*'s children expect in it on the host."""
    state = state_dir()
    for d in host_dirs(cfg, state):
        try:
            d.mkdir(parents=True, exist_ok=True, mode=0o700)
        except OSError as exc:
            raise SyscallError(exc.errno, "mkdir", d, hint="set NSPRIM_STATE_DIR to a writable place") from None
    return state


def remove_group(cg: CGroup, *, forget: bool = True) -> None:
    """Delete an ended container's group (a group already gone is fine) and, with *forget*,
    its registration with the cleanup watcher.

    Its pid namespace is gone with its init, so the group is empty and a leaf
    nearly always: one ``rmdir`` per hierarchy.  Should one refuse (processes
    that left the pid namespace's init behind, or child groups), the members
    are killed and :meth:`CGroup.delete` removes the rest, children first.
    """
    try:
        for d in cg.directories.values():
            with contextlib.suppress(FileNotFoundError):
                os.rmdir(d)
    except OSError as exc:
        if exc.errno not in (errno.EBUSY, errno.ENOTEMPTY):
            raise SyscallError(exc.errno or errno.EIO, "rmdir", exc.filename) from exc
        try:
            cg.delete(recursive=True)
        except CGroupBusyError:
            cg.kill()  # waits until the group is empty
            cg.delete(recursive=True)
    if forget:
        watcher.forget_cgroups(cg.directories.values())


def group_controllers(resources: Resources, info: HostInfo) -> set[str]:
    """The controllers of a container's group: what its limits need, and memory and pids (its
    statistics and the OOM count) where the host has them."""
    wanted = {c.value for c in resources.controllers()}
    for c in ("memory", "pids"):
        if any(k.value == c for k in info.controllers):
            wanted.add(c)
    if info.version_of("freezer") == 1 and info.unified is None:
        # Freeze and kill need it on a pure v1 host; a hybrid host's v2 tree
        # has cgroup.freeze and cgroup.kill for the same processes.
        wanted.add("freezer")
    return wanted


def create_cgroup(name: str, cfg: ContainerConfig, *, watch: bool) -> CGroup:
    """The container's group; with *watch*, registered with the cleanup watcher before
    its first directory is made (a kill at any point leaves nothing behind)."""
    info = cached_host_info()
    resources = cfg.resources or Resources()
    wanted = group_controllers(resources, info)
    # NSPRIM_CGROUP_PARENT lets a test suite or a service keep every group under its own.
    parent_path = cfg.cgroup_parent or os.environ.get("NSPRIM_CGROUP_PARENT") or ROOT
    # The parent is opened (a stat per hierarchy) once per host-info snapshot, not per container;
    # if it went away meanwhile, the mkdir says so, and the next try opens it again.
    hit = _parents.get(parent_path)
    if hit is not None and hit[0] is info:
        parent = hit[1]
    else:
        _parents.clear()
        parent = CGroup.open(parent_path, info=info)  # carries the host info into create()
        _parents[parent_path] = (info, parent)
    registered: list[tuple[Path, ...]] = []

    def register(dirs: tuple[Path, ...]) -> None:
        watcher.watch_cgroups(dirs)
        registered.append(dirs)

    def create() -> CGroup:
        return CGroup.create(
            name, parent=parent, resources=resources, controllers=wanted, before_mkdir=register if watch else None
        )

    try:
        try:
            return create()
        except SyscallError as exc:
            if exc.errno != errno.ENOENT:
                raise
            _parents.clear()
            parent = CGroup.open(parent_path, info=info)
            return create()
    except BaseException:
        for dirs in registered:  # create() removed what it made
            watcher.forget_cgroups(dirs)
        raise


_parents: dict[str, tuple[HostInfo, CGroup]] = {}


def create_delegated_cgroup(name: str, cfg: ContainerConfig, *, watch: bool) -> CGroup:
    """The group of a container started without root, in a cgroup v2 subtree delegated to
    the caller (:func:`~nsprim.cgroup.delegation.delegated_parent` raises if there is none);
    with *watch*, registered with the cleanup watcher before it is made, as :func:`create_cgroup`."""
    info = cached_host_info()
    resources = cfg.resources or Resources()
    needed = resources.controllers()
    parent_path = cfg.cgroup_parent or os.environ.get("NSPRIM_CGROUP_PARENT")
    hierarchy, directory = delegated_parent(info, needed, parent_path)
    parent = CGroup([(hierarchy, directory)], info)  # the v2 tree only: v1 groups are root's
    registered: list[tuple[Path, ...]] = []

    def register(dirs: tuple[Path, ...]) -> None:
        watcher.watch_cgroups(dirs)
        registered.append(dirs)

    try:
        return CGroup.create(
            name, parent=parent, resources=resources, controllers=needed, before_mkdir=register if watch else None
        )
    except BaseException:
        for dirs in registered:  # create() removed what it made
            watcher.forget_cgroups(dirs)
        raise
