"""Starting a :class:`~nsprim.plan.Plan` as it is: :func:`start`.

Below :func:`nsprim.spawning.spawn`: the caller writes the plan's steps and
gives the clone flags, the cgroup to be born in, and what the parent does at
each :class:`~nsprim.plan.Sync` step.  The child runs the steps in C between
clone and exec; a failed step is a :class:`~nsprim.errors.StepError` naming it.
"""

from __future__ import annotations

import contextlib
import errno
import os
from collections.abc import Callable, Generator, Iterable, Sequence
from typing import TypeVar

from . import _sys
from ._readiness import readable_async, wait_readable
from ._sys import spawn as _spawn
from .errors import ChildDiedError, ConfigError, ExecutableNotFoundError, StepError, SyscallError
from .plan import Exec, Plan, Step, Sync
from .process import CommandArg, Process

TYPE_CHECKING = False
if TYPE_CHECKING:
    import signal as _signal
else:
    import _signal  # the same constants as plain ints: `signal` makes three enum classes at import

__all__ = ["start", "start_steps", "run_waits", "run_waits_async", "Waits", "ParentAction"]

_T = TypeVar("_T")

#: What the parent does while the child waits at a :class:`~nsprim.plan.Sync` step: called with its pid.
ParentAction = Callable[[int], None]


def start(
    plan: Plan,
    *,
    prefix: Plan | None = None,
    args: Sequence[CommandArg] = (),
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
    return run_waits(
        start_steps(
            plan,
            prefix=prefix,
            args=args,
            clone_flags=clone_flags,
            cgroup_fd=cgroup_fd,
            pidns_fd=pidns_fd,
            parent_actions=parent_actions,
            close_after=close_after,
            timings=timings,
            keep_fds=keep_fds,
            monitor=monitor,
        )
    )


#: A start written once for both ways of waiting: a generator that yields each descriptor it must
#: wait for to become readable, and returns its result (see :func:`run_waits` and :func:`run_waits_async`).
Waits = Generator[int, None, _T]


def run_waits(steps: Waits[_T]) -> _T:
    """Run *steps*, blocking in ``poll`` at each descriptor it waits for."""
    try:
        fd = next(steps)
        while True:
            wait_readable(fd, None)
            fd = steps.send(None)
    except StopIteration as done:
        return done.value  # type: ignore[no-any-return]


async def run_waits_async(steps: Waits[_T]) -> _T:
    """Run *steps* from a coroutine, without blocking the event loop for long.

    The first part of a start — the host side prepared, the child cloned (in
    vfork mode: until its exec), the parent actions — is system calls that
    cannot be awaited: it runs on a worker thread shared by every start
    (:func:`nsprim._offload.off_loop`).  Each wait it then yields is a reader of
    the loop, and what follows it (reading the report) runs on the loop.

    A cancelled wait is thrown into *steps*, whose cleanup (killing and reaping
    a half-started child) runs before the cancellation goes on; cancelled while
    the worker is at it, the cleanup follows once the worker is done."""
    from ._offload import off_loop

    def undo(_fd: int, exc: BaseException) -> None:
        steps.throw(exc)  # cleans up and re-raises
        raise RuntimeError("start steps went on after a cancelled start")  # pragma: no cover

    try:
        fd = await off_loop(lambda: next(steps), undo)
        while True:
            try:
                await readable_async(fd)
            except BaseException as exc:
                fd = steps.throw(exc)  # cleans up and re-raises; a generator that went on is a bug
                raise RuntimeError("start steps went on after a cancelled wait") from exc
            fd = steps.send(None)
    except StopIteration as done:
        return done.value  # type: ignore[no-any-return]


def start_steps(
    plan: Plan,
    *,
    prefix: Plan | None = None,
    args: Sequence[CommandArg] = (),
    clone_flags: int = 0,
    cgroup_fd: int = -1,
    pidns_fd: int = -1,
    parent_actions: Sequence[ParentAction] = (),
    close_after: Iterable[int] = (),
    timings: bool = False,
    keep_fds: int = 0,
    monitor: _spawn.MonitorSpec | None = None,
) -> Waits[Process]:
    """:func:`start` as :data:`Waits`: it yields the report pipe, readable once the child
    exec'd, failed or died.

    A plan with :class:`~nsprim.plan.Sync` steps (or a monitor) is cloned in
    fork mode: its setup runs while the caller waits there, on an event loop
    as a reader.  A vfork-safe plan is started in vfork mode, which suspends
    the calling thread until the child exec'd (faster than a fork and a wait
    on this kind of machine; :func:`run_waits_async` does it on a worker
    thread): its pipe is readable at once."""
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
        yield handles.report_fd  # readable once the child exec'd, failed or died (at once in vfork mode)
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
                at = _died_at(report, steps, prefix, plan)
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


def _died_at(report: _spawn.Report, steps: Sequence[Step], prefix: Plan | None, plan: Plan) -> Step | None:
    """The step a child that died was at (its progress record), or None if the record's kind is not that step's."""
    kinds = (*(prefix.encoded.kinds if prefix is not None else ()), *plan.encoded.kinds)
    if 0 <= report.index < len(steps) and kinds[report.index] == report.kind:
        return steps[report.index]
    return None


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
