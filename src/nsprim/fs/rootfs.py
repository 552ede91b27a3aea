"""The root file system of a container, as plan steps run in the child.

A :class:`RootFS` describes what a container's ``/`` is made of; its
:meth:`~RootFS.steps` are the plan steps that build it in the child after
``clone`` (in C, with no Python), to pass to :func:`nsprim.spawn`::

    from nsprim.fs.rootfs import Bind, RootFS

    rootfs = RootFS("/x/rootfs", binds=(Bind("/srv/data", "/data", readonly=True),))
    nsprim.run(["/bin/sh"], new={"mnt", "pid", "uts", "ipc"}, steps=rootfs.steps())

In order, the steps: make ``/`` recursively private (or slave); mount the
overlay (or bind the directory onto itself: read-only at once for a
read-only root, in which no mount point is ever created) as the new root; mount ``proc``
(of the new pid namespace), read-only ``sysfs``, and a minimal ``/dev``
(``null zero full random urandom tty``, a new ``devpts`` instance with
``/dev/ptmx``, ``/dev/shm``, and the ``fd``/``stdin``/``stdout``/``stderr``
links); the tmpfs and bind mounts asked for; mask paths (``/proc/kcore``...)
and make others read-only (``/proc/sys``...); then ``pivot_root`` into the
new root with the old one detached (or a ``chroot`` fallback).

Every path inside the new root is resolved inside it (see
:mod:`nsprim.fs.steps`): a symlink in the image cannot point a mount at
the host.  The kernel file systems (``/proc``, ``/sys``, ``/dev``) and the
masked and read-only paths refuse symlinks altogether.
"""

from __future__ import annotations

import errno
import os
import re
import stat
from pathlib import Path, PurePosixPath
from typing import Literal

from .. import _sys
from .._dataclass import dataclass, field
from .._sys import C
from ..errors import ConfigError, SyscallError
from ..plan import Mount, Step
from .mount import MountFlags, Propagation
from .overlay import OverlayMount
from .steps import DEFAULT_DEVICES, DEV_STDIO_LINKS, CreateInRoot, CreateMode, EnterRoot, MountInRoot

__all__ = [
    "Bind",
    "Tmpfs",
    "RootFS",
    "DEFAULT_MASKED_PATHS",
    "DEFAULT_READONLY_PATHS",
    "DEFAULT_DEVICES",
    "DEV_STDIO_LINKS",
    "parse_tmpfs_size",
    "tmpfs_size_max",
]


#: Hidden by default (the OCI runtime spec's usual list).
DEFAULT_MASKED_PATHS: tuple[str, ...] = (
    "/proc/acpi",
    "/proc/asound",
    "/proc/kcore",
    "/proc/keys",
    "/proc/latency_stats",
    "/proc/timer_list",
    "/proc/timer_stats",
    "/proc/sched_debug",
    "/proc/scsi",
    "/sys/firmware",
    "/sys/devices/virtual/powercap",
)
#: Read-only by default.
DEFAULT_READONLY_PATHS: tuple[str, ...] = (
    "/proc/bus",
    "/proc/fs",
    "/proc/irq",
    "/proc/sys",
    "/proc/sysrq-trigger",
)
_DEV_LINKS = (*DEV_STDIO_LINKS, ("ptmx", "pts/ptmx"))
_KERNEL_FS_FLAGS = MountFlags.NOSUID | MountFlags.NODEV | MountFlags.NOEXEC
_TMPFS_SIZE_RE = re.compile(r"([0-9]+)([kmgtpe]?)", re.IGNORECASE | re.ASCII)


def tmpfs_size_max() -> int:
    """The largest tmpfs size in bytes: the kernel rounds a size up to whole pages in 64 bits,
    and anything larger wraps around to 0, which is a tmpfs without any limit."""
    return 2**64 - os.sysconf("SC_PAGE_SIZE")


