"""Processes started in namespaces: :func:`spawn`, :func:`run` and :class:`Process`.

:func:`spawn` turns its arguments into a :class:`~nsprim.plan.Plan` and
starts it with the native core; everything between clone and exec runs in C.
A failed step raises :class:`~nsprim.errors.StepError` naming the step — a
missing program is an :class:`~nsprim.errors.ExecutableNotFoundError`, never
confused with the program's own exit status 127.

    >>> import nsprim
    >>> r = nsprim.run(["hostname"], new={"uts"}, hostname="box", capture_output=True)
    >>> r.stdout
    b'box\\n'
"""

from __future__ import annotations

import contextlib
import errno
import os
import select
import signal as _signal
import subprocess
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from types import TracebackType
from typing import IO, Any

from . import _sys
from ._sys import C
from ._sys import spawn as _spawn
from .checks import check_argv, check_env, check_groups, check_id, check_uts_name
from .errors import ChildDiedError, ConfigError, ExecutableNotFoundError, StepError, SyscallError, TimeoutExpired
from .idmap import IdMap, write_id_maps
from .namespace import Namespace, NamespaceId, NamespaceType, namespace_ids
from .plan import (
    Chdir,
    Exec,
    FdMap,
    Mount,
    ParentDeathSignal,
    Plan,
    SetDomainname,
    SetGid,
    SetGroups,
    SetHostname,
    SetNs,
    SetSid,
    SetUid,
    Step,
    Sync,
    Unshare,
    WriteFile,
)

__all__ = [
    "Process",
    "CompletedRun",
    "TimeOffsets",
    "Streams",
    "spawn",
    "start",
    "run",
    "open_streams",
    "join_namespaces",
    "PIPE",
    "DEVNULL",
    "STDOUT",
]

PIPE = subprocess.PIPE
DEVNULL = subprocess.DEVNULL
STDOUT = subprocess.STDOUT

StdioArg = int | IO[Any] | None
ParentAction = Callable[[int], None]

# clone(2) time namespace offsets apply to these clocks only.
_CLOCK_MONOTONIC = 1
_CLOCK_BOOTTIME = 7


@dataclass(frozen=True)
class TimeOffsets:
    """Offsets, in seconds, of a new time namespace's clocks from the host's."""

    monotonic: float = 0.0
    boottime: float = 0.0

    def render(self) -> bytes:
        """The text for ``/proc/<pid>/timens_offsets``."""
        lines = []
        for clock, value in ((_CLOCK_MONOTONIC, self.monotonic), (_CLOCK_BOOTTIME, self.boottime)):
            ns = round(value * 1_000_000_000)
            secs, nsec = divmod(ns, 1_000_000_000)
            lines.append(f"{clock} {secs} {nsec}\n")
        return "".join(lines).encode()


