"""Encode a plan of raw steps into C structs and start it with ``nsp_spawn``.

The typed steps live in :mod:`nsprim.plan`; each lowers itself to a
:class:`RawStep` (a kind from the C enum plus generic arguments).  This module
turns a sequence of raw steps into one ``struct nsp_step`` array, kept alive
with every string it points to, so that an immutable plan is encoded once and
spawned many times.
"""

from __future__ import annotations

import contextlib
import enum
import errno
import os
import select
import struct
from collections.abc import Sequence
from typing import Any

from .._dataclass import dataclass
from ..errors import SyscallError
from ._lib import ffi as _ffi
from ._lib import lib
from .plan_rows import EncodedRows, read_report_raw, spawn_config

TYPE_CHECKING = False
if TYPE_CHECKING:
    from .plan_rows import Row

__all__ = [
    "OPTIONAL",
    "MAX_GROUPS",
    "MAX_FDMAP_PAIRS",
    "StepKind",
    "StepPart",
    "MkdirFlag",
    "ExecFlag",
    "WriteFileFlag",
    "FdMapFlag",
    "EnterRootFlag",
    "TerminalFlag",
    "RootFlag",
    "CapsFlag",
    "RawStep",
    "EncodedPlan",
    "SpawnHandles",
    "MonitorSpec",
    "MonitorLink",
    "core_file",
    "encode",
    "row",
    "spawn",
    "read_report",
    "release",
    "run_here",
    "Report",
]


class StepKind(enum.IntEnum):
    """The step kinds the native core executes (``enum nsp_step_kind``)."""

    SYNC = lib.NSP_STEP_SYNC
    SETNS = lib.NSP_STEP_SETNS
    UNSHARE = lib.NSP_STEP_UNSHARE
    SETHOSTNAME = lib.NSP_STEP_SETHOSTNAME
    SETDOMAINNAME = lib.NSP_STEP_SETDOMAINNAME
    MOUNT = lib.NSP_STEP_MOUNT
    MKDIR = lib.NSP_STEP_MKDIR
    CHROOT = lib.NSP_STEP_CHROOT
    CHDIR = lib.NSP_STEP_CHDIR
    WRITE_FILE = lib.NSP_STEP_WRITE_FILE
    SETGROUPS = lib.NSP_STEP_SETGROUPS
    SETRESGID = lib.NSP_STEP_SETRESGID
    SETRESUID = lib.NSP_STEP_SETRESUID
    FDMAP = lib.NSP_STEP_FDMAP
    SETSID = lib.NSP_STEP_SETSID
    PDEATHSIG = lib.NSP_STEP_PDEATHSIG
    NO_NEW_PRIVS = lib.NSP_STEP_NO_NEW_PRIVS
    RLIMIT = lib.NSP_STEP_RLIMIT
    UMASK = lib.NSP_STEP_UMASK
    EXEC = lib.NSP_STEP_EXEC
    DUMPABLE = lib.NSP_STEP_DUMPABLE
    CAPS = lib.NSP_STEP_CAPS
    SECCOMP = lib.NSP_STEP_SECCOMP
    IFUP = lib.NSP_STEP_IFUP
    INIT = lib.NSP_STEP_INIT
    MOUNT_IN_ROOT = lib.NSP_STEP_MOUNT_IN_ROOT
    CREATE_IN_ROOT = lib.NSP_STEP_CREATE_IN_ROOT
    ENTER_ROOT = lib.NSP_STEP_ENTER_ROOT
    MOUNT_FS = lib.NSP_STEP_MOUNT_FS
    KEEP_FD = lib.NSP_STEP_KEEP_FD
    TERMINAL = lib.NSP_STEP_TERMINAL
    WAIT_START = lib.NSP_STEP_WAIT_START


OPTIONAL: int = lib.NSP_STEP_OPTIONAL  # a step flag: a missing path is no failure
MAX_GROUPS: int = lib.NSP_MAX_GROUPS  # supplementary groups one SETGROUPS step may set (the kernel's NGROUPS_MAX)
MAX_FDMAP_PAIRS: int = lib.NSP_MAX_FDMAP_PAIRS  # descriptors one FDMAP step may place