def parse_tmpfs_size(value: int | str, what: str = "tmpfs size") -> int:
    """A tmpfs ``size=`` as a number of bytes, 1 to :func:`tmpfs_size_max`.

    An int is bytes; a string is ASCII digits with an optional suffix the
    kernel takes (``k``, ``m``, ``g``, also ``t``, ``p``, ``e``; binary).  No
    fractions and no ``Ki``/``MB`` forms (the kernel refuses them), no
    leading zero (the kernel would read octal), and never 0 or more than the
    maximum: the kernel would make either a tmpfs without any limit.  Raises
    :class:`~nsprim.errors.ConfigError` naming *what*.
    """
    if isinstance(value, bool) or not isinstance(value, (int, str)):
        raise ConfigError(f"{what} `{value!r}`: not a size (an int of bytes or a string like '64m')", what=what)
    if isinstance(value, int):
        size = value
    else:
        m = _TMPFS_SIZE_RE.fullmatch(value)
        if m is None:
            raise ConfigError(
                f"{what} `{value}`: not a size the kernel takes (whole bytes, or with a k, m or g suffix: "
                "'4096', '64m', '1g')",
                what=what,
            )
        digits, unit = m.groups()
        if len(digits) > 1 and digits.startswith("0"):
            raise ConfigError(f"{what} `{value}`: a leading zero (the kernel would read it as octal)", what=what)
        size = int(digits) << (10 * " kmgtpe".index(unit.lower() or " "))
    if size < 1:
        raise ConfigError(f"{what} `{value}`: must be at least 1 byte (0 would be a tmpfs without a limit)", what=what)
    if size > tmpfs_size_max():
        raise ConfigError(
            f"{what} `{value}`: more than the kernel's largest, {tmpfs_size_max()} bytes "
            "(beyond it the size wraps around to no limit at all)",
            what=what,
        )
    return size


def _inside(path: str, what: str) -> str:
    """Check a path meant for inside the root: absolute, normalised, no ``..``."""
    if not path.startswith("/"):
        raise ConfigError(f"{what} `{path}` must be an absolute path inside the root", what=what)
    parts = PurePosixPath(path).parts
    if ".." in parts:
        raise ConfigError(f"{what} `{path}` must not contain `..`", what=what)
    return str(PurePosixPath(*parts))


def _missing(rootfd: int, path: str, nofollow: bool) -> bool:
    """Whether *path* is missing in the root open as *rootfd*, resolved as the child will."""
    rel = path.lstrip("/") or "."
    links = C.RESOLVE_NO_SYMLINKS | C.RESOLVE_BENEATH if nofollow else C.RESOLVE_IN_ROOT
    try:
        os.close(_sys.openat2(rootfd, rel, os.O_PATH | os.O_CLOEXEC, resolve=C.RESOLVE_NO_MAGICLINKS | links))
    except SyscallError as exc:
        if exc.errno != errno.ENOSYS:
            return exc.errno == errno.ENOENT
        # Before openat2 (5.6) the child refuses symlinks on the way: only a plain lookup is left.
        return not os.path.lexists(os.path.join(f"/proc/self/fd/{rootfd}", rel))
    return False


@dataclass(frozen=True)
class Bind:
    """A bind mount of host path *source* on *target* inside the root.

    *readonly*, *nosuid*, *nodev*, *noexec* are applied with a second,
    remounting call (a bind mount ignores them otherwise).  A missing target
    is created, as a directory or a file like the source.  *optional*: skip
    if the source does not exist.
    """

    source: Path
    target: str
    readonly: bool = False
    recursive: bool = True
    nosuid: bool = False
    nodev: bool = False
    noexec: bool = False
    optional: bool = False

    def __post_init__(self) -> None:
        object.__setattr__(self, "source", Path(self.source))
        object.__setattr__(self, "target", _inside(self.target, "bind target"))
        if not self.source.is_absolute():
            raise ConfigError(f"bind source `{self.source}` must be an absolute host path", what="bind source")

    @property
    def remount_flags(self) -> MountFlags:
        """The per-mount flags of the second call."""
        out = MountFlags.NONE
        for on, flag in (
            (self.readonly, MountFlags.RDONLY),
            (self.nosuid, MountFlags.NOSUID),
            (self.nodev, MountFlags.NODEV),
            (self.noexec, MountFlags.NOEXEC),
        ):
            if on:
                out |= flag
        return out


@dataclass(frozen=True)
class Tmpfs:
    """A fresh tmpfs on *target* inside the root, of *size* (bytes or ``"64m"``) and *mode*."""

    target: str
    size: int | str | None = None
    mode: int = 0o755
    flags: MountFlags = MountFlags.NOSUID | MountFlags.NODEV
    options: str | None = None

    def __post_init__(self) -> None:
        object.__setattr__(self, "target", _inside(self.target, "tmpfs target"))
        if self.size is not None:
            parse_tmpfs_size(self.size, f"tmpfs `{self.target}` size")

    @property
    def data(self) -> str:
        """The tmpfs option string (the size in bytes, as the kernel cannot misread them)."""
        opts = [f"mode={self.mode:o}"]
        if self.size is not None:
            opts.append(f"size={parse_tmpfs_size(self.size)}")
        if self.options:
            opts.append(self.options)
        return ",".join(opts)


