"""Mounts in the calling process' mount namespace, and the mount table.

Helpers over :func:`mount(2) <nsprim._sys.mount>` with typed flags and
errors that name both ends ("mount `tmpfs` on `/x/dev`: No such file or
directory"), plus a parser for ``/proc/<pid>/mountinfo``::

    >>> from nsprim.mount import mountinfo
    >>> root = next(m for m in mountinfo() if m.mount_point == "/")
    >>> root.fstype  # doctest: +SKIP
    'ext4'

Every helper here acts on the caller's own mount namespace.  Enter a private
one first (``nsprim.unshare("mnt")`` makes ``/`` recursively private), or run
the mounting code in a child with ``nsprim.spawn(..., new={"mnt"})``: a mount
made in the host's namespace is seen by the whole machine.
"""

from __future__ import annotations

import contextlib
import enum
import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from . import _sys
from ._sys import C
from .errors import ConfigError

__all__ = [
    "MountFlags",
    "Propagation",
    "MountInfo",
    "mountinfo",
    "parse_mountinfo",
    "find_mount",
    "is_mount_point",
    "mount",
    "bind",
    "tmpfs",
    "remount",
    "umount",
    "set_propagation",
    "private_root",
    "mounted",
]

StrPath = str | os.PathLike[str]


class MountFlags(enum.IntFlag):
    """The ``MS_*`` flags of mount(2), with the kernel's values."""

    NONE = 0
    RDONLY = C.MS_RDONLY
    NOSUID = C.MS_NOSUID
    NODEV = C.MS_NODEV
    NOEXEC = C.MS_NOEXEC
    SYNCHRONOUS = C.MS_SYNCHRONOUS
    REMOUNT = C.MS_REMOUNT
    DIRSYNC = C.MS_DIRSYNC
    NOSYMFOLLOW = C.MS_NOSYMFOLLOW
    NOATIME = C.MS_NOATIME
    NODIRATIME = C.MS_NODIRATIME
    BIND = C.MS_BIND
    MOVE = C.MS_MOVE
    REC = C.MS_REC
    SILENT = C.MS_SILENT
    UNBINDABLE = C.MS_UNBINDABLE
    PRIVATE = C.MS_PRIVATE
    SLAVE = C.MS_SLAVE
    SHARED = C.MS_SHARED
    RELATIME = C.MS_RELATIME
    STRICTATIME = C.MS_STRICTATIME
    LAZYTIME = C.MS_LAZYTIME


class Propagation(enum.Enum):
    """Mount propagation types (``mount --make-*``)."""

    PRIVATE = "private"
    SLAVE = "slave"
    SHARED = "shared"
    UNBINDABLE = "unbindable"

    @property
    def flag(self) -> MountFlags:
        """The ``MS_*`` flag that sets this propagation."""
        return {
            Propagation.PRIVATE: MountFlags.PRIVATE,
            Propagation.SLAVE: MountFlags.SLAVE,
            Propagation.SHARED: MountFlags.SHARED,
            Propagation.UNBINDABLE: MountFlags.UNBINDABLE,
        }[self]


# ---- the mount table ------------------------------------------------------------------


def _unescape(field: str) -> str:
    r"""Undo the kernel's octal escapes (``\040`` for a space, ``\134`` for a backslash)."""
    if "\\" not in field:
        return field
    out = []
    i = 0
    while i < len(field):
        code = field[i + 1 : i + 4]
        if field[i] == "\\" and len(code) == 3 and all(c in "01234567" for c in code):
            out.append(chr(int(code, 8)))
            i += 4
        else:
            out.append(field[i])
            i += 1
    return "".join(out)


