"""Starting one plan: the standard streams set up, the plan built for them, the child cloned."""

from __future__ import annotations

import os
import sys
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from ..lowlevel import Waits, run_waits, start_steps
from ..process import Process
from ..spawning import StdioArg, open_streams
from .build import ChildPlan
from .config import ContainerConfig

if TYPE_CHECKING:
    import logging

    from .._sys.spawn import MonitorSpec

__all__ = ["launch", "launch_steps", "Spawner"]

#: What starts a built plan instead of the native core's clone (a zygote's fork): given the plan,
#: the payload's arguments and the descriptors to close once the child has its copies, the waits
#: of :func:`~nsprim.lowlevel.start_steps` and the process.
Spawner = Callable[[ChildPlan, list[str], list[int]], Waits[Process]]


def _debug_log() -> logging.Logger | None:
    """The containers' logger when it shows debug messages.  Unless the program
    imported :mod:`logging`, nothing can show them: then it is not imported here."""
    logging: Any = sys.modules.get("logging")
    if logging is None:
        return None
    log = logging.getLogger("nsprim.container")
    return log if log.isEnabledFor(logging.DEBUG) else None


def launch(
    config: ContainerConfig,
    plan_for: Callable[[list[tuple[int, int]]], ChildPlan],
    stdin: StdioArg,
    stdout: StdioArg,
    stderr: StdioArg,
    *,
    log_id: str | None = None,
    monitor: MonitorSpec | None = None,
    on_clone: Callable[[int], None] | None = None,
) -> Process:
    """Set up the standard streams, build the plan for them, start it; on any
    failure close every descriptor made here.  The cgroup descriptor of
    ``CLONE_INTO_CGROUP``, if any, is closed once the child exists.

    *on_clone* gets the child's pid in the first parent action, before the child
    is released from its first sync step (a plan without one: once it runs)."""
    return run_waits(
        launch_steps(config, plan_for, stdin, stdout, stderr, log_id=log_id, monitor=monitor, on_clone=on_clone)
    )


def launch_steps(
    config: ContainerConfig,
    plan_for: Callable[[list[tuple[int, int]]], ChildPlan],
    stdin: StdioArg,
    stdout: StdioArg,
    stderr: StdioArg,
    *,
    log_id: str | None = None,
    monitor: MonitorSpec | None = None,
    on_clone: Callable[[int], None] | None = None,
    spawner: Spawner | None = None,
    record: dict[str, object] | None = None,
) -> Waits[Process]:
    """:func:`launch` as :data:`~nsprim.lowlevel.Waits` (see :func:`~nsprim.lowlevel.start_steps`);
    with *spawner*, it starts the plan instead of the core's clone.  *record*, if given, gets what
    was started: the ``child`` plan, the stdio ``pairs`` and the ``cgroup_dir`` born into (or None)."""
    streams = open_streams(stdin, stdout, stderr)
    child: ChildPlan | None = None
    log = _debug_log() if log_id is not None else None
    try:
        child = plan_for(streams.pairs)
        if log is not None:
            log.debug("container %s: clone flags %#x, %d plan steps", log_id, child.clone_flags, len(child.steps))
            for i, step in enumerate(child.steps):
                log.debug("  %2d. %s", i, step.describe())
        if record is not None:
            record.update(child=child, pairs=list(streams.pairs), monitor=monitor, spawner=spawner)
            record["cgroup_dir"] = os.readlink(f"/proc/self/fd/{child.cgroup_fd}") if child.cgroup_fd >= 0 else None
        actions = child.actions
        if on_clone is not None and actions:
            first, clone_seen = actions[0], on_clone

            def first_action(pid: int) -> None:
                clone_seen(pid)  # while the child still waits: an owner killed from here on takes it along
                first(pid)

            actions = (first_action, *actions[1:])
        if spawner is not None:
            proc = yield from spawner(child, list(config.argv), streams.hand_over())
        else:
            proc = yield from start_steps(
                child.body,
                prefix=child.prefix,
                args=list(config.argv),
                clone_flags=child.clone_flags,
                cgroup_fd=child.cgroup_fd,
                pidns_fd=child.pidns_fd,
                parent_actions=actions,
                close_after=streams.hand_over(),
                timings=log is not None,
                monitor=monitor,
            )
    except BaseException:
        streams.abandon()
        raise
    finally:
        if child is not None and child.cgroup_fd >= 0:
            os.close(child.cgroup_fd)
    if on_clone is not None and child is not None and not child.actions:
        try:
            on_clone(proc.pid)
        except BaseException:
            streams.abandon()
            proc.close()  # kills and reaps it
            raise
    streams.attach(proc)
    if log is not None and proc.setup_us and child is not None:
        log.debug("container %s: set up in %.0f µs: clone %.0f µs, then", log_id, sum(proc.setup_us), proc.setup_us[0])
        for i, (us, step) in enumerate(zip(proc.setup_us[1:], child.steps, strict=True)):
            log.debug("  %2d. %6.0f µs  %s", i, us, step.describe())
    return proc
