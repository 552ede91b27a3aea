"""The container's root file system as plan steps, built on :class:`nsprim.fs.rootfs.RootFS`.

The container adds to :class:`~nsprim.fs.rootfs.RootFS` what only it knows:
where its root comes from (an image's layers or the host's ``/`` under a
throwaway upper layer on a private tmpfs, or a directory), whether it is in
a user namespace, and the cgroup file systems it should see at
``/sys/fs/cgroup``.  Everything placed inside the root is resolved inside it
by :mod:`nsprim.fs.steps`, so a symlink in an image cannot aim a mount
at the host.  A read-only directory is never written: the mount points it
lacks are made in a throwaway overlay over it, or refused where an overlay
would hide mounts below it.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Literal

from .._dataclass import dataclass, replace
from .._sys import C
from ..errors import ConfigError
from ..fs.mountinfo import mountinfo
from ..fs.overlay import OverlayMount, OverlayOptions
from ..fs.rootfs import DEFAULT_READONLY_PATHS, Bind, RootFS, Tmpfs
from ..fs.steps import EnterRoot
from ..plan import Mkdir, Mount, Step
from .config import ContainerConfig, RootKind

if TYPE_CHECKING:
    from .procview import ProcView

__all__ = ["root_steps", "host_dirs", "OwnGroupBind"]

_RO_KERNEL = C.MS_NOSUID | C.MS_NODEV | C.MS_NOEXEC | C.MS_RDONLY


@dataclass(frozen=True)
class OwnGroupBind(Mount):
    """A bind of a cgroup v1 hierarchy's mount point (*source*) into the root: the container's own
    group there, which the plan's prefix bound over that mount point first, in the container's mount
    namespace (:func:`~nsprim.container.build.build_plan`: the body is the same for every container,
    the group is not).

    A bind, as runc makes it, rather than a new cgroup v1 mount: before each such mount the kernel
    drains every group of the v2 tree (``cgroup_lock_and_drain_offline``), waiting behind the
    removal of groups that ended, which grows with the number of containers alive."""


def host_dirs(cfg: ContainerConfig, state: Path) -> list[Path]:
    """Directories that must exist in the state directory before the clone.

    (RootFS checks that the root exists; in the child a tmpfs over the state
    directory hides it and the same path is made again on it.)
    """
    if cfg.root is None:
        return []
    return [state / "root"]


def _state_steps(state: Path, *, idmapped: bool = False) -> list[Step]:
    # (With *idmapped*, the parent mounted that tmpfs: userns.attach_idmapped.)
    # The child covers the (shared, long-lived) state directory with a tmpfs
    # of its own and makes its mount points there: nothing per container
    # exists on the host, so there is nothing to remove afterwards (removing a
    # former mount point costs an RCU grace period).  The upper and work dirs
    # live on that tmpfs too: a file system apart from every lower layer, and
    # gone with the container.
    return [
        *([] if idmapped else [Mount("tmpfs", state, "tmpfs", C.MS_NOSUID | C.MS_NODEV, "mode=700")]),
        Mkdir(state / "root", 0o755),
        Mkdir(state / "scratch", 0o700),
    ]


def _overlay_steps(
    state: Path, lower: list[Path], upper: Path | None, *, userns: bool, copies: Sequence[Path] = ()
) -> list[Step]:
    """An overlay of *lower* at the root, with *upper* or a throwaway upper on the private tmpfs;
    of their idmapped *copies* on the tmpfs where given (the same layers, checked on the host)."""
    if upper is not None:
        work = upper.parent / f".{upper.name}.work"
        steps: list[Step] = [Mkdir(work, 0o700)]
    else:
        upper, work = state / "scratch" / "upper", state / "scratch" / "work"
        steps = [Mkdir(upper, 0o755), Mkdir(work, 0o700)]
    # (userxattr: trusted.* xattrs are out of reach in a user namespace)
    overlay = OverlayMount(state / "root", lower, upper, work, options=OverlayOptions(userxattr=userns))
    overlay.check_lower()  # the rest is made by the steps before it
    if copies:
        overlay = OverlayMount(state / "root", list(copies), upper, work, options=OverlayOptions(userxattr=userns))
    return [*steps, overlay.mount_step()]


def _source(
    cfg: ContainerConfig, state: Path, *, userns: bool, idmapped: Sequence[tuple[Path, Path]] = ()
) -> tuple[Path, list[Step], Path | None]:
    """(the root directory, steps that make it, the read-only host directory it shows, if it is one).

    *idmapped*: the parent mounted the tmpfs over the state directory, with idmapped copies
    of the directory root or the layers on these targets, at the sync step of the id maps
    (:func:`~nsprim.container.userns.attach_idmapped`): the root is made from the copies.
    """
    spec = cfg.root
    assert spec is not None
    copies = [target for _, target in idmapped]
    root, steps = state / "root", _state_steps(state, idmapped=bool(idmapped))
    if spec.kind is RootKind.DIRECTORY:
        # Bound at the state directory's root rather than in place: a directory
        # that is itself a root (``/``) cannot be pivoted into where it stands.
        assert spec.path is not None
        bind = Mount(copies[0] if copies else spec.path, root, None, C.MS_BIND | C.MS_REC)
        return root, [*steps, bind], None if spec.writable else spec.path
    if spec.kind is RootKind.HOST and userns:
        # In a user namespace the host's / has locked submounts, which overlay
        # refuses as a lower layer ("failed to clone lowerpath"): bind it read-only.
        return root, [*steps, Mount("/", root, None, C.MS_BIND | C.MS_REC)], Path("/")
    lower = [Path("/")] if spec.kind is RootKind.HOST else list(spec.layers)
    upper = spec.upper if spec.kind is RootKind.OVERLAY else None
    return root, steps + _overlay_steps(state, lower, upper, userns=userns, copies=copies), None


def _mounts_below(path: Path) -> list[str]:
    """The mount points strictly below *path*: what an overlay of it would not show."""
    real = os.path.realpath(path)
    prefix = real.rstrip("/") + "/"
    return [m.mount_point for m in mountinfo() if m.mount_point != real and m.mount_point.startswith(prefix)]


def _read_only_copy(
    state: Path, source: Path, missing: list[tuple[str, str]], *, userns: bool, idmapped: Sequence[tuple[Path, Path]]
) -> list[Step]:
    """Steps that make the root an overlay of the read-only *source* under a throwaway upper,
    in which the mount points it lacks are made (the root is read-only again at the end):
    the source itself is never written.  Refused where the overlay would show less than a
    bind: below a source with mounts of its own (a user namespace could not stack it either)."""
    below = _mounts_below(source)
    if below:
        target, what = missing[0]
        raise ConfigError(
            f"{what} `{target}`: No such file or directory in the read-only root `{source}`, and nothing is "
            f"created in a read-only root (an overlay over it would hide `{below[0]}` and the other mounts "
            "below it): make it there, or give the root a writable layer (run without --ro; host_root() or image())",
            what="mounts",
        )
    copies = [target for _, target in idmapped]
    return _state_steps(state, idmapped=bool(idmapped)) + _overlay_steps(
        state, [source], None, userns=userns, copies=copies
    )


def _cgroup_fs_steps(root: Path, *, userns: bool, hierarchies: tuple[Path, ...]) -> list[Step]:
    """Read-only cgroup file systems at ``/sys/fs/cgroup``, as Docker gives them.

    Only the hierarchies the container was placed in (its *hierarchies*, by
    mount point): mounted after it joined its cgroup namespace, they show its
    own group as their root, so tools (and :func:`nsprim.cgroup.limits`)
    inside see its limits and nothing of the host's other groups.  ``/sys``
    is a fresh sysfs here, with no image symlinks to follow.
    """
    from ..cgroup.host import cached_host_info

    base = root / "sys/fs/cgroup"
    every = [h for h in cached_host_info().hierarchies if h.version == 2 or h.controllers]
    if len(every) == 1 and every[0].version == 2:  # a pure cgroup v2 host
        return [Mount("cgroup2", base, "cgroup2", _RO_KERNEL, optional=True)]
    found = [h for h in every if h.mount_point in hierarchies]
    if userns or not found:
        return []  # cgroup v1 cannot be mounted from a user namespace
    flags = C.MS_NOSUID | C.MS_NODEV | C.MS_NOEXEC
    steps: list[Step] = [Mount("tmpfs", base, "tmpfs", flags, "mode=755", optional=True)]
    for h in found:
        name = h.mount_point.name
        steps.append(Mkdir(base / name))
        if h.version == 2:
            steps.append(Mount("cgroup2", base / name, "cgroup2", _RO_KERNEL))
        else:
            steps.append(OwnGroupBind(h.mount_point, base / name, None, C.MS_BIND))
            steps.append(Mount(None, base / name, None, C.MS_REMOUNT | C.MS_BIND | _RO_KERNEL))
    steps.append(Mount(None, base, None, C.MS_REMOUNT | C.MS_BIND | _RO_KERNEL))
    return steps


def _plain_mount_steps(m: Bind | Tmpfs) -> list[Step]:
    """A mount into the host's own view (a container without a root of its own)."""
    target = "/" + m.target.lstrip("/")
    if not os.path.lexists(target):
        what = "tmpfs target" if isinstance(m, Tmpfs) else "bind target"
        raise ConfigError(
            f"{what} `{target}`: No such file or directory (a container without a root of its own sees the "
            "host's files, and nothing is created in them)",
            what="mounts",
        )
    if isinstance(m, Tmpfs):
        return [Mount("tmpfs", target, "tmpfs", int(m.flags), m.data)]
    steps: list[Step] = [Mount(m.source, target, None, C.MS_BIND | (C.MS_REC if m.recursive else 0))]
    if m.remount_flags:
        steps.append(Mount(None, target, None, C.MS_REMOUNT | C.MS_BIND | int(m.remount_flags)))
    return steps


