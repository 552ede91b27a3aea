"""cgroup events as descriptors to wait on: :class:`GroupEventWatch`.

Every event comes from a kernel notification, none from polling:

* cgroup v2 ``cgroup.events`` (frozen, thawed) and ``memory.events`` (OOM,
  OOM kill, ``memory.high`` and ``memory.max`` hits) wake their pollers with
  ``POLLPRI`` when they change, until they are read again.  The watch holds
  them open in an epoll descriptor registered for ``EPOLLPRI``, reads them
  again when it is ready (which re-arms them) and reports the counters that
  grew and the state that changed.  (They notify ``inotify`` too, but closing
  an inotify instance with watches waits for the kernel, ~20 ms here: a stall
  of an event loop per watch.)  On a hybrid host the v2 tree offers
  ``cgroup.events`` (and pressure) even with no controller.
* cgroup v1 reports OOM through an ``eventfd`` registered with
  ``cgroup.event_control`` against ``memory.oom_control``.  The notice comes
  before the kill; the kill counter is read again for a moment after each
  notice (:attr:`GroupEventWatch.recheck_after`) to report the kill that follows.
* Pressure (PSI) triggers are ``*.pressure`` files with a threshold written
  to them.  Such a file is always readable and signals with ``POLLPRI``, and
  looking at that flag clears it — so each trigger sits alone in an epoll
  descriptor registered for ``EPOLLPRI``, and that descriptor's readiness *is*
  the event (whoever checked it consumed the flag).

The watch only owns descriptors; waiting is the caller's: :meth:`GroupEventWatch.wait`
blocks in ``poll``, and the async iterator of
:meth:`RunningContainer.events <nsprim.container.RunningContainer.events>` has
the running loop (asyncio or trio) watch :attr:`~GroupEventWatch.fds`, each
directly (never through another epoll descriptor, whose own look would consume
a trigger's flag).  Both hand a ready
descriptor to :meth:`~GroupEventWatch.on_ready` and then :meth:`~GroupEventWatch.collect`.
"""

from __future__ import annotations

import contextlib
import errno
import math
import os
import select
import time
from collections.abc import Iterable, Sequence
from enum import Enum
from pathlib import Path
from typing import Final

from nsprim._dataclass import dataclass, field
from nsprim.cgroup import files
from nsprim.cgroup.control import LocatedGroup
from nsprim.cgroup.host import Controller
from nsprim.errors import ConfigError, SyscallError, UnsupportedError

__all__ = [
    "GroupEventKind",
    "GroupEvent",
    "PressureResource",
    "PressureTrigger",
    "GroupEventWatch",
]

# How long after a v1 OOM notice the kill counter is read again, and how often meanwhile.
_V1_KILL_FOLLOW_UP: Final = 1.0
_V1_KILL_RECHECK: Final = 0.01
_CAP_SYS_RESOURCE: Final = 24
_WINDOW_MIN_US: Final = 500_000  # the kernel's bounds for a PSI trigger window
_WINDOW_MAX_US: Final = 10_000_000
_UNPRIVILEGED_WINDOW_US: Final = 2_000_000


class GroupEventKind(Enum):
    """What happened to a group."""

    #: The group hit its memory limit and reclaim failed (the OOM killer was invoked).
    OOM = "oom"
    #: The OOM killer killed a process of the group.
    OOM_KILL = "oom_kill"
    #: Usage went over ``memory.high`` (the group was throttled and reclaimed; v2 only).
    MEMORY_HIGH = "memory_high"
    #: Usage reached ``memory.max`` (reclaim was forced; v2 only).
    MEMORY_MAX = "memory_max"
    #: Every process of the group is frozen (the v2 freezer).
    FROZEN = "frozen"
    #: The group runs again after being frozen.
    THAWED = "thawed"
    #: A pressure trigger's threshold was crossed.
    PRESSURE = "pressure"


_COUNTED: Final = {  # memory.events keys
    GroupEventKind.OOM: "oom",
    GroupEventKind.OOM_KILL: "oom_kill",
    GroupEventKind.MEMORY_HIGH: "high",
    GroupEventKind.MEMORY_MAX: "max",
}
_MEMORY_KINDS: Final = frozenset(_COUNTED)
_FREEZER_KINDS: Final = frozenset({GroupEventKind.FROZEN, GroupEventKind.THAWED})


class PressureResource(Enum):
    """What a pressure trigger measures: time stalled waiting for the CPU, memory or I/O."""

    CPU = "cpu"
    MEMORY = "memory"
    IO = "io"