# The bits of a step's flags, by kind (the enums of _native/nsprim.h): the child refuses (EINVAL) a bit
# its kind does not know.  OPTIONAL goes with the kinds that act on a path.


class ExecFlag(enum.IntFlag):
    """``StepKind.EXEC``'s flags."""

    LOOKUP = lib.NSP_EXEC_LOOKUP  #: only find the file as execve would, and go on


class MkdirFlag(enum.IntFlag):
    """``StepKind.MKDIR``'s flags."""

    EXIST_OK = lib.NSP_MKDIR_EXIST_OK  #: an existing entry is fine


class WriteFileFlag(enum.IntFlag):
    """``StepKind.WRITE_FILE``'s flags."""

    CREATE = lib.NSP_WRITE_FILE_CREATE  #: create (and truncate) the file; else it must exist


class FdMapFlag(enum.IntFlag):
    """``StepKind.FDMAP``'s flags."""

    KEEP_OTHERS = lib.NSP_FDMAP_KEEP_OTHERS  #: leave the other descriptors from 3 up as they are
    CLOSE_OTHERS = lib.NSP_FDMAP_CLOSE_OTHERS  #: close them, but the kept ones (the step's last ``c`` ints)


class TerminalFlag(enum.IntFlag):
    """``StepKind.TERMINAL``'s flags."""

    CONSOLE = lib.NSP_TERMINAL_CONSOLE  #: an engine's console socket: size from the step, the pty's name sent along


class EnterRootFlag(enum.IntFlag):
    """``StepKind.ENTER_ROOT``'s flags; none: ``pivot_root``, the old root detached."""

    FALLBACK = lib.NSP_ENTER_ROOT_FALLBACK  #: pivot_root, else move + chroot for an initramfs
    CHROOT = lib.NSP_ENTER_ROOT_CHROOT  #: move + chroot only


class RootFlag(enum.IntFlag):
    """The flags of ``StepKind.MOUNT_IN_ROOT`` and ``CREATE_IN_ROOT`` (see ``_native/rootfs.h``)."""

    MKDIR = lib.NSP_ROOT_MKDIR  #: mount: create a missing target as a directory
    MKFILE = lib.NSP_ROOT_MKFILE  #: mount: as an empty file (with MKDIR: whichever the source is)
    SRC_IN_ROOT = lib.NSP_ROOT_SRC_IN_ROOT  #: mount: the source is a path inside the root too
    MASK = lib.NSP_ROOT_MASK  #: mount: hide the target
    NOFOLLOW = lib.NSP_ROOT_NOFOLLOW  #: both: refuse any symlink on the way
    EXIST_OK = lib.NSP_ROOT_EXIST_OK  #: create: an existing entry is fine
    COPY_UP = lib.NSP_ROOT_COPY_UP  #: mount: fill the new mount with what the target directory held


class CapsFlag(enum.IntFlag):
    """``StepKind.CAPS``'s phases (0: BOUNDING | SETS)."""

    BOUNDING = lib.NSP_CAPS_BOUNDING
    KEEP = lib.NSP_CAPS_KEEP
    SETS = lib.NSP_CAPS_SETS
    CLAMP = lib.NSP_CAPS_CLAMP


SECCOMP_KERNEL_FLAGS: int = lib.NSP_SECCOMP_KERNEL_FLAGS  # SECCOMP's flags: the kernel's own, below OPTIONAL