def root_steps(
    cfg: ContainerConfig,
    state: Path | None,
    *,
    userns: bool,
    proc_view: ProcView | None = None,
    hierarchies: tuple[Path, ...] = (),
    part: Literal["all", "prepare", "finish"] = "all",
    idmapped: Sequence[tuple[Path, Path]] = (),
) -> list[Step]:
    """The steps that build and enter the container's root (none without one).

    *proc_view*: its files are bound over ``/proc/meminfo``... after ``/proc``
    and ``/sys`` are mounted, before entering the root.  *part* ``prepare`` is
    what can be made ahead of time in a mount namespace of its own (the root,
    ``/sys``, ``/dev``: see :meth:`RootFS.prepare_steps
    <nsprim.fs.rootfs.RootFS.prepare_steps>`), ``finish`` the rest, run by the
    container's process once it joined that namespace.  *idmapped*: see :func:`_source`.
    """
    if cfg.root is None or state is None:
        if part == "prepare":
            return []
        # No root of its own: the host's view, private to the container's mount namespace.
        plain = [s for m in cfg.mounts for s in _plain_mount_steps(m)]
        return plain + (proc_view.steps(None) if proc_view is not None else [])
    root, make_root, source = _source(cfg, state, userns=userns, idmapped=idmapped)
    binds = tuple(m for m in cfg.mounts if isinstance(m, Bind))
    tmpfs = tuple(m for m in cfg.mounts if isinstance(m, Tmpfs))
    rootfs = RootFS(
        root,
        readonly=source is not None,  # (then nothing is created in it: see RootFS.mount_points)
        source=source,
        nodev=True,  # an image's device nodes must not open host devices
        proc=cfg.mount_proc,
        devices="bind" if userns else "mknod",
        binds=binds,
        tmpfs=tmpfs,
        readonly_paths=(*DEFAULT_READONLY_PATHS, *cfg.readonly_paths),
    )
    if source is not None and (missing := rootfs.missing_mount_points()):
        make_root = _read_only_copy(state, source, missing, userns=userns, idmapped=idmapped)
        rootfs = replace(rootfs, source=None, mount_points="create")
    prepare: list[Step] = []
    if part != "finish":
        prepare = rootfs.prepare_steps()
        # The overlay (or bind) must exist before RootFS binds the root onto itself.
        prepare[1:1] = make_root
        if part == "prepare":
            return prepare
    finish = rootfs.finish_steps()
    enter = next(i for i, s in enumerate(finish) if isinstance(s, EnterRoot))
    extra = _cgroup_fs_steps(root, userns=userns, hierarchies=hierarchies)
    if proc_view is not None:
        extra += proc_view.steps(root)
    finish[enter:enter] = extra
    return prepare + finish
