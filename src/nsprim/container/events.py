"""A running container's events in an event loop (asyncio or trio): :class:`ContainerEvents`.

``async for event in box.events()`` yields :class:`ContainerEvent` values:
the exit of the container's pid 1 (the last event) and what its cgroup
reports (:mod:`nsprim.cgroup.watch`: OOMs and OOM kills, ``memory.high`` and
``memory.max`` hits, freezes and thaws, pressure triggers).  Each source is a
descriptor the loop watches while the iterator waits — the pidfd, inotify,
eventfd and per-trigger epoll descriptors — so waiting costs no thread and
no polling.
"""

from __future__ import annotations

import contextlib
import os
import time
from collections import deque
from collections.abc import Callable, Iterable, Sequence
from enum import Enum
from types import TracebackType

from .._dataclass import dataclass
from .._readiness import ready_async
from ..cgroup.watch import GroupEvent, GroupEventKind, GroupEventWatch, PressureTrigger
from ..errors import ConfigError, UnsupportedError

TYPE_CHECKING = False  # (typing itself is not imported)
if TYPE_CHECKING:
    from ..cgroup import CGroup

__all__ = ["EventKind", "ContainerEvent", "ContainerEvents"]


class EventKind(Enum):
    """What happened to a container."""

    #: Its pid 1 exited (the last event; :attr:`ContainerEvent.returncode` says how).
    EXIT = "exit"
    #: It hit its memory limit and reclaim failed (the OOM killer was invoked).
    OOM = "oom"
    #: The OOM killer killed one of its processes.
    OOM_KILL = "oom_kill"
    #: Its memory usage went over ``memory.high`` (cgroup v2).
    MEMORY_HIGH = "memory_high"
    #: Its memory usage reached ``memory.max`` (cgroup v2).
    MEMORY_MAX = "memory_max"
    #: All its processes are frozen.
    FROZEN = "frozen"
    #: It runs again after being frozen.
    THAWED = "thawed"
    #: A pressure trigger fired (:attr:`ContainerEvent.trigger`).
    PRESSURE = "pressure"


@dataclass(frozen=True)
class ContainerEvent:
    """One event of a container.

    ``count``: the counter after the event, for OOM, OOM kill, ``memory.high``
    and ``memory.max`` (since the container started); ``returncode``: pid 1's
    status for :attr:`EventKind.EXIT` (``-N`` for signal N); ``trigger``: the
    pressure trigger that fired.
    """

    kind: EventKind
    count: int | None = None
    returncode: int | None = None
    trigger: PressureTrigger | None = None

    @classmethod
    def of_group(cls, event: GroupEvent) -> ContainerEvent:
        """The container's form of one of its cgroup's events."""
        return cls(EventKind(event.kind.value), count=event.count, trigger=event.trigger)