class StepPart(enum.IntEnum):
    """Which part of a composite step failed (``enum nsp_step_part``); ``FS_PARAM + i``: parameter *i*."""

    NONE = lib.NSP_PART_NONE
    ROOT = lib.NSP_PART_ROOT
    SOURCE = lib.NSP_PART_SOURCE
    TARGET = lib.NSP_PART_TARGET
    CREATE = lib.NSP_PART_CREATE
    PARENT = lib.NSP_PART_PARENT
    NULL = lib.NSP_PART_NULL
    ATTACH = lib.NSP_PART_ATTACH
    REMOUNT = lib.NSP_PART_REMOUNT
    FS_OPEN = lib.NSP_PART_FS_OPEN
    FS_CREATE = lib.NSP_PART_FS_CREATE
    FS_MOUNT = lib.NSP_PART_FS_MOUNT
    COPY_UP = lib.NSP_PART_COPY_UP
    FS_PARAM = lib.NSP_PART_FS_PARAM


@dataclass(frozen=True, slots=True)
class RawStep:
    """One step as the native core sees it.  Field meanings depend on *kind*
    (see ``_native/nsprim.h``)."""

    kind: StepKind
    flags: int = 0
    a: int = 0
    b: int = 0
    c: int = 0
    path: bytes | None = None
    path2: bytes | None = None
    str: bytes | None = None
    str2: bytes | None = None
    strv: tuple[bytes, ...] | None = None
    strv2: tuple[bytes, ...] | None = None
    ints: tuple[int, ...] | None = None


class EncodedPlan(EncodedRows):
    """A C array of steps plus everything it points to.  Immutable once built."""

    __slots__ = ()

    def __init__(self, raw: Sequence[RawStep]) -> None:
        super().__init__([row(step) for step in raw], lambda kind: StepKind(kind).name.lower())


def row(step: RawStep) -> Row:
    """*step* as a row of :mod:`nsprim._sys.plan_rows` (plain values, as a kept plan holds it)."""
    ints = None if step.ints is None else tuple(int(i) for i in step.ints)
    return (
        int(step.kind), int(step.flags), int(step.a), int(step.b), int(step.c), step.path, step.path2, step.str,
        step.str2, step.strv, step.strv2, ints,
    )  # fmt: skip


def encode(raw: Sequence[RawStep]) -> EncodedPlan:
    """Encode *raw* steps into C structs (done once per immutable plan)."""
    return EncodedPlan(raw)


@dataclass(frozen=True, slots=True)
class SpawnHandles:
    """What ``nsp_spawn`` hands back: the child and the parent's pipe ends."""

    pid: int
    pidfd: int
    report_fd: int
    sync_fd: int  # -1 when the plan has no SYNC step
    #: With ``timings``: CLOCK_MONOTONIC ns before clone, at the child's start, after each step (0: not
    #: reached, or the exec that succeeded), when clone returned.  Empty in fork mode.
    step_ns: tuple[int, ...] = ()
    #: With ``keep_fds``: the descriptors KEEP_FD steps left in our table (-1: none), by slot.
    kept_fds: tuple[int, ...] = ()
    #: With ``monitor``: the link to the monitor, the child's parent (we are not).
    monitor: MonitorLink | None = None
    #: The native result, which holds the progress record the child shares with us (see
    #: :func:`read_report`); released by it, or by :func:`release`.
    native: Any = None


@dataclass(frozen=True, slots=True)
class MonitorSpec:
    """What a detached container's monitor needs (``struct nsp_monitor_config``)."""

    state_dirfd: int
    state_dir: bytes
    state_prefix: bytes  # the state's JSON object up to the monitor's fields, ending in ", "
    cgroup_dirs: tuple[bytes, ...]
    oom_file: bytes | None
    remove_state: bool
    exe: bytes | None = None  # the core's file, which the monitor re-executes to drop our memory


def core_file() -> bytes:
    """The file of the native core (the monitor's program, see ``_native/monitor_image.c``)."""
    from .. import _nsprim_native

    return os.fsencode(os.path.realpath(_nsprim_native.__file__))


_EXIT = struct.Struct("iiii")  # struct nsp_monitor_exit: si_code, si_status, oom_killed, pad


