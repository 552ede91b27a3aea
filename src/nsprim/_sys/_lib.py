"""Load the compiled core and type it once.

``NativeLib`` is a Protocol describing the cffi ``lib`` object, so that the
rest of :mod:`nsprim._sys` is checked by mypy and ``Any`` stops here.
"""

from __future__ import annotations

import sys

from .._version import __version__

TYPE_CHECKING = False  # typing is not imported at run time: every runtime command loads this module
if TYPE_CHECKING:
    from typing import Any, Protocol

    CData = Any  # a cffi pointer or struct; opaque outside _sys
else:
    Protocol = CData = object

__all__ = ["NativeLib", "CData", "ffi", "lib"]

if not sys.platform.startswith("linux"):  # pragma: no cover - import guard
    raise ImportError(f"nsprim needs Linux: it drives Linux kernel interfaces (this is {sys.platform})")

try:
    from .. import _nsprim_native
except ImportError as exc:  # pragma: no cover - broken install
    raise ImportError(
        "nsprim's native core is not built: install the package with `pip install .` "
        f"(or `pip install -e .`) so that setuptools compiles _native/ ({exc})"
    ) from exc


class NativeLib(Protocol):
    """The functions and constants of ``_native/nsprim.h`` and ``constants.cdef``."""

    def nsp_version(self) -> CData: ...
    def nsp_unshare(self, flags: int) -> int: ...
    def nsp_setns(self, fd: int, nstype: int) -> int: ...
    def nsp_mount(self, source: CData, target: CData, fstype: CData, flags: int, data: CData) -> int: ...
    def nsp_umount2(self, target: bytes, flags: int) -> int: ...
    def nsp_pivot_root(self, new_root: bytes, put_old: bytes) -> int: ...
    def nsp_sethostname(self, name: bytes, length: int) -> int: ...
    def nsp_setdomainname(self, name: bytes, length: int) -> int: ...
    def nsp_pidfd_open(self, pid: int, flags: int) -> int: ...
    def nsp_pidfd_send_signal(self, pidfd: int, sig: int, flags: int) -> int: ...
    def nsp_ns_ioctl(self, fd: int, request: int) -> int: ...
    def nsp_gettid(self) -> int: ...
    def nsp_fsopen(self, fsname: bytes, flags: int) -> int: ...
    def nsp_fsconfig(self, fd: int, cmd: int, key: CData, value: CData, aux: int) -> int: ...
    def nsp_fsmount(self, fd: int, flags: int, attr_flags: int) -> int: ...
    def nsp_move_mount(self, from_dfd: int, from_path: bytes, to_dfd: int, to_path: bytes, flags: int) -> int: ...
    def nsp_open_tree(self, dfd: int, path: bytes, flags: int) -> int: ...
    def nsp_mount_setattr(
        self, dfd: int, path: bytes, flags: int, attr_set: int, attr_clr: int, propagation: int, userns_fd: int
    ) -> int: ...
    def nsp_openat2(self, dfd: int, path: bytes, flags: int, mode: int, resolve: int) -> int: ...
    def nsp_close_range(self, first: int, last: int, flags: int) -> int: ...
    def nsp_inotify_init1(self, flags: int) -> int: ...
    def nsp_inotify_add_watch(self, fd: int, path: bytes, mask: int) -> int: ...
    def nsp_resident_pages(self, fd: int, length: int) -> int: ...
    def nsp_have_clone3(self) -> int: ...
    def nsp_have_new_mount_api(self) -> int: ...
    def nsp_spawn(self, config: CData, result: CData) -> int: ...
    def nsp_monitor_spawn(self, spawn: CData, monitor: CData, result: CData, monitor_result: CData) -> int: ...
    def nsp_read_report(self, result: CData, report: CData) -> int: ...
    def nsp_spawn_release(self, result: CData) -> int: ...
    def nsp_run_plan_here(self, config: CData, report: CData) -> int: ...
    def nsp_watcher_start(self, register_fd: CData) -> int: ...
    def nsp_netns_new(self, lo_up: int) -> int: ...
    def nsp_unix_socket_at(self, dirfd: int, name: bytes, listening: int, floor: int) -> int: ...

    # the failing parts of composite steps
    NSP_PART_NONE: int
    NSP_PART_ROOT: int
    NSP_PART_SOURCE: int
    NSP_PART_TARGET: int
    NSP_PART_CREATE: int
    NSP_PART_PARENT: int
    NSP_PART_NULL: int
    NSP_PART_ATTACH: int
    NSP_PART_REMOUNT: int
    NSP_PART_FS_OPEN: int
    NSP_PART_FS_CREATE: int
    NSP_PART_FS_MOUNT: int
    NSP_PART_COPY_UP: int
    NSP_PART_FS_PARAM: int

    # plan step kinds
    NSP_STEP_SYNC: int
    NSP_STEP_SETNS: int
    NSP_STEP_UNSHARE: int
    NSP_STEP_SETHOSTNAME: int
    NSP_STEP_SETDOMAINNAME: int
    NSP_STEP_MOUNT: int
    NSP_STEP_MKDIR: int
    NSP_STEP_CHROOT: int
    NSP_STEP_CHDIR: int
    NSP_STEP_WRITE_FILE: int
    NSP_STEP_SETGROUPS: int
    NSP_STEP_SETRESGID: int
    NSP_STEP_SETRESUID: int
    NSP_STEP_FDMAP: int
    NSP_STEP_SETSID: int
    NSP_STEP_PDEATHSIG: int
    NSP_STEP_NO_NEW_PRIVS: int
    NSP_STEP_RLIMIT: int
    NSP_STEP_UMASK: int
    NSP_STEP_EXEC: int
    NSP_STEP_DUMPABLE: int
    NSP_STEP_CAPS: int
    NSP_STEP_SECCOMP: int
    NSP_STEP_IFUP: int
    NSP_STEP_INIT: int
    NSP_STEP_MOUNT_IN_ROOT: int
    NSP_STEP_CREATE_IN_ROOT: int
    NSP_STEP_ENTER_ROOT: int
    NSP_STEP_MOUNT_FS: int
    NSP_STEP_KEEP_FD: int
    NSP_STEP_TERMINAL: int
    NSP_STEP_WAIT_START: int
    NSP_TERMINAL_CONSOLE: int
    NSP_STEP_OPTIONAL: int
    NSP_MKDIR_EXIST_OK: int
    NSP_EXEC_LOOKUP: int
    NSP_WRITE_FILE_CREATE: int
    NSP_FDMAP_KEEP_OTHERS: int
    NSP_FDMAP_CLOSE_OTHERS: int
    NSP_ENTER_ROOT_FALLBACK: int
    NSP_ENTER_ROOT_CHROOT: int
    NSP_ROOT_MKDIR: int
    NSP_ROOT_MKFILE: int
    NSP_ROOT_SRC_IN_ROOT: int
    NSP_ROOT_MASK: int
    NSP_ROOT_NOFOLLOW: int
    NSP_ROOT_EXIST_OK: int
    NSP_ROOT_COPY_UP: int
    NSP_CAPS_BOUNDING: int
    NSP_CAPS_KEEP: int
    NSP_CAPS_SETS: int
    NSP_CAPS_CLAMP: int
    NSP_SECCOMP_KERNEL_FLAGS: int
    NSP_MAX_ID: int
    NSP_MAX_GROUPS: int
    NSP_MAX_FDMAP_PAIRS: int
    NSP_WATCH_CGROUP: int
    NSP_WATCH_PID: int
    NSP_WATCH_TREE: int
    NSP_WATCH_FORGET_CGROUP: int
    NSP_WATCH_FORGET_PID: int
    NSP_WATCH_FORGET_TREE: int

    # constants from the system headers
    CLONE_NEWNS: int
    CLONE_NEWUTS: int
    CLONE_NEWIPC: int
    CLONE_NEWPID: int
    CLONE_NEWNET: int
    CLONE_NEWUSER: int
    CLONE_NEWCGROUP: int
    CLONE_NEWTIME: int
    CLONE_FILES: int
    CLONE_FS: int
    SIGCHLD: int
    MS_RDONLY: int
    MS_NOSUID: int
    MS_NODEV: int
    MS_NOEXEC: int
    MS_SYNCHRONOUS: int
    MS_REMOUNT: int
    MS_MANDLOCK: int
    MS_DIRSYNC: int
    MS_NOSYMFOLLOW: int
    MS_NOATIME: int
    MS_NODIRATIME: int
    MS_BIND: int
    MS_MOVE: int
    MS_REC: int
    MS_SILENT: int
    MS_UNBINDABLE: int
    MS_PRIVATE: int
    MS_SLAVE: int
    MS_SHARED: int
    MS_RELATIME: int
    MS_STRICTATIME: int
    MS_LAZYTIME: int
    MNT_FORCE: int
    MNT_DETACH: int
    MNT_EXPIRE: int
    UMOUNT_NOFOLLOW: int
    FSOPEN_CLOEXEC: int
    FSMOUNT_CLOEXEC: int
    FSCONFIG_SET_FLAG: int
    FSCONFIG_SET_STRING: int
    FSCONFIG_SET_PATH: int
    FSCONFIG_SET_FD: int
    FSCONFIG_CMD_CREATE: int
    MOVE_MOUNT_F_EMPTY_PATH: int
    MOVE_MOUNT_T_EMPTY_PATH: int
    OPEN_TREE_CLONE: int
    OPEN_TREE_CLOEXEC: int
    AT_RECURSIVE: int
    AT_EMPTY_PATH: int
    AT_FDCWD: int
    MOUNT_ATTR_RDONLY: int
    MOUNT_ATTR_NOSUID: int
    MOUNT_ATTR_NODEV: int
    MOUNT_ATTR_NOEXEC: int
    MOUNT_ATTR_NOSYMFOLLOW: int
    MOUNT_ATTR_IDMAP: int
    RESOLVE_NO_XDEV: int
    RESOLVE_NO_MAGICLINKS: int
    RESOLVE_NO_SYMLINKS: int
    RESOLVE_BENEATH: int
    RESOLVE_IN_ROOT: int
    CLOSE_RANGE_CLOEXEC: int
    IN_MODIFY: int
    IN_CLOEXEC: int
    IN_NONBLOCK: int
    NS_GET_USERNS: int
    NS_GET_PARENT: int
    NS_GET_NSTYPE: int
    NS_GET_OWNER_UID: int
    PIDFD_NONBLOCK: int


ffi: Any = _nsprim_native.ffi
lib: NativeLib = _nsprim_native.lib

_native_version: str = ffi.string(lib.nsp_version()).decode()
if _native_version != __version__:  # pragma: no cover - stale build
    raise ImportError(
        f"nsprim's native core is version {_native_version} but the Python package is {__version__}: "
        "rebuild it with `pip install .` (or `pip install -e .`)"
    )
