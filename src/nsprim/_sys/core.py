"""The wrappers of :mod:`nsprim._sys`: one function per system call, and the kernel's constants."""

from __future__ import annotations

import os

from .._paths import PathArg, to_bytes
from ..errors import SyscallError
from ._lib import ffi, lib

TYPE_CHECKING = False  # typing is not imported at run time (see _lib)
if TYPE_CHECKING:
    from typing import Final

__all__ = [
    "C",
    "check",
    "unshare",
    "setns",
    "mount",
    "umount",
    "pivot_root",
    "sethostname",
    "setdomainname",
    "pidfd_open",
    "pidfd_send_signal",
    "ns_ioctl",
    "gettid",
    "fsopen",
    "fsconfig_set_string",
    "fsconfig_set_flag",
    "fsconfig_set_fd",
    "fsconfig_create",
    "fsmount",
    "move_mount",
    "open_tree",
    "mount_setattr",
    "openat2",
    "close_range",
    "inotify_init1",
    "inotify_add_watch",
    "have_clone3",
    "have_new_mount_api",
    "netns_new",
    "resident_pages",
]


class C:
    """Kernel constants, read from the system headers at build time."""

    CLONE_NEWNS: Final[int] = lib.CLONE_NEWNS
    CLONE_NEWUTS: Final[int] = lib.CLONE_NEWUTS
    CLONE_NEWIPC: Final[int] = lib.CLONE_NEWIPC
    CLONE_NEWPID: Final[int] = lib.CLONE_NEWPID
    CLONE_NEWNET: Final[int] = lib.CLONE_NEWNET
    CLONE_NEWUSER: Final[int] = lib.CLONE_NEWUSER
    CLONE_NEWCGROUP: Final[int] = lib.CLONE_NEWCGROUP
    CLONE_NEWTIME: Final[int] = lib.CLONE_NEWTIME
    CLONE_FILES: Final[int] = lib.CLONE_FILES
    CLONE_FS: Final[int] = lib.CLONE_FS
    SIGCHLD: Final[int] = lib.SIGCHLD

    MS_RDONLY: Final[int] = lib.MS_RDONLY
    MS_NOSUID: Final[int] = lib.MS_NOSUID
    MS_NODEV: Final[int] = lib.MS_NODEV
    MS_NOEXEC: Final[int] = lib.MS_NOEXEC
    MS_SYNCHRONOUS: Final[int] = lib.MS_SYNCHRONOUS
    MS_REMOUNT: Final[int] = lib.MS_REMOUNT
    MS_DIRSYNC: Final[int] = lib.MS_DIRSYNC
    MS_NOSYMFOLLOW: Final[int] = lib.MS_NOSYMFOLLOW
    MS_NOATIME: Final[int] = lib.MS_NOATIME
    MS_NODIRATIME: Final[int] = lib.MS_NODIRATIME
    MS_BIND: Final[int] = lib.MS_BIND
    MS_MOVE: Final[int] = lib.MS_MOVE
    MS_REC: Final[int] = lib.MS_REC
    MS_SILENT: Final[int] = lib.MS_SILENT
    MS_UNBINDABLE: Final[int] = lib.MS_UNBINDABLE
    MS_PRIVATE: Final[int] = lib.MS_PRIVATE
    MS_SLAVE: Final[int] = lib.MS_SLAVE
    MS_SHARED: Final[int] = lib.MS_SHARED
    MS_RELATIME: Final[int] = lib.MS_RELATIME
    MS_STRICTATIME: Final[int] = lib.MS_STRICTATIME
    MS_LAZYTIME: Final[int] = lib.MS_LAZYTIME

    MNT_FORCE: Final[int] = lib.MNT_FORCE
    MNT_DETACH: Final[int] = lib.MNT_DETACH
    MNT_EXPIRE: Final[int] = lib.MNT_EXPIRE
    UMOUNT_NOFOLLOW: Final[int] = lib.UMOUNT_NOFOLLOW

    FSOPEN_CLOEXEC: Final[int] = lib.FSOPEN_CLOEXEC
    FSMOUNT_CLOEXEC: Final[int] = lib.FSMOUNT_CLOEXEC
    FSCONFIG_SET_FLAG: Final[int] = lib.FSCONFIG_SET_FLAG
    FSCONFIG_SET_STRING: Final[int] = lib.FSCONFIG_SET_STRING
    FSCONFIG_SET_PATH: Final[int] = lib.FSCONFIG_SET_PATH
    FSCONFIG_SET_FD: Final[int] = lib.FSCONFIG_SET_FD
    FSCONFIG_CMD_CREATE: Final[int] = lib.FSCONFIG_CMD_CREATE
    MOVE_MOUNT_F_EMPTY_PATH: Final[int] = lib.MOVE_MOUNT_F_EMPTY_PATH
    MOVE_MOUNT_T_EMPTY_PATH: Final[int] = lib.MOVE_MOUNT_T_EMPTY_PATH
    OPEN_TREE_CLONE: Final[int] = lib.OPEN_TREE_CLONE
    OPEN_TREE_CLOEXEC: Final[int] = lib.OPEN_TREE_CLOEXEC
    AT_RECURSIVE: Final[int] = lib.AT_RECURSIVE
    AT_EMPTY_PATH: Final[int] = lib.AT_EMPTY_PATH
    AT_FDCWD: Final[int] = lib.AT_FDCWD
    MOUNT_ATTR_RDONLY: Final[int] = lib.MOUNT_ATTR_RDONLY
    MOUNT_ATTR_NOSUID: Final[int] = lib.MOUNT_ATTR_NOSUID
    MOUNT_ATTR_NODEV: Final[int] = lib.MOUNT_ATTR_NODEV
    MOUNT_ATTR_NOEXEC: Final[int] = lib.MOUNT_ATTR_NOEXEC
    MOUNT_ATTR_NOSYMFOLLOW: Final[int] = lib.MOUNT_ATTR_NOSYMFOLLOW
    MOUNT_ATTR_IDMAP: Final[int] = lib.MOUNT_ATTR_IDMAP

    RESOLVE_NO_XDEV: Final[int] = lib.RESOLVE_NO_XDEV
    RESOLVE_NO_MAGICLINKS: Final[int] = lib.RESOLVE_NO_MAGICLINKS
    RESOLVE_NO_SYMLINKS: Final[int] = lib.RESOLVE_NO_SYMLINKS
    RESOLVE_BENEATH: Final[int] = lib.RESOLVE_BENEATH
    RESOLVE_IN_ROOT: Final[int] = lib.RESOLVE_IN_ROOT

    CLOSE_RANGE_CLOEXEC: Final[int] = lib.CLOSE_RANGE_CLOEXEC
    IN_MODIFY: Final[int] = lib.IN_MODIFY
    IN_CLOEXEC: Final[int] = lib.IN_CLOEXEC
    IN_NONBLOCK: Final[int] = lib.IN_NONBLOCK
    NS_GET_USERNS: Final[int] = lib.NS_GET_USERNS
    NS_GET_PARENT: Final[int] = lib.NS_GET_PARENT
    NS_GET_NSTYPE: Final[int] = lib.NS_GET_NSTYPE
    NS_GET_OWNER_UID: Final[int] = lib.NS_GET_OWNER_UID
    PIDFD_NONBLOCK: Final[int] = lib.PIDFD_NONBLOCK


