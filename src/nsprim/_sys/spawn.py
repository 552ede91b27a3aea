"""Encode a plan of raw steps into C structs and start it with ``nsp_spawn``.

The typed steps live in :mod:`nsprim.plan`; each lowers itself to a
:class:`RawStep` (a kind from the C enum plus generic arguments).  This module
turns a sequence of raw steps into one ``struct nsp_step`` array, kept alive
with every string it points to, so that an immutable plan is encoded once and
spawned many times.
"""

from __future__ import annotations

import enum
import errno
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from ..errors import SyscallError
from ._lib import ffi as _ffi
from ._lib import lib

__all__ = ["OPTIONAL", "StepKind", "RawStep", "EncodedPlan", "SpawnHandles", "encode", "spawn", "read_report", "Report"]


class StepKind(enum.IntEnum):
    """The step kinds the native core executes (``enum nsp_step_kind``)."""

    SYNC = lib.NSP_STEP_SYNC
    SETNS = lib.NSP_STEP_SETNS
    UNSHARE = lib.NSP_STEP_UNSHARE
    SETHOSTNAME = lib.NSP_STEP_SETHOSTNAME
    SETDOMAINNAME = lib.NSP_STEP_SETDOMAINNAME
    MOUNT = lib.NSP_STEP_MOUNT
    UMOUNT = lib.NSP_STEP_UMOUNT
    MKDIR = lib.NSP_STEP_MKDIR
    PIVOT_ROOT = lib.NSP_STEP_PIVOT_ROOT
    CHROOT = lib.NSP_STEP_CHROOT
    CHDIR = lib.NSP_STEP_CHDIR
    WRITE_FILE = lib.NSP_STEP_WRITE_FILE
    SETGROUPS = lib.NSP_STEP_SETGROUPS
    SETRESGID = lib.NSP_STEP_SETRESGID
    SETRESUID = lib.NSP_STEP_SETRESUID
    FDMAP = lib.NSP_STEP_FDMAP
    SETSID = lib.NSP_STEP_SETSID
    SETCTTY = lib.NSP_STEP_SETCTTY
    PDEATHSIG = lib.NSP_STEP_PDEATHSIG
    NO_NEW_PRIVS = lib.NSP_STEP_NO_NEW_PRIVS
    RLIMIT = lib.NSP_STEP_RLIMIT
    UMASK = lib.NSP_STEP_UMASK
    SYMLINK = lib.NSP_STEP_SYMLINK
    MKNOD = lib.NSP_STEP_MKNOD
    CLOSE_FD = lib.NSP_STEP_CLOSE_FD
    EXEC = lib.NSP_STEP_EXEC
    DUMPABLE = lib.NSP_STEP_DUMPABLE
    CAPS = lib.NSP_STEP_CAPS
    SECCOMP = lib.NSP_STEP_SECCOMP
    IFUP = lib.NSP_STEP_IFUP
    INIT = lib.NSP_STEP_INIT
    MASK = lib.NSP_STEP_MASK
    MOUNT_IN_ROOT = lib.NSP_STEP_MOUNT_IN_ROOT
    CREATE_IN_ROOT = lib.NSP_STEP_CREATE_IN_ROOT
    ENTER_ROOT = lib.NSP_STEP_ENTER_ROOT
    MOUNT_FS = lib.NSP_STEP_MOUNT_FS
    KEEP_FD = lib.NSP_STEP_KEEP_FD


OPTIONAL: int = lib.NSP_STEP_OPTIONAL  # a step flag: a missing path is no failure


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


class EncodedPlan:
    """A C array of steps plus everything it points to.  Immutable once built."""

    __slots__ = ("_keep", "count", "has_sync", "steps")

    def __init__(self, raw: Sequence[RawStep]) -> None:
        keep: list[Any] = []
        steps = _ffi.new("struct nsp_step[]", max(len(raw), 1))

        def cstr(value: bytes | None) -> Any:
            if value is None:
                return _ffi.NULL
            buf = _ffi.new("char[]", value)
            keep.append(buf)
            return buf

        def cvec(values: tuple[bytes, ...] | None) -> Any:
            if values is None:
                return _ffi.NULL
            items = [cstr(v) for v in values]
            vec = _ffi.new("char *[]", [*items, _ffi.NULL])
            keep.append(vec)
            return vec

        for i, step in enumerate(raw):
            s = steps[i]
            s.kind = int(step.kind)
            s.flags = step.flags
            s.a = step.a
            s.b = step.b
            s.c = step.c
            s.path = cstr(step.path)
            s.path2 = cstr(step.path2)
            s.str = cstr(step.str)
            s.str2 = cstr(step.str2)
            s.strv = cvec(step.strv)
            s.strv2 = cvec(step.strv2)
            if step.ints:
                ints = _ffi.new("int[]", list(step.ints))
                keep.append(ints)
                s.ints = ints
                s.nints = len(step.ints)
        self.steps = steps
        self.count = len(raw)
        self.has_sync = any(step.kind == StepKind.SYNC for step in raw)
        self._keep = keep


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


@dataclass(frozen=True, slots=True)
class Report:
    """A failed step, as the child reported it."""

    index: int
    kind: int
    errno: int


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
    """
    config = _ffi.new("struct nsp_spawn_config *")
    config.clone_flags = clone_flags
    config.cgroup_fd = cgroup_fd
    config.pidns_fd = pidns_fd
    config.exit_signal = lib.SIGCHLD
    config.steps = plan.steps
    config.nsteps = plan.count
    if prefix is not None:
        config.prefix = prefix.steps
        config.nprefix = prefix.count
    has_sync = plan.has_sync or (prefix is not None and prefix.has_sync)
    config.use_vfork = 1 if use_vfork and not has_sync else 0
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
    ret = lib.nsp_spawn(config, result)
    if ret < 0:
        raise SyscallError(-ret, "clone", hint=_clone_hint(-ret, clone_flags))
    step_ns = tuple(int(t) for t in times) if times is not None else ()
    kept_fds = tuple(int(fd) for fd in kept) if kept is not None else ()
    return SpawnHandles(result.pid, result.pidfd, result.report_fd, result.sync_fd, step_ns, kept_fds)


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


def read_report(report_fd: int) -> Report | None:
    """Block until the child exec'd (``None``) or reported a failed step."""
    report = _ffi.new("struct nsp_report *")
    ret = lib.nsp_read_report(report_fd, report)
    if ret < 0:
        raise SyscallError(-ret, "read", detail="read the child's report pipe")
    if ret == 0:
        return None
    return Report(report.index, report.kind, report.err)