class MonitorLink:
    """Our end of a monitored start (``_native/monitor.c``): the monitor, not we,
    is the child's parent.  :meth:`commit` or :meth:`abort` the start; after a
    commit, :meth:`exit_status` tells how the child ended, if we still listen."""

    def __init__(self, fd: int, pid: int, starttime: int, monitor_pid: int, monitor_starttime: int) -> None:
        self.fd = fd
        self.pid = pid
        self.starttime = starttime
        self.monitor_pid = monitor_pid
        self.monitor_starttime = monitor_starttime
        self.oom_killed = False
        self._returncode: int | None = None

    def commit(self) -> None:
        """The start went through and is recorded: from now on the monitor owns the child."""
        os.write(self.fd, b"g")

    def abort(self) -> None:
        """The start failed and we clean up: the monitor kills and reaps the child, then exits."""
        if self.fd >= 0:
            with contextlib.suppress(OSError):
                os.write(self.fd, b"a")
            self.close()

    def exit_status(self, block: bool) -> int | None:
        """The child's status (``-N`` for signal N) once it ended and the monitor recorded it
        and removed its cgroup; ``None`` while it runs (without *block*).  255 if the
        monitor died without saying."""
        if self._returncode is not None or self.fd < 0:
            return self._returncode
        if not block and not select.select([self.fd], [], [], 0)[0]:
            return None
        while True:
            try:
                data = os.read(self.fd, _EXIT.size)
                break
            except InterruptedError:  # pragma: no cover - PEP 475 retries
                continue
        if len(data) == _EXIT.size:
            code, status, oom, _ = _EXIT.unpack(data)
            self._returncode = status if code == os.CLD_EXITED else -status
            self.oom_killed = bool(oom)
        else:
            self._returncode = 255
        self.close()
        return self._returncode

    def close(self) -> None:
        """Stop listening; the child and its monitor go on."""
        if self.fd >= 0:
            fd, self.fd = self.fd, -1
            os.close(fd)


@dataclass(frozen=True, slots=True)
class Report:
    """A failed step, as the child reported it; or, with *died*, the step the child
    was at when it died before exec without a report (*errno* 0)."""

    index: int
    kind: int
    errno: int
    part: int = 0  # a StepPart, or FS_PARAM + the parameter's index
    died: bool = False


def spawn(
    plan: EncodedPlan,
    *,
    prefix: EncodedPlan | None = None,
    clone_flags: int,
    cgroup_fd: int = -1,
    pidns_fd: int = -1,
    use_vfork: bool = False,
    timings: bool = False,
    keep_fds: int = 0,
    monitor: MonitorSpec | None = None,
) -> SpawnHandles:
    """Clone a child into *clone_flags* namespaces and start *plan* in it.

    *prefix* steps run first: the part of a plan that changes from one spawn
    to the next, so that the rest is encoded once.

    Returns at once (fork mode) or after the child exec'd or failed (vfork
    mode).  The caller must read the report pipe (:func:`read_report`) and
    close the descriptors.  With *timings* (vfork mode only: the child writes
    them into memory it shares with us) the handles carry when each step ended.
    With *keep_fds* slots (vfork mode and ``CLONE_FILES`` in *clone_flags*:
    the child shares our memory and descriptor table) the descriptors KEEP_FD
    steps opened are returned as ``kept_fds``.
    With *monitor*, a monitor process of the core clones the child and stays
    its parent (fork mode; no timings or kept descriptors); the handles carry
    the :class:`MonitorLink`.
    """
    config = spawn_config(
        plan, prefix, clone_flags=clone_flags, cgroup_fd=cgroup_fd, pidns_fd=pidns_fd, use_vfork=use_vfork
    )
    times = None
    if timings and config.use_vfork:
        times = _ffi.new("long long[]", config.nprefix + config.nsteps + 3)
        config.step_ns = times
    kept = None
    if keep_fds:
        kept = _ffi.new("int[]", [-1] * keep_fds)
        config.kept_fds = kept
        config.nkept = keep_fds
    result = _ffi.new("struct nsp_spawn_result *")
    link = None
    if monitor is None:
        ret = lib.nsp_spawn(config, result)
    else:
        config.step_ns = _ffi.NULL
        ret, link = _monitor_spawn(config, result, monitor)
    if ret < 0:
        raise SyscallError(-ret, "clone", hint=_clone_hint(-ret, clone_flags))
    step_ns = tuple(int(t) for t in times) if times is not None and link is None else ()
    kept_fds = tuple(int(fd) for fd in kept) if kept is not None else ()
    return SpawnHandles(result.pid, result.pidfd, result.report_fd, result.sync_fd, step_ns, kept_fds, link, result)