class Process:
    """A child started by :func:`spawn`: its pid, a pidfd, and its pipes.

    The pidfd makes :meth:`send_signal` and :meth:`wait` immune to pid reuse.
    As a context manager it closes the pipes and, if the child still runs,
    kills and reaps it: no zombie is left behind.
    """

    def __init__(
        self,
        pid: int,
        pidfd: int,
        args: Sequence[Any],
        *,
        stdin: IO[bytes] | None = None,
        stdout: IO[bytes] | None = None,
        stderr: IO[bytes] | None = None,
    ) -> None:
        self.pid = pid
        self.args = list(args)
        self.stdin = stdin
        self.stdout = stdout
        self.stderr = stderr
        self.returncode: int | None = None
        self._pidfd = pidfd
        #: µs each setup step took in the child, when :func:`start` was asked for ``timings``:
        #: the clone itself first, then one entry per step (the exec last: until it returned).
        self.setup_us: tuple[float, ...] = ()
        #: The descriptors :class:`~nsprim.plan.KeepFd` steps left, by slot (``start(keep_fds=N)``; -1: none).
        self.kept_fds: tuple[int, ...] = ()
        #: With ``start(monitor=...)``: the link to the monitor that is the process's parent (we
        #: are not): waiting asks it, and :meth:`close` lets the process go on instead of killing it.
        self.monitor: _spawn.MonitorLink | None = None

    def __repr__(self) -> str:
        state = "running" if self.returncode is None else f"returncode={self.returncode}"
        return f"<nsprim.Process pid={self.pid} {state} args={self.args!r}>"

    @property
    def pidfd(self) -> int:
        """The process file descriptor (``-1`` once the process was reaped)."""
        return self._pidfd

    # ---- waiting ---------------------------------------------------------------

    def _reap(self, options: int) -> int | None:
        if self.returncode is not None:
            return self.returncode
        if self.monitor is not None:
            status = self.monitor.exit_status(block=not options & os.WNOHANG)
            if status is not None:
                self.returncode = status
                self._close_pidfd()
            return status
        try:
            res = os.waitid(os.P_PIDFD, self._pidfd, os.WEXITED | options)
        except ChildProcessError:  # reaped elsewhere (a SIGCHLD handler, say)
            self.returncode = 255
            self._close_pidfd()
            return self.returncode
        if res is None:
            return None
        if res.si_code == os.CLD_EXITED:
            self.returncode = res.si_status
        else:  # CLD_KILLED / CLD_DUMPED
            self.returncode = -res.si_status
        self._close_pidfd()
        return self.returncode

    def poll(self) -> int | None:
        """The exit status if the process has exited (reaping it), else ``None``."""
        return self._reap(os.WNOHANG)

    def wait(self, timeout: float | None = None) -> int:
        """Wait for the process to exit; return its status (``-N`` for signal N).

        Raises :class:`~nsprim.errors.TimeoutExpired` after *timeout* seconds.
        """
        if self.returncode is not None:
            return self.returncode
        if timeout is not None:
            deadline = time.monotonic() + timeout
            poller = select.poll()
            # A monitored process has ended for us once its monitor says so (after its cleanup).
            watched = self.monitor.fd if self.monitor is not None and self.monitor.fd >= 0 else self._pidfd
            poller.register(watched, select.POLLIN)
            while True:
                left = deadline - time.monotonic()
                if left <= 0 or not poller.poll(left * 1000):
                    if self.poll() is not None:
                        break
                    if left <= 0:
                        raise TimeoutExpired(self.pid, timeout)
                else:
                    break
        status = self._reap(0)
        assert status is not None
        return status

    def communicate(
        self, input: bytes | None = None, timeout: float | None = None
    ) -> tuple[bytes | None, bytes | None]:
        """Send *input*, read stdout and stderr to the end, and wait (as Popen does)."""
        out_fd = self.stdout.fileno() if self.stdout is not None else -1
        err_fd = self.stderr.fileno() if self.stderr is not None else -1
        chunks: dict[int, list[bytes]] = {fd: [] for fd in (out_fd, err_fd) if fd >= 0}
        readers = {f.fileno(): f for f in (self.stdout, self.stderr) if f is not None}
        writer = self.stdin
        data = memoryview(input or b"")
        if writer is not None and not data:
            writer.close()
            writer = None
        deadline = None if timeout is None else time.monotonic() + timeout
        while readers or writer is not None:
            left = None if deadline is None else deadline - time.monotonic()
            if left is not None and left <= 0:
                raise TimeoutExpired(self.pid, timeout or 0.0)
            wlist = [writer.fileno()] if writer is not None else []
            ready_r, ready_w, _ = select.select(list(readers), wlist, [], left)
            for fd in ready_r:
                chunk = os.read(fd, 65536)
                if chunk:
                    chunks[fd].append(chunk)
                else:
                    readers.pop(fd).close()
            if ready_w and writer is not None:
                try:
                    data = data[os.write(writer.fileno(), data[:65536]) :]
                except BrokenPipeError:
                    data = data[:0]
                if not data:
                    writer.close()
                    writer = None
        self.wait(None if deadline is None else max(0.0, deadline - time.monotonic()))
        out = b"".join(chunks[out_fd]) if out_fd >= 0 else None
        err = b"".join(chunks[err_fd]) if err_fd >= 0 else None
        return out, err

    # ---- signals ---------------------------------------------------------------

    def send_signal(self, sig: int) -> None:
        """Send *sig* through the pidfd; a no-op once the process was reaped."""
        if self.returncode is not None or self._pidfd < 0:
            return
        try:
            _sys.pidfd_send_signal(self._pidfd, sig)
        except SyscallError as exc:
            if exc.errno != errno.ESRCH:  # exited, not yet reaped
                raise

    def terminate(self) -> None:
        """Send SIGTERM."""
        self.send_signal(_signal.SIGTERM)

    def kill(self) -> None:
        """Send SIGKILL."""
        self.send_signal(_signal.SIGKILL)

    # ---- namespaces ------------------------------------------------------------

    def namespace_ids(self) -> dict[NamespaceType, NamespaceId]:
        """The identity of each of the process' namespaces."""
        return namespace_ids(self.pid)

    def namespace(self, nstype: NamespaceType | str) -> Namespace:
        """Open one of the process' namespaces (keeps it alive while open)."""
        return Namespace.of_pid(self.pid, nstype)

    # ---- lifetime ----------------------------------------------------------------

    def _close_pidfd(self) -> None:
        if self._pidfd >= 0:
            fd, self._pidfd = self._pidfd, -1
            os.close(fd)

    def close(self) -> None:
        """Close the pipes; kill and reap the process if it still runs (a monitored
        process goes on: only our descriptors are closed)."""
        for f in (self.stdin, self.stdout, self.stderr):
            if f is not None:
                with contextlib.suppress(OSError):
                    f.close()
        if self.monitor is not None:
            self.monitor.close()
            self._close_pidfd()
        elif self.returncode is None and self._pidfd >= 0:
            self.kill()
            self.wait()

    def __enter__(self) -> Process:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    def __del__(self) -> None:
        # Never kill from a finaliser; just do not leak the descriptor.
        with contextlib.suppress(Exception):
            if self.monitor is not None:
                self.monitor.close()
            elif self.returncode is None and self._pidfd >= 0:
                self.poll()
            self._close_pidfd()