@dataclass(frozen=True)
class PressureTrigger:
    """A PSI threshold: report when the group's tasks stalled on *resource* for
    *stall* seconds within a *window* of seconds.

    With ``full=False`` ("some") the time at least one task stalled counts; with
    ``full=True`` the time all non-idle tasks stalled at once (not for CPU
    outside a cgroup).  The kernel takes windows of 0.5 to 10 s; a process
    without ``CAP_SYS_RESOURCE`` only multiples of 2 s (and the event can come
    up to 2 s late).  A trigger fires at most once per window.
    """

    resource: PressureResource
    stall: float
    window: float = 2.0
    full: bool = False

    def __post_init__(self) -> None:
        try:
            object.__setattr__(self, "resource", PressureResource(getattr(self.resource, "value", self.resource)))
        except ValueError:
            choices = ", ".join(r.value for r in PressureResource)
            raise ConfigError(
                f"pressure trigger resource: `{self.resource}` is not one of {choices}", what="resource"
            ) from None
        for name in ("stall", "window"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
                raise ConfigError(f"pressure trigger {name}: `{value!r}` is not a number of seconds", what=name)
        if not _WINDOW_MIN_US <= self.window * 1_000_000 <= _WINDOW_MAX_US or self.window_us > _WINDOW_MAX_US:
            raise ConfigError(
                f"pressure trigger window: `{self.window:g}` s is outside the kernel's 0.5 to 10 s", what="window"
            )
        if not 0 < self.stall <= self.window or not 0 < self.stall_us <= self.window_us:
            raise ConfigError(
                f"pressure trigger stall: `{self.stall:g}` s must be more than 0 and at most the window "
                f"({self.window:g} s)",
                what="stall",
            )

    @property
    def stall_us(self) -> int:
        """The stall threshold in microseconds."""
        return round(self.stall * 1_000_000)

    @property
    def window_us(self) -> int:
        """The window in microseconds."""
        return round(self.window * 1_000_000)

    @property
    def file_name(self) -> str:
        """The group's pressure file the trigger is written to (``memory.pressure``...)."""
        return f"{self.resource.value}.pressure"

    def render(self) -> str:
        """The text written to the pressure file: ``some 150000 1000000``."""
        return f"{'full' if self.full else 'some'} {self.stall_us} {self.window_us}"


@dataclass(frozen=True)
class GroupEvent:
    """One event of a group: its kind, the counter after it (for the counted kinds:
    OOM, OOM kill, memory.high, memory.max; cumulative since the watch's baseline),
    and for :attr:`GroupEventKind.PRESSURE` the trigger that fired."""

    kind: GroupEventKind
    count: int | None = None
    trigger: PressureTrigger | None = None


@dataclass
class _Psi:
    trigger: PressureTrigger
    file_fd: int
    poller: select.epoll
    fired: bool = False


@dataclass
class _Baseline:
    counters: dict[GroupEventKind, int] = field(default_factory=dict)
    frozen: int = 0


class GroupEventWatch:
    """The descriptors that signal a group's events, and what they signalled.

    *kinds* (default: every kind the host can deliver for this group, but
    :attr:`~GroupEventKind.PRESSURE`, which needs *pressure* triggers) asked for
    explicitly and not deliverable raise :class:`~nsprim.errors.UnsupportedError`
    naming the event; the registration is all or nothing.  Counters start from
    their values now, or from zero with *from_zero* (a group made for what is
    watched, whose every event is of interest).  A context manager: the
    descriptors (and the kernel's registrations) go on exit.
    """

    def __init__(
        self,
        group: LocatedGroup,
        kinds: Iterable[GroupEventKind] | None = None,
        pressure: Sequence[PressureTrigger] = (),
        *,
        from_zero: bool = False,
    ) -> None:
        self.group = group
        self._files: dict[Path, int] = {}  # the v2 files watched, held open
        self._files_poller: select.epoll | None = None
        self._eventfd = -1
        self._oom_control = -1
        self._psi: dict[int, _Psi] = {}
        self._oom_notices = 0
        self._follow_up_until = 0.0
        self._base = _Baseline()
        self._closed = False
        for t in pressure:
            if not isinstance(t, PressureTrigger):
                raise ConfigError(f"pressure: `{t!r}` is not a PressureTrigger", what="pressure")
        wanted = self._wanted(kinds, pressure)
        self.kinds: frozenset[GroupEventKind] = wanted
        try:
            self._open(wanted, pressure, from_zero)
        except BaseException:
            self.close()
            raise

    # ---- what the host delivers ------------------------------------------------------

    @staticmethod
    def deliverable(group: LocatedGroup) -> dict[GroupEventKind, str | None]:
        """Each kind, and None if *group* can deliver it here, else why not."""
        why: dict[GroupEventKind, str | None] = {}
        mode = group.host.mode.value
        memory = group.locate(Controller.MEMORY)
        for kind in _MEMORY_KINDS:
            if memory is None:
                why[kind] = f"the group has no memory controller (host mode: {mode})"
            elif memory[0] == 2:
                why[kind] = None if (memory[1] / "memory.events").exists() else "no memory.events (kernel too old)"
            elif kind in (GroupEventKind.OOM, GroupEventKind.OOM_KILL):
                why[kind] = None if (memory[1] / "cgroup.event_control").exists() else "no cgroup.event_control"
            elif kind is GroupEventKind.MEMORY_HIGH:
                why[kind] = f"the memory controller is cgroup v1's, which has no memory.high (host mode: {mode})"
            else:
                why[kind] = f"cgroup v1's memory.failcnt does not notify (host mode: {mode})"
        u = group.unified_dir
        freezer = None
        if u is None:
            freezer = f"only the v2 freezer notifies, and the group is in no v2 tree (host mode: {mode})"
        elif "frozen" not in (files.try_read_text(u / "cgroup.events") or ""):
            freezer = "the group's cgroup.events has no frozen key (kernel too old)"
        for kind in _FREEZER_KINDS:
            why[kind] = freezer
        if u is None:
            why[GroupEventKind.PRESSURE] = f"pressure files are cgroup v2's, and the group is in no v2 tree ({mode})"
        elif not Path("/proc/pressure").is_dir():
            why[GroupEventKind.PRESSURE] = "the kernel does not account pressure (no /proc/pressure: psi=0?)"
        else:
            why[GroupEventKind.PRESSURE] = None
        return why

    def _wanted(
        self, kinds: Iterable[GroupEventKind] | None, pressure: Sequence[PressureTrigger]
    ) -> frozenset[GroupEventKind]:
        why = self.deliverable(self.group)
        if kinds is None:
            wanted: set[GroupEventKind] = {
                k for k, reason in why.items() if reason is None and k is not GroupEventKind.PRESSURE
            }
            if pressure:
                wanted.add(GroupEventKind.PRESSURE)
        else:
            wanted = set()
            for k in kinds:
                if not isinstance(k, GroupEventKind):
                    raise ConfigError(f"kinds: `{k!r}` is not a GroupEventKind", what="kinds")
                wanted.add(k)
            if GroupEventKind.PRESSURE in wanted and not pressure:
                raise ConfigError("kinds: pressure events need pressure triggers (pressure=...)", what="pressure")
            if pressure and GroupEventKind.PRESSURE not in wanted:
                raise ConfigError("pressure triggers given, but kinds leaves out pressure events", what="kinds")
        for k in sorted(wanted, key=lambda k: k.value):
            reason = why[k]
            if reason is not None:
                raise UnsupportedError(
                    f"events: `{k.value}` cannot be delivered for `{self.group.path}`: {reason}", feature=k.value
                )
        return frozenset(wanted)

    # ---- opening -----------------------------------------------------------------------

    def _open(self, wanted: frozenset[GroupEventKind], pressure: Sequence[PressureTrigger], from_zero: bool) -> None:
        memory = self.group.locate(Controller.MEMORY) if wanted & _MEMORY_KINDS else None
        u = self.group.unified_dir
        watched: list[Path] = []
        if u is not None and (u / "cgroup.events").exists():
            watched.append(u / "cgroup.events")  # also wakes on populated changes, which a waiter may want
        if memory is not None and memory[0] == 2:
            watched.append(memory[1] / "memory.events")
        if watched:
            self._files_poller = select.epoll()
            for p in watched:
                try:
                    self._files[p] = fd = os.open(p, os.O_RDONLY | os.O_CLOEXEC)
                except OSError as exc:
                    raise SyscallError(exc.errno or errno.EIO, "open", p, detail=f"open `{p}`") from None
                os.pread(fd, 4096, 0)  # what is read is what a change is measured against
                self._files_poller.register(fd, select.EPOLLPRI)
        if memory is not None and memory[0] == 1:
            self._register_v1_oom(memory[1])
        if not from_zero:
            self._base = self._read_baseline()
        for t in pressure:
            assert u is not None  # deliverable() said so
            self._add_trigger(u, t)

    def _register_v1_oom(self, d: Path) -> None:
        self._eventfd = os.eventfd(0, os.EFD_CLOEXEC | os.EFD_NONBLOCK)
        path = d / "memory.oom_control"
        try:
            self._oom_control = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
        except OSError as exc:
            raise SyscallError(exc.errno or errno.EIO, "open", path, detail=f"open `{path}`") from None
        files.write_text(d / "cgroup.event_control", f"{self._eventfd} {self._oom_control}")

    def _add_trigger(self, u: Path, t: PressureTrigger) -> None:
        path = u / t.file_name
        try:
            fd = os.open(path, os.O_RDWR | os.O_NONBLOCK | os.O_CLOEXEC)
        except OSError as exc:
            raise SyscallError(exc.errno or errno.EIO, "open", path, detail=f"open `{path}`") from None
        try:
            try:
                os.write(fd, t.render().encode() + b"\0")
            except OSError as exc:
                hint = None
                if exc.errno == errno.EINVAL and t.window_us % _UNPRIVILEGED_WINDOW_US and not _can_sys_resource():
                    hint = "without CAP_SYS_RESOURCE the kernel takes only windows that are multiples of 2 s"
                elif exc.errno == errno.EOPNOTSUPP:
                    hint = "pressure accounting is off for this group (cgroup.pressure is 0)"
                raise SyscallError(
                    exc.errno or errno.EIO, "write", path, detail=f"write `{t.render()}` to `{path}`", hint=hint
                ) from None
            poller = select.epoll()
        except BaseException:
            os.close(fd)
            raise
        try:
            poller.register(fd, select.EPOLLPRI)
        except BaseException:
            poller.close()
            os.close(fd)
            raise
        self._psi[poller.fileno()] = _Psi(t, fd, poller)

    # ---- reading -----------------------------------------------------------------------

    @property
    def fds(self) -> tuple[int, ...]:
        """The descriptors to wait on: each becomes readable when there may be events."""
        fds = [self._files_poller.fileno()] if self._files_poller is not None else []
        if self._eventfd >= 0:
            fds.append(self._eventfd)
        return (*fds, *self._psi)

    def on_ready(self, fd: int) -> bool:
        """Note that *fd* (one of :attr:`fds`) was seen readable, and consume what made it
        so (a readable descriptor the caller's loop keeps watching must not stay readable);
        False if it has nothing more to say (the group went away): stop watching it."""
        if self._files_poller is not None and fd == self._files_poller.fileno():
            # Reading re-arms the files; collect() reads them again for their values.
            return all(self._read_keyed(p) for p in self._files)
        if fd == self._eventfd:
            with contextlib.suppress(BlockingIOError):
                self._oom_notices += os.eventfd_read(fd)
            return True
        psi = self._psi.get(fd)
        if psi is not None:
            u = self.group.unified_dir
            if u is None or not u.exists():  # a destroyed trigger reads as always ready
                return False
            psi.fired = True  # the check that reported it consumed the kernel's flag
            return True
        return False

    @property
    def recheck_after(self) -> float | None:
        """Seconds after which :meth:`collect` should run again even if no descriptor became
        readable (a v1 OOM kill follows its notice unannounced); None: only on readiness."""
        if self._follow_up_until and time.monotonic() < self._follow_up_until:
            return _V1_KILL_RECHECK
        return None

    def collect(self) -> list[GroupEvent]:
        """The events since the last call (after :meth:`on_ready` was told what was ready)."""
        events: list[GroupEvent] = []
        if self._closed:
            return events
        new_notices = self._oom_notices - self._base.counters.get(GroupEventKind.OOM, 0)
        memory = self.group.locate(Controller.MEMORY) if self.kinds & _MEMORY_KINDS else None
        # The eventfd is also signalled when the group is removed: a notice then is no OOM.
        if memory is not None and memory[0] == 1 and new_notices > 0 and memory[1].exists():
            self._base.counters[GroupEventKind.OOM] = self._oom_notices
            if GroupEventKind.OOM in self.kinds:
                events.append(GroupEvent(GroupEventKind.OOM, self._oom_notices))
            self._follow_up_until = time.monotonic() + _V1_KILL_FOLLOW_UP
        counters = self._read_counters(memory)
        for kind in (
            GroupEventKind.OOM,
            GroupEventKind.MEMORY_MAX,
            GroupEventKind.MEMORY_HIGH,
            GroupEventKind.OOM_KILL,
        ):
            value = counters.get(kind)
            if value is not None and value > self._base.counters.get(kind, 0):
                self._base.counters[kind] = value
                if kind in self.kinds:
                    events.append(GroupEvent(kind, value))
        frozen = self._read_frozen()
        if frozen is not None and frozen != self._base.frozen:
            self._base.frozen = frozen
            kind = GroupEventKind.FROZEN if frozen else GroupEventKind.THAWED
            if kind in self.kinds:
                events.append(GroupEvent(kind))
        for psi in self._psi.values():
            if psi.fired:
                psi.fired = False
                events.append(GroupEvent(GroupEventKind.PRESSURE, trigger=psi.trigger))
        return events

    def _read_counters(self, memory: tuple[int, Path] | None) -> dict[GroupEventKind, int]:
        if memory is None:
            return {}
        version, d = memory
        if version == 2:
            e = self._read_keyed(d / "memory.events")
            return {k: e[key] for k, key in _COUNTED.items() if key in e}
        kills = self._read_keyed(d / "memory.oom_control").get("oom_kill")
        return {} if kills is None else {GroupEventKind.OOM_KILL: kills}

    def _read_frozen(self) -> int | None:
        u = self.group.unified_dir
        if u is None or not self.kinds & _FREEZER_KINDS:
            return None
        return self._read_keyed(u / "cgroup.events").get("frozen")

    def _read_baseline(self) -> _Baseline:
        memory = self.group.locate(Controller.MEMORY) if self.kinds & _MEMORY_KINDS else None
        return _Baseline(dict(self._read_counters(memory)), self._read_frozen() or 0)

    def _read_keyed(self, path: Path) -> dict[str, int]:
        """A flat-keyed file (through the descriptor held for it, if any), or nothing once the group is gone."""
        fd = self._files.get(path)
        if fd is None:
            return _read_keyed(path)
        try:
            return _parse_keyed(os.pread(fd, 65536, 0).decode())
        except OSError as exc:
            if exc.errno not in (errno.ENODEV, errno.ENOENT):  # a file of a group being removed
                raise SyscallError(exc.errno or errno.EIO, "read", path) from None
            return {}

    # ---- waiting, blocking -------------------------------------------------------------

    def wait(self, timeout: float | None = None) -> list[GroupEvent]:
        """Block until there are events or *timeout* seconds pass (None: forever); the events
        (empty after a timeout)."""
        deadline = None if timeout is None else time.monotonic() + timeout
        poller = select.poll()
        for fd in self.fds:
            poller.register(fd, select.POLLIN)
        while True:
            left = None if deadline is None else max(0.0, deadline - time.monotonic())
            step = self.recheck_after
            if step is None or (left is not None and left < step):
                step = left
            ready = poller.poll(None if step is None else int(step * 1000 + 0.999))
            for fd, _mask in ready:
                if not self.on_ready(fd):
                    poller.unregister(fd)
            events = self.collect()
            if events or (deadline is not None and time.monotonic() >= deadline):
                return events

    # ---- lifetime ----------------------------------------------------------------------

    def close(self) -> None:
        """Close every descriptor (the kernel drops its registrations with them)."""
        self._closed = True
        for psi in self._psi.values():
            psi.poller.close()
            os.close(psi.file_fd)
        self._psi.clear()
        if self._files_poller is not None:
            self._files_poller.close()
            self._files_poller = None
        for fd in self._files.values():
            os.close(fd)
        self._files.clear()
        for name in ("_eventfd", "_oom_control"):
            fd = getattr(self, name)
            if fd >= 0:
                os.close(fd)
                setattr(self, name, -1)

    def __enter__(self) -> GroupEventWatch:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __del__(self) -> None:
        with contextlib.suppress(Exception):
            self.close()


def _read_keyed(path: Path) -> dict[str, int]:
    """A flat-keyed file, or nothing once the group is gone."""
    try:
        text = files.try_read_text(path)
    except SyscallError as exc:
        if exc.errno != errno.ENODEV:  # a file of a group being removed
            raise
        return {}
    return _parse_keyed(text or "")


def _parse_keyed(text: str) -> dict[str, int]:
    out: dict[str, int] = {}
    for line in text.splitlines():
        key, _, value = line.partition(" ")
        with contextlib.suppress(ValueError):
            out[key] = int(value)
    return out


def _can_sys_resource() -> bool:
    with contextlib.suppress(OSError, ValueError):
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("CapEff:"):
                return bool(int(line.split()[1], 16) >> _CAP_SYS_RESOURCE & 1)
    return False