def _monitor_spawn(config: Any, result: Any, spec: MonitorSpec) -> tuple[int, MonitorLink | None]:
    mon = _ffi.new("struct nsp_monitor_config *")
    keep = [_ffi.new("char[]", spec.state_dir), _ffi.new("char[]", spec.state_prefix)]
    dirs = [_ffi.new("char[]", d) for d in spec.cgroup_dirs]
    vec = _ffi.new("char *[]", [*dirs, _ffi.NULL])
    mon.state_dirfd = spec.state_dirfd
    mon.state_dir = keep[0]
    mon.state_prefix = keep[1]
    mon.state_prefix_len = len(spec.state_prefix)
    mon.cgroup_dirs = vec
    oom = _ffi.new("char[]", spec.oom_file) if spec.oom_file is not None else _ffi.NULL
    mon.oom_file = oom
    mon.remove_state = 1 if spec.remove_state else 0
    exe = _ffi.new("char[]", spec.exe) if spec.exe is not None else _ffi.NULL
    mon.exe = exe
    mres = _ffi.new("struct nsp_monitor_result *")
    ret = lib.nsp_monitor_spawn(config, mon, result, mres)
    if ret < 0:
        return ret, None
    link = MonitorLink(mres.control_fd, result.pid, mres.starttime, mres.monitor_pid, mres.monitor_starttime)
    return ret, link


def _clone_hint(err: int, flags: int) -> str | None:
    if err == errno.EINVAL and flags & lib.CLONE_NEWTIME:
        return "time namespaces need Linux 5.6 and clone3"
    if err == errno.EPERM:
        return "creating these namespaces needs privilege (or a user namespace)"
    if err == errno.ENOSPC:
        return "a namespace count limit in /proc/sys/user/ was reached"
    if err == errno.ENOSYS:
        return "this kernel lacks clone3, needed for cgroup or time namespace placement"
    return None


def read_report(handles: SpawnHandles) -> Report | None:
    """Block until the child exec'd (``None``), failed a step, or died before exec.

    A child that reached a ``WAIT_START`` step and waits there for its start
    is ``None`` too: its whole setup succeeded.

    EOF on the report pipe alone cannot tell exec from death: the progress
    record the child shares with us says which (and keeps a failure whose
    report the child could not write, say for want of memory).
    """
    raw = read_report_raw(handles.native)
    if raw is None:
        return None
    index, kind, err, part, died = raw
    return Report(index, kind, err, part, died=died)


def release(handles: SpawnHandles) -> None:
    """Free what :func:`read_report` would have, for a spawn whose report is not read."""
    if handles.native is not None:
        lib.nsp_spawn_release(handles.native)


def run_here(plan: EncodedPlan, *, prefix: EncodedPlan | None = None) -> Report | None:
    """Run *prefix*, then *plan*, in this process, as a spawned child would (no clone, no exec):
    ``None`` once every step ran, else the :class:`Report` of the step that failed.

    For a process forked by a warm interpreter, which goes on in Python once
    its setup is done; a plan with a step that needs a parent across a clone
    (sync, init, keep-fd, wait-start) or an exec is refused, as that step's failure (EINVAL)."""
    config = _ffi.new("struct nsp_spawn_config *")
    config.cgroup_fd = -1
    config.pidns_fd = -1
    config.steps = plan.steps
    config.nsteps = plan.count
    if prefix is not None:
        config.prefix = prefix.steps
        config.nprefix = prefix.count
    report = _ffi.new("struct nsp_report *")
    if lib.nsp_run_plan_here(config, report) == 0:
        return None
    return Report(report.index, report.kind, report.err, report.part)