@dataclass(frozen=True)
class CompletedRun:
    """What :func:`run` returns."""

    args: list[Any]
    returncode: int
    stdout: bytes | None
    stderr: bytes | None

    def check_returncode(self) -> None:
        """Raise :class:`subprocess.CalledProcessError` for a non-zero status."""
        if self.returncode:
            raise subprocess.CalledProcessError(self.returncode, self.args, self.stdout, self.stderr)


# ---- the low-level entry point -------------------------------------------------------


def start(
    plan: Plan,
    *,
    prefix: Plan | None = None,
    args: Sequence[Any] = (),
    clone_flags: int = 0,
    cgroup_fd: int = -1,
    pidns_fd: int = -1,
    parent_actions: Sequence[ParentAction] = (),
    close_after: Iterable[int] = (),
    timings: bool = False,
    keep_fds: int = 0,
    monitor: _spawn.MonitorSpec | None = None,
) -> Process:
    """Start *plan* in a child cloned into *clone_flags* namespaces.

    The steps of *prefix*, if given, run first: a small per-spawn part in
    front of a plan that is encoded once and reused.

    One *parent_actions* callable runs for each :class:`~nsprim.plan.Sync`
    step, in order, with the child's pid; the child waits until it returns.
    Action *k+1* starts as soon as action *k* released the child, not when
    the child reaches the next sync step: an action must depend only on what
    exists once the child is cloned (its namespaces, its pid).
    *close_after* are parent-side descriptors (the child's ends of pipes):
    closed here once the child has them, or when starting fails.  On a failed step the child is reaped and
    :class:`~nsprim.errors.StepError` raised; nothing is left running.  A child that dies before its
    exec without a report (killed, say by the OOM killer) is a :class:`~nsprim.errors.ChildDiedError`
    naming the step it was at, never a process that seems to have run.
    With *timings*, the returned process's :attr:`~Process.setup_us` says how
    long the clone and each step took (vfork-mode plans only; else empty).
    With *keep_fds* slots (a vfork-mode plan and ``CLONE_FILES`` in
    *clone_flags*), the descriptors :class:`~nsprim.plan.KeepFd` steps opened
    are the process's :attr:`~Process.kept_fds`, the caller's to close.
    With *monitor*, a monitor process of the core clones the child and stays
    its parent (a detached container): the process's :attr:`~Process.monitor`
    is the link to it, which the caller must commit (or abort).
    """
    head = prefix.steps if prefix is not None else ()
    try:
        nsync = sum(1 for s in (*head, *plan.steps) if isinstance(s, Sync))
        if nsync != len(parent_actions):
            raise ConfigError(f"the plan has {nsync} sync steps but {len(parent_actions)} parent actions")
        handles = _spawn.spawn(
            plan.encoded,
            prefix=prefix.encoded if prefix is not None else None,
            clone_flags=clone_flags,
            cgroup_fd=cgroup_fd,
            pidns_fd=pidns_fd,
            use_vfork=plan.vfork_safe and (prefix is None or prefix.vfork_safe),
            timings=timings,
            keep_fds=keep_fds,
            monitor=monitor,
        )
    finally:
        # Ours to close on every path, once: the child has its copies now.
        for fd in close_after:
            with contextlib.suppress(OSError):
                os.close(fd)
    try:
        action_error: BaseException | None = None
        if parent_actions:
            try:
                for action in parent_actions:
                    action(handles.pid)
                    try:
                        os.write(handles.sync_fd, b"g")
                    except BrokenPipeError:
                        break  # the child died: its report (or silence) says where
            except BaseException as exc:  # the child must not go on alone
                action_error = exc
                _sys.pidfd_send_signal(handles.pidfd, _signal.SIGKILL)
            finally:
                os.close(handles.sync_fd)
        report = _spawn.read_report(handles)
    except BaseException:
        if handles.monitor is not None:
            handles.monitor.abort()  # it kills and reaps the child
        _kill_and_reap(handles.pidfd)
        raise
    finally:
        _spawn.release(handles)
        os.close(handles.report_fd)
    if report is not None or action_error is not None:
        for fd in handles.kept_fds:
            if fd >= 0:
                os.close(fd)
        if handles.monitor is not None:
            handles.monitor.abort()
        sig, status = _reap(handles.pidfd)
        if report is not None and not (report.died and action_error is not None):  # (we killed it then)
            steps = (*head, *plan.steps)
            if report.died:
                # Silence is no exec: the child ended during its setup (the OOM killer, say).
                at = steps[report.index] if 0 <= report.index < len(steps) else None
                raise ChildDiedError(at, report.index, signal=sig, exit_status=status)
            step = _reported_step(report, steps, prefix, plan)
            cls = ExecutableNotFoundError if isinstance(step, Exec) and report.errno == errno.ENOENT else StepError
            raise cls(report.errno, step, report.index, report.part) from action_error
        assert action_error is not None
        raise action_error
    proc = Process(handles.pid, handles.pidfd, args)
    proc.kept_fds = handles.kept_fds
    proc.monitor = handles.monitor
    if handles.step_ns:
        proc.setup_us = _step_durations(handles.step_ns)
    return proc