@dataclass(frozen=True)
class MountInfo:
    """One line of ``/proc/<pid>/mountinfo`` (see proc(5)), unescaped.

    ``options`` are the per-mount options (``rw,nosuid``), ``super_options``
    the file system's (``lowerdir=...``); ``optional`` the propagation tags
    (``shared:1``, ``master:2``).
    """

    mount_id: int
    parent_id: int
    major: int
    minor: int
    root: str
    mount_point: str
    options: tuple[str, ...]
    optional: tuple[str, ...]
    fstype: str
    source: str
    super_options: tuple[str, ...]

    @property
    def readonly(self) -> bool:
        """Whether the mount itself is read-only."""
        return "ro" in self.options

    @property
    def propagation(self) -> Propagation:
        """The mount's propagation type, from the optional fields."""
        tags = {t.split(":", 1)[0] for t in self.optional}
        if "shared" in tags:
            return Propagation.SHARED
        if "master" in tags:
            return Propagation.SLAVE
        if "unbindable" in tags:
            return Propagation.UNBINDABLE
        return Propagation.PRIVATE

    def super_option(self, name: str) -> str | None:
        """The value of one file system option (``"lowerdir"``), ``""`` for a flag, else ``None``."""
        for opt in self.super_options:
            key, sep, value = opt.partition("=")
            if key == name:
                return value if sep else ""
        return None


def parse_mountinfo(text: str) -> list[MountInfo]:
    """Parse the text of a mountinfo file."""
    out = []
    for line in text.splitlines():
        if not line.strip():
            continue
        fields = line.split(" ")
        try:
            sep = fields.index("-", 6)
            major, minor = fields[2].split(":")
            out.append(
                MountInfo(
                    mount_id=int(fields[0]),
                    parent_id=int(fields[1]),
                    major=int(major),
                    minor=int(minor),
                    root=_unescape(fields[3]),
                    mount_point=_unescape(fields[4]),
                    options=tuple(fields[5].split(",")),
                    optional=tuple(fields[6:sep]),
                    fstype=_unescape(fields[sep + 1]),
                    source=_unescape(fields[sep + 2]),
                    super_options=tuple(_unescape(o) for o in fields[sep + 3].split(","))
                    if len(fields) > sep + 3
                    else (),
                )
            )
        except (ValueError, IndexError) as exc:
            raise ConfigError(f"malformed mountinfo line: {line!r}", what="mountinfo") from exc
    return out


def mountinfo(pid: int | str = "self") -> list[MountInfo]:
    """The mount table of process *pid* (default: the caller), in kernel order."""
    with open(f"/proc/{pid}/mountinfo", encoding="utf-8", errors="surrogateescape") as f:
        return parse_mountinfo(f.read())


def find_mount(path: StrPath, pid: int | str = "self") -> MountInfo | None:
    """The topmost mount whose mount point is exactly *path*, if any."""
    target = os.path.normpath(os.fspath(path))
    found = None
    for m in mountinfo(pid):
        if m.mount_point == target:
            found = m
    return found


def is_mount_point(path: StrPath) -> bool:
    """Whether *path* is the mount point of some mount in the caller's namespace."""
    return find_mount(os.path.realpath(os.fspath(path))) is not None


# ---- mounting -----------------------------------------------------------------------------


def mount(
    source: StrPath | None,
    target: StrPath,
    fstype: str | None = None,
    flags: MountFlags | int = MountFlags.NONE,
    data: str | None = None,
) -> None:
    """mount(2): *source* (a device, a directory or a name) on *target*."""
    _sys.mount(source, target, fstype, int(flags), data)


def bind(
    source: StrPath,
    target: StrPath,
    *,
    recursive: bool = True,
    readonly: bool = False,
    flags: MountFlags | int = MountFlags.NONE,
) -> None:
    """Bind *source* on *target*; *readonly* and *flags* (``NOSUID|NODEV|NOEXEC``) by a remount.

    A bind mount ignores per-mount flags, so they are applied in a second
    call that keeps the flags the kernel locks (those of the source mount).
    If that second call fails the bind is undone.
    """
    bind_flags = MountFlags.BIND | (MountFlags.REC if recursive else 0)
    _sys.mount(source, target, None, int(bind_flags))
    extra = MountFlags(int(flags)) | (MountFlags.RDONLY if readonly else 0)
    if extra:
        try:
            remount(target, extra, bind=True)
        except BaseException:
            with contextlib.suppress(OSError):
                _sys.umount(target, C.MNT_DETACH)
            raise