def check(ret: int, operation: str, path: PathArg | None = None, *, detail: str | None = None) -> int:
    """Return *ret* if it is >= 0, else raise :class:`SyscallError` for ``-ret``."""
    if ret < 0:
        raise SyscallError(-ret, operation, _display(path), detail=detail)
    return ret


def _display(path: PathArg | None) -> str | None:
    if path is None:
        return None
    return os.fsdecode(os.fspath(path))


def _opt(value: str | bytes | os.PathLike[str] | None) -> object:
    return ffi.NULL if value is None else to_bytes(value)


def unshare(flags: int) -> None:
    """unshare(2): move the calling thread (or process) into new namespaces."""
    check(lib.nsp_unshare(flags), "unshare")


def setns(fd: int, nstype: int = 0, *, path: PathArg | None = None) -> None:
    """setns(2): join the namespace (or, for a pidfd, namespaces) *fd* refers to."""
    check(lib.nsp_setns(fd, nstype), "setns", path)


def mount(
    source: PathArg | None,
    target: PathArg,
    fstype: str | None = None,
    flags: int = 0,
    data: str | None = None,
) -> None:
    """mount(2).  The error names the source and target, as crun's do."""
    ret = lib.nsp_mount(_opt(source), to_bytes(target), _opt(fstype), flags, _opt(data))
    if ret < 0:
        src = _display(source) if source is not None else fstype or "none"
        raise SyscallError(-ret, "mount", _display(target), detail=f"mount `{src}` on `{_display(target)}`")