def _reported_step(report: _spawn.Report, steps: Sequence[Step], prefix: Plan | None, plan: Plan) -> Step:
    """The step a failure report names, once its index and kind agree with the plan."""
    kinds = (*(prefix.encoded.kinds if prefix is not None else ()), *plan.encoded.kinds)
    if 0 <= report.index < len(steps) and kinds[report.index] == report.kind:
        return steps[report.index]
    known = (
        f"step {report.index} is of kind {kinds[report.index]}" if 0 <= report.index < len(steps) else "no such step"
    )
    raise SyscallError(
        report.errno,
        "spawn",
        detail=f"spawn: the child reported a failure of step {report.index}, of kind {report.kind}, "
        f"which does not match the plan ({known})",
    )


def _step_durations(ns: Sequence[int]) -> tuple[float, ...]:
    """Clock readings (before clone, child start, after each step, clone returned) to µs per
    phase: the clone, then each step; the exec, which never returns when it works, ends when
    clone returned."""
    marks = list(ns)
    if marks[-2] == 0:
        marks[-2] = marks[-1]
    out = [(marks[1] - marks[0]) / 1000.0]
    prev = marks[1]
    for t in marks[2:-1]:
        out.append((t - prev) / 1000.0)
        prev = t
    return tuple(out)


def _reap(pidfd: int) -> tuple[int | None, int | None]:
    """Reap the child; return (the signal that killed it, or None; its exit status, or None)."""
    res = None
    with contextlib.suppress(ChildProcessError):
        res = os.waitid(os.P_PIDFD, pidfd, os.WEXITED)
    os.close(pidfd)
    if res is None:
        return None, None
    if res.si_code == os.CLD_EXITED:
        return None, res.si_status
    return res.si_status, None