@dataclass(frozen=True)
class RootFS:
    """How to assemble a container's root file system; :meth:`steps` does it.

    *root* is a host directory that becomes ``/``: the target of *overlay*
    (mounted in the child), or a plain directory (bound onto itself so that
    it is a mount point).  *nodev* makes device nodes on the root file
    system itself (say, shipped in an image) unopenable; ``/dev`` is a mount
    of its own and keeps working.  See the module documentation for the
    order of the steps and the meaning of the other fields.

    *mount_points*: what to do with a mount point (``/proc``, a tmpfs or
    bind target) the root lacks.  ``"create"`` makes it in the root;
    ``"refuse"`` never writes to the root: it is bound read-only (with
    everything mounted below it) before anything is mounted in it, and a
    missing mount point is a :class:`~nsprim.errors.ConfigError` naming it.
    ``"auto"`` refuses for a *readonly* root without an overlay (a read-only
    source stays untouched) and creates otherwise (in an overlay's upper
    layer, or a writable root).  *source* is where the root's files are on
    the host when earlier steps bind them at *root* (default: *root*): what
    ``"refuse"`` checks.
    """

    root: Path
    overlay: OverlayMount | None = None
    propagation: Propagation = Propagation.PRIVATE
    readonly: bool = False
    nodev: bool = False
    proc: bool = True
    sysfs: bool = True
    dev: bool = True
    devices: Literal["mknod", "bind"] = "mknod"
    dev_size: int | str = "64k"
    shm_size: int | str | None = "64m"
    tmpfs: tuple[Tmpfs, ...] = ()
    binds: tuple[Bind, ...] = ()
    masked_paths: tuple[str, ...] = DEFAULT_MASKED_PATHS
    readonly_paths: tuple[str, ...] = DEFAULT_READONLY_PATHS
    enter: Literal["pivot_root", "auto", "chroot"] = "auto"
    extra_devices: tuple[tuple[str, int, int], ...] = field(default=())
    mount_points: Literal["auto", "create", "refuse"] = "auto"
    source: Path | None = None

    def __post_init__(self) -> None:
        root = Path(os.path.abspath(os.fspath(self.root)))
        object.__setattr__(self, "root", root)
        object.__setattr__(self, "propagation", Propagation(self.propagation))
        if self.propagation not in (Propagation.PRIVATE, Propagation.SLAVE):
            raise ConfigError("the root's propagation must be private or slave", what="propagation")
        if self.overlay is not None and self.overlay.target != root:
            raise ConfigError(f"the overlay's target `{self.overlay.target}` is not the root `{root}`", what="overlay")
        for p in self.masked_paths:
            _inside(p, "masked path")
        for p in self.readonly_paths:
            _inside(p, "read-only path")
        if self.devices not in ("mknod", "bind"):
            raise ConfigError("devices must be 'mknod' or 'bind'", what="devices")
        parse_tmpfs_size(self.dev_size, "dev_size")
        if self.shm_size is not None:
            parse_tmpfs_size(self.shm_size, "shm_size")
        if self.mount_points not in ("auto", "create", "refuse"):
            raise ConfigError("mount_points must be 'auto', 'create' or 'refuse'", what="mount_points")
        if self.mount_points == "refuse" and self.overlay is not None:
            raise ConfigError("an overlay root makes its mount points in its upper layer", what="mount_points")
        if self.source is not None:
            object.__setattr__(self, "source", Path(os.path.abspath(os.fspath(self.source))))

    @property
    def refuses_mount_points(self) -> bool:
        """Whether nothing is created in the root (see *mount_points*)."""
        if self.mount_points == "auto":
            return self.readonly and self.overlay is None
        return self.mount_points == "refuse"

    def mount_points_in_root(self, *, all_of_them: bool = False) -> list[tuple[str, str]]:
        """The mount points that lie in the root itself, in the order they are mounted, as
        ``(path, what)`` ("tmpfs target"): not those on a file system mounted before them
        (``/dev/shm`` on ``/dev``).  Optional binds whose source is missing (skipped) are left out
        unless *all_of_them*."""
        mounts: list[tuple[str, str]] = []
        if self.sysfs:
            mounts.append(("/sys", "sysfs mount point"))
        if self.dev:
            mounts.append(("/dev", "/dev mount point"))
        if self.proc:
            mounts.append(("/proc", "proc mount point"))
        mounts += [(t.target, "tmpfs target") for t in self.tmpfs]
        mounts += [(b.target, "bind target") for b in self.binds]
        skipped = {b.target for b in self.binds if b.optional and not b.source.exists()}
        out: list[tuple[str, str]] = []
        for i, (target, what) in enumerate(mounts):
            if not any(target == t or target.startswith(t.rstrip("/") + "/") for t, _ in mounts[:i]):
                out.append((target, what))
        return out if all_of_them else [(t, what) for t, what in out if t not in skipped or what != "bind target"]

    def missing_mount_points(self) -> list[tuple[str, str]]:
        """Those of :meth:`mount_points_in_root` that *source* (or *root*) lacks, looked up as the
        child will (symlinks followed inside the root, never out of it)."""
        base = self.source if self.source is not None else self.root
        try:
            rootfd = os.open(base, os.O_PATH | os.O_DIRECTORY | os.O_CLOEXEC)
        except OSError as exc:
            raise ConfigError(f"root `{base}`: {exc.strerror}", what="root") from None
        try:
            return [
                (t, what)
                for t, what in self.mount_points_in_root()
                if _missing(rootfd, t, what != "tmpfs target" and what != "bind target")
            ]
        finally:
            os.close(rootfd)

    def _check_mount_points(self) -> None:
        if not self.refuses_mount_points:
            return
        missing = self.missing_mount_points()
        if missing:
            target, what = missing[0]
            base = self.source if self.source is not None else self.root
            raise ConfigError(
                f"{what} `{target}`: No such file or directory in the read-only root `{base}` (nothing is "
                "created in a read-only root: make it there, or mount an overlay or a writable root)",
                what="mount_points",
            )

    def _create(self, target: str, create: CreateMode) -> CreateMode:
        """*create*, unless the target lies in a root that refuses mount points."""
        if self.refuses_mount_points and any(target == t for t, _ in self.mount_points_in_root(all_of_them=True)):
            return "none"
        return create

    @classmethod
    def from_overlay(cls, overlay: OverlayMount, **kwargs: object) -> RootFS:
        """A root file system on *overlay*'s target, mounting the overlay in the child."""
        return cls(overlay.target, overlay=overlay, **kwargs)  # type: ignore[arg-type]

    # ---- the steps ------------------------------------------------------------------------

    def _in(self, target: str, **kw: object) -> MountInRoot:
        return MountInRoot(self.root, target=target, **kw)  # type: ignore[arg-type]

    def _root_steps(self) -> list[Step]:
        steps: list[Step] = [Mount(None, "/", None, int(MountFlags.REC | self.propagation.flag))]
        ov = self.overlay
        if ov is None:
            if not self.root.is_dir():
                raise ConfigError(f"root `{self.root}`: not a directory", what="root")
            if self.refuses_mount_points:
                # Read-only (all of its tree) before anything is mounted in it: not even a
                # mount point the checks missed can be made in it.
                bind = MountInRoot(
                    "/", self.root, str(self.root), flags=C.MS_BIND | C.MS_REC, remount_flags=C.MS_RDONLY
                )
                steps.append(bind)
            else:
                steps.append(Mount(self.root, self.root, None, C.MS_BIND | C.MS_REC))
            return steps
        ov.check()
        steps.append(ov.mount_step())
        return steps

    def _dev_steps(self) -> list[Step]:
        steps: list[Step] = [
            self._in(
                "/dev",
                source="tmpfs",
                fstype="tmpfs",
                flags=int(MountFlags.NOSUID | MountFlags.NOEXEC),
                data=f"mode=755,size={parse_tmpfs_size(self.dev_size)}",
                create=self._create("/dev", "dir"),
                follow_symlinks=False,
            )
        ]
        for name, major, minor in (*DEFAULT_DEVICES, *self.extra_devices):
            target = f"/dev/{name}"
            if self.devices == "mknod":
                steps.append(
                    CreateInRoot(
                        self.root, target, stat.S_IFCHR | 0o666, os.makedev(major, minor), follow_symlinks=False
                    )
                )
            else:  # in a user namespace mknod is refused: bind the host's nodes
                steps.append(
                    self._in(target, source=f"/dev/{name}", flags=C.MS_BIND, create="file", follow_symlinks=False)
                )
        steps.append(
            self._in(
                "/dev/pts",
                source="devpts",
                fstype="devpts",
                flags=int(MountFlags.NOSUID | MountFlags.NOEXEC),
                data="newinstance,ptmxmode=0666,mode=0620",
                create="dir",
                follow_symlinks=False,
            )
        )
        for name, target in _DEV_LINKS:
            steps.append(
                CreateInRoot(self.root, f"/dev/{name}", stat.S_IFLNK | 0o777, link_target=target, follow_symlinks=False)
            )
        shm = Tmpfs("/dev/shm", size=self.shm_size, mode=0o1777, flags=_KERNEL_FS_FLAGS)
        steps.append(
            self._in(shm.target, source="tmpfs", fstype="tmpfs", flags=int(shm.flags), data=shm.data, create="dir")
        )
        return steps

    def steps(self) -> list[Step]:
        """The plan steps that assemble this root file system and enter it.

        Checks the host side first (the root and the overlay's directories
        exist), raising :class:`~nsprim.errors.ConfigError` before anything
        runs.  Needs a new mount namespace (``new={"mnt", ...}``), and a new
        pid namespace for ``/proc`` to show only the container's processes.
        """
        return self.prepare_steps() + self.finish_steps()

    def prepare_steps(self) -> list[Step]:
        """The first part of :meth:`steps`: the root, ``/sys`` and ``/dev``.

        None of it depends on the pid, cgroup or user namespace of the process
        that runs it (``/sys`` shows the network namespace it runs in), so it
        can be done ahead of time in a mount namespace made for it, which the
        container's process then joins to run :meth:`finish_steps`.
        """
        self._check_mount_points()
        steps = self._root_steps()
        if self.sysfs:
            steps.append(
                self._in(
                    "/sys",
                    source="sysfs",
                    fstype="sysfs",
                    flags=int(_KERNEL_FS_FLAGS | MountFlags.RDONLY),
                    create=self._create("/sys", "dir"),
                    follow_symlinks=False,
                )
            )
        if self.dev:
            steps += self._dev_steps()
        return steps

    def finish_steps(self) -> list[Step]:
        """The rest of :meth:`steps`: ``/proc``, the mounts asked for, masks, read-only paths, entering."""
        self._check_mount_points()
        steps: list[Step] = []
        if self.proc:  # shows the pid namespace of the process that mounts it
            steps.append(
                self._in(
                    "/proc",
                    source="proc",
                    fstype="proc",
                    flags=int(_KERNEL_FS_FLAGS),
                    create=self._create("/proc", "dir"),
                    follow_symlinks=False,
                )
            )
        for t in self.tmpfs:
            create = self._create(t.target, "dir")
            steps.append(
                self._in(t.target, source="tmpfs", fstype="tmpfs", flags=int(t.flags), data=t.data, create=create)
            )
        for b in self.binds:
            if not b.optional and not b.source.exists():
                raise ConfigError(f"bind source `{b.source}`: No such file or directory", what="bind source")
            steps.append(
                self._in(
                    b.target,
                    source=b.source,
                    flags=C.MS_BIND | (C.MS_REC if b.recursive else 0),
                    remount_flags=int(b.remount_flags),
                    create=self._create(b.target, "auto"),
                    optional=b.optional,
                )
            )
        for p in self.masked_paths:
            steps.append(self._in(p, source="/dev/null", mask=True, optional=True, follow_symlinks=False))
        for p in self.readonly_paths:
            steps.append(
                self._in(
                    p,
                    source=p,
                    source_in_root=True,
                    flags=C.MS_BIND | C.MS_REC,
                    remount_flags=C.MS_RDONLY,
                    optional=True,
                    follow_symlinks=False,
                )
            )
        steps.append(EnterRoot(self.root, self.enter))
        if self.readonly or self.nodev:
            # One remount sets the root mount's flags as a whole: both at once.
            flags = (C.MS_RDONLY if self.readonly else 0) | (C.MS_NODEV if self.nodev else 0)
            steps.append(Mount(None, "/", None, C.MS_REMOUNT | C.MS_BIND | flags))
        return steps