def umount(target: PathArg, flags: int = 0) -> None:
    """umount2(2)."""
    check(lib.nsp_umount2(to_bytes(target), flags), "umount", target)


def pivot_root(new_root: PathArg, put_old: PathArg) -> None:
    """pivot_root(2)."""
    check(lib.nsp_pivot_root(to_bytes(new_root), to_bytes(put_old)), "pivot_root", new_root)


def sethostname(name: str) -> None:
    """sethostname(2) in the calling process' UTS namespace."""
    raw = name.encode()
    check(lib.nsp_sethostname(raw, len(raw)), "sethostname", detail=f"sethostname `{name}`")


def setdomainname(name: str) -> None:
    """setdomainname(2) in the calling process' UTS namespace."""
    raw = name.encode()
    check(lib.nsp_setdomainname(raw, len(raw)), "setdomainname", detail=f"setdomainname `{name}`")


def pidfd_open(pid: int, flags: int = 0) -> int:
    """pidfd_open(2): a file descriptor that refers to process *pid*."""
    return check(lib.nsp_pidfd_open(pid, flags), "pidfd_open", detail=f"pidfd_open {pid}")


def pidfd_send_signal(pidfd: int, sig: int) -> None:
    """pidfd_send_signal(2): signal the process behind *pidfd* (no pid reuse race)."""
    check(lib.nsp_pidfd_send_signal(pidfd, sig, 0), "pidfd_send_signal", detail=f"send signal {sig}")


def ns_ioctl(fd: int, request: int, *, path: PathArg | None = None) -> int:
    """An ``NS_GET_*`` ioctl on a namespace file descriptor."""
    return check(lib.nsp_ns_ioctl(fd, request), "ioctl", path)


def gettid() -> int:
    """gettid(2): the calling thread's id."""
    return lib.nsp_gettid()


def fsopen(fsname: str, flags: int = C.FSOPEN_CLOEXEC) -> int:
    """fsopen(2): a file system context for the new mount API."""
    return check(lib.nsp_fsopen(fsname.encode(), flags), "fsopen", detail=f"fsopen `{fsname}`")


def fsconfig_set_string(fd: int, key: str, value: str) -> None:
    """fsconfig(FSCONFIG_SET_STRING)."""
    ret = lib.nsp_fsconfig(fd, C.FSCONFIG_SET_STRING, key.encode(), os.fsencode(value), 0)
    check(ret, "fsconfig", detail=f"fsconfig `{key}={value}`")


def fsconfig_set_flag(fd: int, key: str) -> None:
    """fsconfig(FSCONFIG_SET_FLAG)."""
    ret = lib.nsp_fsconfig(fd, C.FSCONFIG_SET_FLAG, key.encode(), ffi.NULL, 0)
    check(ret, "fsconfig", detail=f"fsconfig `{key}`")


def fsconfig_set_fd(fd: int, key: str, value_fd: int) -> None:
    """fsconfig(FSCONFIG_SET_FD)."""
    ret = lib.nsp_fsconfig(fd, C.FSCONFIG_SET_FD, key.encode(), ffi.NULL, value_fd)
    check(ret, "fsconfig", detail=f"fsconfig `{key}`")