def _kill_and_reap(pidfd: int) -> None:
    with contextlib.suppress(SyscallError):
        _sys.pidfd_send_signal(pidfd, _signal.SIGKILL)
    _reap(pidfd)


# ---- spawn(): the convenient front -------------------------------------------------------


@dataclass
class Streams:
    """The standard streams of a child about to start.

    *pairs* map a source descriptor to 0, 1 or 2 (for :class:`~nsprim.plan.FdMap`);
    *child_side* are ends the parent closes once the child has them;
    *parent_ends* are our ends of pipes, by stream.
    """

    pairs: list[tuple[int, int]]
    child_side: list[int]
    parent_ends: list[int | None]

    def hand_over(self) -> list[int]:
        """The child's ends, for :func:`start` to close (it does, on every path)."""
        fds, self.child_side = self.child_side, []
        return fds

    def abandon(self) -> None:
        """Close every descriptor opened for the streams and not handed over (the start failed)."""
        for fd in [*self.child_side, *(p for p in self.parent_ends if p is not None)]:
            with contextlib.suppress(OSError):
                os.close(fd)

    def attach(self, proc: Process) -> None:
        """Give *proc* file objects for our ends of its pipes."""
        ends = self.parent_ends
        files = [None if fd is None else os.fdopen(fd, "wb" if i == 0 else "rb", 0) for i, fd in enumerate(ends)]
        proc.stdin, proc.stdout, proc.stderr = files


def open_streams(stdin: StdioArg, stdout: StdioArg, stderr: StdioArg) -> Streams:
    """Set up the three standard streams as :func:`subprocess.Popen` takes them.

    ``None`` inherits, :data:`PIPE` makes a pipe, :data:`DEVNULL` opens
    ``/dev/null``, :data:`STDOUT` (for stderr) joins standard output; an int
    or a file object is used as it is.
    """
    streams = Streams([], [], [])
    try:
        for index, arg in enumerate((stdin, stdout, stderr)):
            parent: int | None = None
            child: int | None
            if arg is None:
                child = None
            elif index == 2 and arg == STDOUT:
                # fd 2 gets whatever fd 1 gets (FdMap stages sources first).
                child = next((src for src, dst in streams.pairs if dst == 1), 1)
            elif arg == PIPE:
                r, w = os.pipe2(os.O_CLOEXEC)
                child, parent = (r, w) if index == 0 else (w, r)
                streams.child_side.append(child)
            elif arg == DEVNULL:
                child = os.open(os.devnull, (os.O_RDONLY if index == 0 else os.O_WRONLY) | os.O_CLOEXEC)
                streams.child_side.append(child)
            elif isinstance(arg, int):
                if arg < 0:
                    raise ConfigError(f"invalid file descriptor {arg} for standard stream {index}", what="stdio")
                child = arg
            else:
                child = arg.fileno()
            streams.parent_ends.append(parent)
            if child is not None:
                streams.pairs.append((child, index))
    except BaseException:
        streams.abandon()
        raise
    return streams