def tmpfs(
    target: StrPath,
    *,
    size: int | str | None = None,
    mode: int | None = 0o755,
    flags: MountFlags | int = MountFlags.NOSUID | MountFlags.NODEV,
    options: str | None = None,
) -> None:
    """Mount a fresh tmpfs on *target*, of *size* bytes (or ``"64m"``) and root *mode*."""
    opts = []
    if size is not None:
        opts.append(f"size={size}")
    if mode is not None:
        opts.append(f"mode={mode:o}")
    if options:
        opts.append(options)
    _sys.mount("tmpfs", target, "tmpfs", int(flags), ",".join(opts) or None)


def _statvfs_flags(path: StrPath) -> MountFlags:
    st = os.statvfs(path)
    out = MountFlags.NONE
    for st_flag, ms_flag in (
        (os.ST_RDONLY, MountFlags.RDONLY),
        (os.ST_NOSUID, MountFlags.NOSUID),
        (os.ST_NODEV, MountFlags.NODEV),
        (os.ST_NOEXEC, MountFlags.NOEXEC),
        (os.ST_NOATIME, MountFlags.NOATIME),
        (os.ST_NODIRATIME, MountFlags.NODIRATIME),
        (os.ST_RELATIME, MountFlags.RELATIME),
    ):
        if st.f_flag & st_flag:
            out |= ms_flag
    return out


def remount(target: StrPath, flags: MountFlags | int, *, bind: bool = True, data: str | None = None) -> None:
    """Change the per-mount flags of the mount at *target* (adding to those it has).

    With *bind* (the default) only the mount's flags change, not the file
    system's; the flags the mount already has are kept, as the kernel
    requires for mounts locked by a less privileged namespace.
    """
    keep = _statvfs_flags(target)
    all_flags = MountFlags.REMOUNT | MountFlags(int(flags)) | keep | (MountFlags.BIND if bind else 0)
    _sys.mount(None, target, None, int(all_flags), data)


def umount(target: StrPath, *, detach: bool = False, force: bool = False) -> None:
    """umount2(2); *detach* is ``MNT_DETACH`` (lazy: gone from the tree at once)."""
    flags = (C.MNT_DETACH if detach else 0) | (C.MNT_FORCE if force else 0)
    _sys.umount(target, flags)


def set_propagation(
    target: StrPath, propagation: Propagation | str = Propagation.PRIVATE, *, recursive: bool = True
) -> None:
    """Set the propagation type of the mount at *target* (and below it, if *recursive*)."""
    prop = Propagation(propagation)
    _sys.mount(None, target, None, int(prop.flag | (MountFlags.REC if recursive else 0)))


def private_root(propagation: Propagation | str = Propagation.PRIVATE) -> None:
    """Make ``/`` recursively private (or slave): nothing mounted later propagates out.

    Call it right after entering a new mount namespace (``nsprim.unshare``
    already does); on most hosts ``/`` is shared, and a mount namespace copied
    from a shared one would otherwise send its mounts back to the host.
    """
    prop = Propagation(propagation)
    if prop not in (Propagation.PRIVATE, Propagation.SLAVE):
        raise ConfigError(f"the root must be made private or slave, not {prop.value}", what="propagation")
    set_propagation("/", prop, recursive=True)


@contextlib.contextmanager
def mounted(
    source: StrPath | None,
    target: StrPath,
    fstype: str | None = None,
    flags: MountFlags | int = MountFlags.NONE,
    data: str | None = None,
) -> Iterator[Path]:
    """Mount for the duration of a ``with`` block; unmount (lazily) after it."""
    mount(source, target, fstype, flags, data)
    try:
        yield Path(target)
    finally:
        umount(target, detach=True)
