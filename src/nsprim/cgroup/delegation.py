"""Where a caller without root may make cgroups: a delegated cgroup v2 subtree.

cgroup v2 lets an unprivileged user manage a subtree whose directory and
``cgroup.procs``, ``cgroup.subtree_control`` files it owns (what systemd's
``Delegate=yes`` sets up).  A group made there is the caller's to limit, join
and remove.  Everything else (cgroup v1, whose groups are root's, or a tree
nobody delegated) cannot enforce a limit for this caller:
:func:`delegated_parent` then raises
:class:`~nsprim.errors.CgroupUnavailableError` saying why and how to fix it,
so that a limit is never dropped for want of a group.
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from pathlib import Path

from nsprim.cgroup.host import Controller, Hierarchy, HostInfo, process_cgroups, read_v2_controllers
from nsprim.errors import CgroupUnavailableError

__all__ = ["delegated_parent", "DELEGATE_FIX"]

DELEGATE_FIX = (
    "run as root, or delegate a cgroup v2 subtree to this user "
    "(systemd-run --user --scope -p Delegate=yes -- nsprim run ...)"
)


def _names(controllers: Iterable[Controller]) -> str:
    return ", ".join(c.value for c in controllers)


def _writable(d: Path) -> bool:
    # The files a delegation hands over: the directory (to make groups), its controllers and members.
    return all(os.access(p, os.W_OK) for p in (d, d / "cgroup.subtree_control", d / "cgroup.procs"))


def delegated_parent(
    info: HostInfo, controllers: Iterable[Controller], parent: str | None = None
) -> tuple[Hierarchy, Path]:
    """The cgroup v2 directory under which this (unprivileged) caller can make a group
    that enforces *controllers*: *parent* (a path in the v2 tree) if given, else the
    parent of the caller's own cgroup, which a delegation (``Delegate=yes``) hands over
    with it.  The caller must be inside it, as the kernel lets a process be moved only
    by one that may write the common ancestor's ``cgroup.procs``.

    Raises :class:`~nsprim.errors.CgroupUnavailableError` naming the reason and the fix.
    """
    needed = sorted(set(controllers), key=lambda c: c.value)
    settings = tuple(c.value for c in needed)

    def refuse(reason: str, fix: str = DELEGATE_FIX) -> CgroupUnavailableError:
        return CgroupUnavailableError(settings, reason, fix)

    absent = [c for c in needed if c not in info.controllers]
    if absent:
        raise refuse(f"this host has no {_names(absent)} controller (mode: {info.mode.value})", "none on this host")
    on_v1 = [c for c in needed if info.controllers[c].version == 1]
    if on_v1:
        is_are = "controllers are" if len(on_v1) > 1 else "controller is"
        raise refuse(
            f"the {_names(on_v1)} {is_are} on cgroup v1 here (mode: {info.mode.value}), whose groups only root makes"
        )
    v2 = info.unified
    # Where the caller is now (read again: a process may have moved since *info* was taken).
    own = dict(process_cgroups(None, (v2,))).get(v2) if v2 is not None else None
    if v2 is None or own is None:
        raise refuse("this process has no place in a cgroup v2 tree")
    own_dir = v2.directory(own)
    if parent is not None:
        candidate = v2.mount_point.joinpath(*Path("/", parent).parts[1:])
    elif own_dir != v2.mount_point:
        candidate = own_dir.parent
    else:
        raise refuse("this process is in the root cgroup, which only root may divide")
    if not candidate.is_dir():
        raise refuse(f"cgroup `{candidate}` does not exist")
    if not _writable(candidate):
        raise refuse(f"cgroup `{candidate}` is not delegated to uid {os.geteuid()} (its files are not writable)")
    if candidate == own_dir:
        raise refuse(
            f"this process is in `{own_dir}` itself, and a group with processes cannot hand controllers "
            "to children (the no-internal-processes rule)",
            "move this process into a child group first, or name its parent",
        )
    if candidate not in own_dir.parents:
        raise refuse(
            f"this process (in `{own_dir}`) is outside `{candidate}`, and may be moved only within a delegated subtree"
        )
    offered = read_v2_controllers(candidate)
    lacking = [c for c in needed if c not in offered]
    if lacking:
        raise refuse(
            f"the delegated `{candidate}` does not offer the {_names(lacking)} controller "
            f"(its cgroup.controllers: {_names(sorted(offered, key=lambda c: c.value)) or 'none'})",
            f"delegate it with the controller (Delegate=yes, or Delegate={' '.join(settings)})",
        )
    return v2, candidate