class ContainerEvents:
    """The asynchronous iterator :meth:`RunningContainer.events
    <nsprim.container.RunningContainer.events>` returns.

    The sources are opened when it is made (what the host cannot deliver
    raises then) and watched by the running loop (asyncio or trio) while
    ``__anext__`` waits; after :attr:`EventKind.EXIT` the iteration ends and
    everything is closed.  Leaving the loop early closes it too (``async with``,
    :meth:`aclose`, or dropping the last reference).  Reaping pid 1 here is
    shared with :meth:`~nsprim.container.RunningContainer.wait_async`: either
    gets the status.
    """

    def __init__(
        self,
        name: str,
        cgroup: CGroup | None,
        collect: Callable[[], int | None],
        exit_fds: Callable[[], dict[int, int]],
        kinds: Iterable[EventKind] | None = None,
        pressure: Sequence[PressureTrigger] = (),
    ) -> None:
        """The events of container *name*, whose group is *cgroup* (None: it has none).

        *collect* reaps what ended and returns pid 1's status once it ended (else
        None); *exit_fds* gives the exit descriptors to watch now, by pid (pid 1's
        and those of the processes started inside, which must be reaped before
        pid 1 can end)."""
        self._collect = collect
        self._exit_fds = exit_fds
        self._queue: deque[ContainerEvent] = deque()
        self._sources: set[int] = set()  # the watch's descriptors still watched
        self._exit_dups: dict[int, int] = {}  # pid -> our duplicate of its exit descriptor
        self._exits_seen: set[int] = set()  # duplicates seen readable (their processes not yet reaped)
        self._wake_fd = -1  # an eventfd: close() from another task wakes the waiter
        self._waiting = False
        self._started = False
        self._ended = False
        self._watch: GroupEventWatch | None = None
        wanted = self._parse(kinds)
        self.kinds: frozenset[EventKind] = wanted
        group_kinds = {GroupEventKind(k.value) for k in wanted if k is not EventKind.EXIT}
        if not exit_fds():
            if group_kinds:
                raise UnsupportedError(
                    f"events of container {name}: it has ended, only `exit` can be delivered", feature="events"
                )
            return
        if cgroup is None:
            if group_kinds or pressure:
                what = sorted(k.value for k in group_kinds)[0] if group_kinds else "pressure"
                raise UnsupportedError(
                    f"events: `{what}` cannot be delivered for container {name}: it has no cgroup "
                    f"(run as root for one)",
                    feature=what,
                )
        elif kinds is None or group_kinds:
            self._watch = cgroup.watch_events(None if kinds is None else group_kinds, pressure, from_zero=True)
            if kinds is None:
                self.kinds = frozenset({EventKind.EXIT, *(EventKind(k.value) for k in self._watch.kinds)})

    @staticmethod
    def _parse(kinds: Iterable[EventKind] | None) -> frozenset[EventKind]:
        if kinds is None:
            return frozenset({EventKind.EXIT})
        out = set()
        for k in kinds:
            if not isinstance(k, EventKind):
                raise ConfigError(f"kinds: `{k!r}` is not an EventKind", what="kinds")
            out.add(k)
        return frozenset(out)

    # ---- iteration ---------------------------------------------------------------------

    def __aiter__(self) -> ContainerEvents:
        return self

    async def __anext__(self) -> ContainerEvent:
        while not self._queue:
            if self._ended:
                self.close()
                raise StopAsyncIteration
            if self._started:
                await self._sleep()
            else:  # the first look: what came before, an exit included
                self._started = True
                self._sources = set(self._watch.fds) if self._watch is not None else set()
                self._follow_exits()
            if not self._ended:  # not closed meanwhile
                self._gather()
        return self._queue.popleft()

    async def _sleep(self) -> None:
        """Sleep in the running event loop until a source, an exit, :meth:`close` or a recheck."""
        if self._wake_fd < 0:
            self._wake_fd = os.eventfd(0, os.EFD_CLOEXEC | os.EFD_NONBLOCK)
        exits = [fd for fd in self._exit_dups.values() if fd not in self._exits_seen]
        delay = self._watch.recheck_after if self._watch is not None else None
        self._waiting = True
        try:
            ready, _ = await ready_async(
                [*self._sources, *exits, self._wake_fd], deadline=None if delay is None else time.monotonic() + delay
            )
        finally:
            self._waiting = False
            if self._ended:  # closed meanwhile: the wake-up was for us, its descriptor is ours to close
                self._close_wake()
        if self._ended:
            return
        for fd in ready:
            if fd in self._sources:
                if self._watch is None or not self._watch.on_ready(fd):
                    self._sources.discard(fd)
            elif fd != self._wake_fd:
                # An exit descriptor stays readable: not watched again, kept until its process is reaped.
                self._exits_seen.add(fd)

    def _gather(self) -> None:
        if self._watch is not None:
            self._queue.extend(e for g in self._watch.collect() if (e := ContainerEvent.of_group(g)).kind in self.kinds)
        status = self._collect()  # reaps the exec'd processes that ended: pid 1 cannot end before them
        if status is None:
            self._follow_exits()
            return
        if self._watch is not None:  # what happened last (the kill that ended pid 1) comes before the exit
            self._queue.extend(e for g in self._watch.collect() if (e := ContainerEvent.of_group(g)).kind in self.kinds)
        if EventKind.EXIT in self.kinds:
            self._queue.append(ContainerEvent(EventKind.EXIT, returncode=status))
        self._ended = True
        self._close_exits()

    def _follow_exits(self) -> None:
        """Watch the exit descriptors there are now (duplicates: their owners close theirs on reaping)."""
        if self._ended:
            return
        live = self._exit_fds()
        for pid in [pid for pid in self._exit_dups if pid not in live]:
            dup = self._exit_dups.pop(pid)
            self._exits_seen.discard(dup)
            os.close(dup)
        for pid, fd in live.items():
            if pid not in self._exit_dups:
                self._exit_dups[pid] = os.dup(fd)

    def _close_exits(self) -> None:
        for dup in self._exit_dups.values():
            os.close(dup)
        self._exit_dups.clear()
        self._exits_seen.clear()

    def _close_wake(self) -> None:
        if self._wake_fd >= 0:
            fd, self._wake_fd = self._wake_fd, -1
            os.close(fd)

    # ---- lifetime ----------------------------------------------------------------------

    def close(self) -> None:
        """Stop watching: close every descriptor (a task waiting for the next event ends its iteration)."""
        self._ended = True
        self._close_exits()
        self._sources.clear()
        if self._watch is not None:
            self._watch.close()
            self._watch = None
        if self._waiting:
            os.eventfd_write(self._wake_fd, 1)  # the waiter closes it when it wakes
        else:
            self._close_wake()

    async def aclose(self) -> None:
        """:meth:`close`, awaitable (as async generators have it)."""
        self.close()

    async def __aenter__(self) -> ContainerEvents:
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    def __del__(self) -> None:
        with contextlib.suppress(Exception):
            self.close()