def fsconfig_create(fd: int, *, fstype: str = "") -> None:
    """fsconfig(FSCONFIG_CMD_CREATE): create the superblock."""
    ret = lib.nsp_fsconfig(fd, C.FSCONFIG_CMD_CREATE, ffi.NULL, ffi.NULL, 0)
    check(ret, "fsconfig", detail=f"create file system {fstype}".rstrip())


def fsmount(fd: int, flags: int = C.FSMOUNT_CLOEXEC, attr_flags: int = 0) -> int:
    """fsmount(2): a detached mount for a created file system context."""
    return check(lib.nsp_fsmount(fd, flags, attr_flags), "fsmount")


def move_mount(from_dfd: int, from_path: PathArg, to_dfd: int, to_path: PathArg, flags: int = 0) -> None:
    """move_mount(2): attach (or move) a mount."""
    ret = lib.nsp_move_mount(from_dfd, to_bytes(from_path), to_dfd, to_bytes(to_path), flags)
    check(ret, "move_mount", to_path)


def open_tree(dfd: int, path: PathArg, flags: int) -> int:
    """open_tree(2): a handle on (or a detached copy of) a mount tree."""
    return check(lib.nsp_open_tree(dfd, to_bytes(path), flags), "open_tree", path)


def mount_setattr(
    dfd: int,
    path: PathArg,
    flags: int,
    attr_set: int = 0,
    attr_clr: int = 0,
    propagation: int = 0,
    userns_fd: int = -1,
) -> None:
    """mount_setattr(2): change mount attributes, recursively with AT_RECURSIVE.

    *userns_fd*: the user namespace whose id maps ``MOUNT_ATTR_IDMAP`` applies.
    """
    ret = lib.nsp_mount_setattr(dfd, to_bytes(path), flags, attr_set, attr_clr, propagation, userns_fd)
    check(ret, "mount_setattr", path)


def openat2(dfd: int, path: PathArg, flags: int, mode: int = 0, resolve: int = 0) -> int:
    """openat2(2): open with path resolution restrictions (RESOLVE_IN_ROOT...)."""
    return check(lib.nsp_openat2(dfd, to_bytes(path), flags, mode, resolve), "openat2", path)


def close_range(first: int, last: int, flags: int = 0) -> None:
    """close_range(2)."""
    check(lib.nsp_close_range(first, last, flags), "close_range")


def inotify_init1(flags: int = 0) -> int:
    """inotify_init1(2): a new inotify descriptor (``C.IN_CLOEXEC``, ``C.IN_NONBLOCK``)."""
    return check(lib.nsp_inotify_init1(flags), "inotify_init1")


def resident_pages(fd: int, length: int, *, path: PathArg | None = None) -> int:
    """How many pages of the first *length* bytes of the file open as *fd* are in the page cache (mincore(2))."""
    ret = lib.nsp_resident_pages(fd, length)
    if ret < 0:
        raise SyscallError(-ret, "mincore", _display(path))
    return int(ret)


def inotify_add_watch(fd: int, path: PathArg, mask: int) -> int:
    """inotify_add_watch(2): watch *path* for the events in *mask*; returns the watch descriptor."""
    return check(lib.nsp_inotify_add_watch(fd, to_bytes(path), mask), "inotify_add_watch", path)


def have_clone3() -> bool:
    """Whether the kernel has clone3(2) (Linux 5.3+)."""
    return bool(lib.nsp_have_clone3())


def have_new_mount_api() -> bool:
    """Whether the kernel has fsopen(2) and friends (Linux 5.2+)."""
    return bool(lib.nsp_have_new_mount_api())


def netns_new(*, lo_up: bool = True) -> int:
    """A descriptor of a new network namespace (its loopback up if *lo_up*), made on the
    calling thread, which is back in its own namespace when this returns."""
    return check(lib.nsp_netns_new(1 if lo_up else 0), "unshare", detail="make a network namespace")
