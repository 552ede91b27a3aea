"""Mounts in the calling process' mount namespace.

Helpers over :func:`mount(2) <nsprim._sys.mount>` with typed flags and
errors that name both ends ("mount `tmpfs` on `/x/dev`: No such file or
directory").  The mount table is read by :mod:`nsprim.fs.mountinfo`.

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
from pathlib import Path

from .. import _sys
from .._paths import StrPath
from .._sys import C
from ..errors import ConfigError

__all__ = [
    "MountFlags",
    "Propagation",
    "mount",
    "bind",
    "tmpfs",
    "remount",
    "umount",
    "set_propagation",
    "private_root",
    "mounted",
]


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