def join_namespaces(join: Iterable[Namespace]) -> tuple[list[Step], int]:
    """SetNs steps for joining *join* (user first, for the rights over the rest;
    mount last) and the pid namespace's descriptor, or -1: a pid namespace
    applies to children only, so the parent thread enters it around the clone."""
    steps: list[Step] = []
    pidns_fd = -1
    seen: set[NamespaceType] = set()
    order = {NamespaceType.USER: 0, NamespaceType.MNT: 2}
    for ns in sorted(join, key=lambda n: order.get(n.type, 1)):
        if ns.type in seen:
            raise ConfigError(f"two {ns.type.value} namespaces to join", what="join")
        seen.add(ns.type)
        if ns.type is NamespaceType.PID:
            pidns_fd = ns.fd  # entered by the parent thread around clone
            continue
        steps.append(SetNs(ns.fd, ns.type.flag, str(ns.path)))
    return steps, pidns_fd


def spawn(
    argv: Sequence[str | bytes | os.PathLike[str]],
    *,
    new: Iterable[NamespaceType | str] = (),
    join: Iterable[Namespace] = (),
    uid_map: IdMap | None = None,
    gid_map: IdMap | None = None,
    deny_setgroups: bool | None = None,
    hostname: str | None = None,
    domainname: str | None = None,
    time_offsets: TimeOffsets | None = None,
    mount_proc: bool = False,
    uid: int | None = None,
    gid: int | None = None,
    groups: Sequence[int] | None = None,
    env: Mapping[str, str] | None = None,
    cwd: str | os.PathLike[str] | None = None,
    stdin: StdioArg = None,
    stdout: StdioArg = None,
    stderr: StdioArg = None,
    pass_fds: Sequence[int] = (),
    new_session: bool = False,
    die_with_parent: bool = False,
    cgroup_fd: int = -1,
    steps: Sequence[Step] = (),
) -> Process:
    """Start *argv* in new and/or joined namespaces; return a :class:`Process`.

    *new* names the namespace types to create (``{"pid", "net", ...}``);
    *join* gives open :class:`~nsprim.namespace.Namespace` handles to enter
    (what ``nsenter`` does).  A new user namespace gets *uid_map*/*gid_map*
    written by the parent before the child goes on (by default, as root:
    none; otherwise the caller's ids mapped to 0).  A new mount namespace
    always has ``/`` made recursively private first; *mount_proc* then mounts
    a fresh ``/proc`` (useful with a new pid namespace).  *time_offsets*
    creates a time namespace with those clock offsets.  *steps* are extra
    plan steps run just before the switch to *uid*/*gid* and the exec.
    *cgroup_fd* (a cgroup v2 directory) places the child with
    ``CLONE_INTO_CGROUP``.
    """
    if not argv:
        raise ConfigError("argv must name a program", what="argv")
    # Everything the kernel would truncate or wrap is refused before the first system call.
    check_argv([os.fsencode(a) for a in argv])
    if env is not None:
        check_env(env)
    for name, what in ((hostname, "hostname"), (domainname, "domainname")):
        if name is not None:
            check_uts_name(name, what)
    for ident, what in ((uid, "uid"), (gid, "gid")):
        if ident is not None:
            check_id(ident, what)
    if groups is not None:
        groups = check_groups(groups)
    types = {NamespaceType.parse(t) for t in new}
    if time_offsets is not None:
        types.add(NamespaceType.TIME)
    joined = list(join)
    clash = types & {ns.type for ns in joined}
    if clash:
        names = ", ".join(sorted(t.value for t in clash))
        raise ConfigError(f"cannot both create and join a {names} namespace", what="join")
    if mount_proc and NamespaceType.MNT not in types:
        raise ConfigError("mount_proc needs a new mount namespace (new={'mnt', ...})", what="mount_proc")
    if (
        hostname is not None
        and NamespaceType.UTS not in types
        and not any(ns.type is NamespaceType.UTS for ns in joined)
    ):
        raise ConfigError("setting a hostname needs a new uts namespace", what="hostname")
    if (uid_map is not None or gid_map is not None) and NamespaceType.USER not in types:
        raise ConfigError("id maps need a new user namespace (new={'user', ...})", what="uid_map")

    plan_steps: list[Step] = []
    actions: list[ParentAction] = []
    if NamespaceType.USER in types:
        if uid_map is None and gid_map is None and os.geteuid() != 0:
            uid_map = IdMap.single(0, os.geteuid())
            gid_map = IdMap.single(0, os.getegid())
        if uid_map is not None or gid_map is not None:
            deny = bool(deny_setgroups) if deny_setgroups is not None else False
            # Become root inside when the map has one: the caller's own ids
            # (say, host root) are usually unmapped in the new namespace.
            if uid is None and uid_map is not None and uid_map.to_outside(0) is not None:
                uid = 0
            if gid is None and gid_map is not None and gid_map.to_outside(0) is not None:
                gid = 0
                if groups is None and not deny and os.geteuid() == 0:
                    groups = ()
            um, gm = uid_map, gid_map

            def write_maps(pid: int) -> None:
                write_id_maps(pid, um, gm, deny_setgroups=deny)

            plan_steps.append(Sync("the parent writes the id maps"))
            actions.append(write_maps)
    join_steps, pidns_fd = join_namespaces(joined)
    plan_steps += join_steps
    clone_types = set(types)
    if NamespaceType.TIME in types:
        # Offsets can only be set before a process enters the namespace:
        # unshare it for the children, set them, and let exec move us in.
        clone_types.discard(NamespaceType.TIME)
        plan_steps.append(Unshare(C.CLONE_NEWTIME))
        if time_offsets is not None:
            plan_steps.append(WriteFile("/proc/self/timens_offsets", time_offsets.render()))
    if NamespaceType.MNT in types:
        plan_steps.append(Mount(None, "/", None, C.MS_REC | C.MS_PRIVATE))
        if mount_proc:
            plan_steps.append(Mount("proc", "/proc", "proc", C.MS_NOSUID | C.MS_NODEV | C.MS_NOEXEC))
    if hostname is not None:
        plan_steps.append(SetHostname(hostname))
    if domainname is not None:
        plan_steps.append(SetDomainname(domainname))
    if new_session:
        plan_steps.append(SetSid())
    if die_with_parent:
        plan_steps.append(ParentDeathSignal(_signal.SIGKILL))

    streams = open_streams(stdin, stdout, stderr)
    try:
        child_fds = [*streams.pairs, *((fd, fd) for fd in pass_fds)]
        plan_steps.append(FdMap(tuple(child_fds)))
        plan_steps += steps
        if groups is not None:
            plan_steps.append(SetGroups(tuple(groups)))
        if gid is not None:
            plan_steps.append(SetGid(gid))
        if uid is not None:
            plan_steps.append(SetUid(uid))
        if cwd is not None:
            plan_steps.append(Chdir(cwd))
        exec_env = None if env is None else dict(env)
        file = argv[0]
        plan_steps.append(Exec(os.fsdecode(file), [os.fsencode(a) for a in argv], exec_env))
        proc = start(
            Plan(tuple(plan_steps)),
            args=list(argv),
            clone_flags=NamespaceType.mask(clone_types),
            cgroup_fd=cgroup_fd,
            pidns_fd=pidns_fd,
            parent_actions=actions,
            close_after=streams.hand_over(),
        )
    except BaseException:
        streams.abandon()
        raise
    streams.attach(proc)
    return proc


def run(
    argv: Sequence[str | bytes | os.PathLike[str]],
    *,
    input: bytes | None = None,
    capture_output: bool = False,
    timeout: float | None = None,
    check: bool = False,
    **kwargs: Any,
) -> CompletedRun:
    """Run *argv* like :func:`spawn` and wait for it, as :func:`subprocess.run` does.

    On a timeout the process is killed, reaped, and
    :class:`~nsprim.errors.TimeoutExpired` raised.
    """
    if capture_output:
        kwargs.setdefault("stdout", PIPE)
        kwargs.setdefault("stderr", PIPE)
    if input is not None:
        kwargs.setdefault("stdin", PIPE)
    with spawn(argv, **kwargs) as proc:
        try:
            out, err = proc.communicate(input, timeout)
        except TimeoutExpired:
            proc.kill()
            proc.wait()
            raise TimeoutExpired(proc.pid, timeout or 0.0, killed=True) from None
        except BaseException:
            proc.kill()
            proc.wait()
            raise
        result = CompletedRun(list(argv), proc.returncode if proc.returncode is not None else proc.wait(), out, err)
    if check:
        result.check_returncode()
    return result
