"""The supply behind a warm pool: network namespaces, prepared roots and cgroups made ahead.

A :class:`Supply` belongs to one :class:`~nsprim.container.warm.WarmContainer`;
its thread makes what starts take and disposes of what ended containers
leave (see :mod:`nsprim.container.warm` for what is prepared and when).
"""

from __future__ import annotations

import atexit
import contextlib
import os
import threading
import weakref
from collections import deque
from collections.abc import Callable
from typing import TYPE_CHECKING, TypeVar

from .. import _sys
from ..errors import NsprimError
from ..namespace import NamespaceType
from .host import ready_state_dir, remove_group

if TYPE_CHECKING:
    from ..cgroup import CGroup
    from .config import ContainerConfig

__all__ = ["Supply", "MAX_BACKLOG", "root_preparer"]

T = TypeVar("T")

_live: weakref.WeakSet[Supply] = weakref.WeakSet()

#: Ended containers whose cleanup a pool's thread may owe at most; past it, ``run()`` cleans up itself.
MAX_BACKLOG = 16


class Supply:
    """The prepared network namespaces and cgroups of one configuration, and the thread that makes them."""

    def __init__(
        self,
        config: ContainerConfig,
        size: int,
        make_cgroup: Callable[[str], CGroup],
        prepare_root: Callable[[int], tuple[int, int]] | None = None,
    ) -> None:
        ns = config.namespaces
        joins = {t for t, _p in config.join}
        self.wants_netns = (
            NamespaceType.NET in ns and NamespaceType.USER not in ns and NamespaceType.NET not in joins
        ) and os.geteuid() == 0
        self.wants_cgroups = os.geteuid() == 0 and config.name is None and not config.detach
        self.size = size
        self._make_cgroup = make_cgroup
        # A root made ahead needs the network namespace it is made in (for /sys).
        self._prepare_root = prepare_root if self.wants_netns else None
        # (network namespace, prepared mount namespace, its root directory); -1 without a prepared root
        self._netns: deque[tuple[int, int, int]] = deque()
        self._cgroups: deque[CGroup] = deque()
        # Ended containers' groups to remove and prepared mount namespaces to close (-1: none).
        self._finished: deque[tuple[CGroup | None, int]] = deque()
        self._cond = threading.Condition()
        self._closed = False
        self.error: BaseException | None = None
        self.owner = os.getpid()
        self.hits = 0
        self.misses = 0
        self.alive = True  # the thread runs (until close() or a failure)
        self._thread: threading.Thread | None = None
        if self.wants_netns or self.wants_cgroups:
            self._thread = threading.Thread(target=self._fill, name="nsprim-warm", daemon=True)
            self._thread.start()
        _live.add(self)

    # ---- the background thread --------------------------------------------------

    def _short(self) -> tuple[bool, bool]:
        return (
            self.wants_netns and len(self._netns) < self.size,
            self.wants_cgroups and len(self._cgroups) < self.size,
        )

    def _fill(self) -> None:
        # Second to every other thread: this work must not take a CPU from a start in progress (with a
        # non-preemptible kernel, a waking start would wait for a namespace creation to finish).
        with contextlib.suppress(OSError, AttributeError):
            os.sched_setscheduler(0, os.SCHED_IDLE, os.sched_param(0))
        while True:
            with self._cond:
                while not self._closed and not any(self._short()) and not self._finished:
                    self._cond.wait()
                if self._closed:
                    return
                need_ns, need_cg = self._short()
                done = self._finished.popleft() if self._finished else None
            try:
                # What the next start waits for comes first; removals after.
                if need_ns:
                    self._offer_netns(self._make_namespaces())
                if need_cg:
                    cg = self._make_cgroup(f"nsprim-{os.urandom(6).hex()}")
                    self._offer_cgroup(cg)
            except BaseException as exc:  # keep the reason; starts go on without the pool
                with self._cond:
                    self.error = exc
                    self.wants_netns = self.wants_cgroups = False
                    self.alive = False
                    if done is not None:
                        self._finished.appendleft(done)  # for close()
                return
            if done is not None:
                try:
                    _dispose(done)
                except BaseException as exc:  # a group that would not go: the watcher removes it at our exit
                    with self._cond:
                        self.error = exc

    def _make_namespaces(self) -> tuple[int, int, int]:
        net = _sys.netns_new()
        if self._prepare_root is None:
            return net, -1, -1
        try:
            return (net, *self._prepare_root(net))
        except BaseException:
            os.close(net)
            raise

    def _offer_netns(self, fds: tuple[int, int, int]) -> None:
        with self._cond:
            if not self._closed:
                self._netns.append(fds)
                return
        _close_fds(fds)

    def _offer_cgroup(self, cg: CGroup) -> None:
        with self._cond:
            if not self._closed:
                self._cgroups.append(cg)
                return
        _remove(cg)

    # ---- the starting side -------------------------------------------------------------

    def take_namespaces(self) -> tuple[int, int, int] | None:
        """Descriptors of a ready network namespace, prepared mount namespace and its root
        directory (-1, -1 without a prepared root; the caller closes them), or None."""
        return self._take(self._netns, self.wants_netns)

    def take_cgroup(self) -> CGroup | None:
        """A ready cgroup (registered with the watcher; the caller deletes it), or None."""
        return self._take(self._cgroups, self.wants_cgroups)

    def _take(self, ready: deque[T], wanted: bool) -> T | None:
        """The oldest of *ready*, counted as a hit (and the thread told to make another), or None:
        a miss when the pool makes such things."""
        with self._cond:
            if not ready:
                if wanted:
                    self.misses += 1
                return None
            self.hits += 1
            self._cond.notify()
            return ready.popleft()

    def finished(self, cg: CGroup | None, mntns_fd: int = -1) -> bool:
        """Hand over what an ended container used: its (watched) group to remove, its
        prepared mount namespace to close (the thread then takes its mounts down).

        False if the thread is not running, or is this far behind: the caller disposes of
        them itself.  The thread runs only on an otherwise idle CPU; on a busy machine it may
        not run at all, and what it owes must stay bounded (starts are then cold ones).
        """
        with self._cond:
            if self._closed or not self.alive or self._thread is None or len(self._finished) >= MAX_BACKLOG:
                return False
            self._finished.append((cg, mntns_fd))
            self._cond.notify()
            return True

    def close(self) -> None:
        """Stop the thread; close the namespaces, delete the groups not handed out and those handed back."""
        with self._cond:
            self._closed = True
            self._cond.notify_all()
        if self._thread is not None and self._thread is not threading.current_thread():
            self._thread.join()
        while self._netns:
            _close_fds(self._netns.popleft())
        errors: list[BaseException] = []
        while self._finished or self._cgroups:
            try:
                if self._finished:
                    _dispose(self._finished.popleft())
                else:
                    _remove(self._cgroups.popleft())
            except BaseException as exc:
                errors.append(exc)
        _live.discard(self)
        if errors:
            raise errors[0]

    def forget_after_fork(self) -> None:
        """In a forked child: the thread is gone and the groups are the parent's; drop our copies."""
        self._closed = True
        self._thread = None
        while self._netns:
            with contextlib.suppress(OSError):
                _close_fds(self._netns.popleft())
        self._cgroups.clear()
        while self._finished:
            fd = self._finished.popleft()[1]
            if fd >= 0:
                with contextlib.suppress(OSError):
                    os.close(fd)


def _close_fds(fds: tuple[int, ...]) -> None:
    for fd in fds:
        if fd >= 0:
            os.close(fd)


def root_preparer(config: ContainerConfig) -> Callable[[int], tuple[int, int]] | None:
    """For a container with a root of its own in a new mount namespace: a function that makes the
    first part of that root (the overlay, ``/sys``, ``/dev``) in a new mount namespace, in the given
    network namespace, and returns descriptors of it and of the root directory to use in it."""
    if config.root is None or NamespaceType.MNT not in config.namespaces or config.join:
        return None
    from ..lowlevel import start
    from ..plan import Plan, SetNs
    from .build import prepare_plan

    state = ready_state_dir(config)
    plan = prepare_plan(config, state)
    flags = _sys.C.CLONE_NEWNS | _sys.C.CLONE_FILES

    def prepare(netns_fd: int) -> tuple[int, int]:
        proc = start(plan, prefix=Plan((SetNs(netns_fd, NamespaceType.NET.flag),)), clone_flags=flags, keep_fds=2)
        with proc:
            status = proc.wait()
        mnt, root = proc.kept_fds
        if status != 0 or mnt < 0 or root < 0:  # cannot happen: a failed step raises in start()
            _close_fds((mnt, root))
            raise NsprimError(f"preparing a root: the child exited with {status}")
        return mnt, root

    return prepare


def _dispose(done: tuple[CGroup | None, int]) -> None:
    """Close an ended container's mount namespace (its mounts go), then remove its group."""
    cg, fd = done
    if fd >= 0:
        os.close(fd)
    if cg is not None:
        _remove(cg)


def _remove(cg: CGroup) -> None:
    """Delete a group (prepared and unused, or of an ended container) and drop its watcher registration."""
    remove_group(cg)


def _after_fork_in_child() -> None:
    for supply in list(_live):
        supply.forget_after_fork()


def _close_all_at_exit() -> None:
    """A pool not closed by its owner: stop its thread and remove what it holds before the
    interpreter goes (the watcher would remove the groups anyway, once this process is gone)."""
    for supply in list(_live):
        if supply.owner == os.getpid():
            with contextlib.suppress(Exception):
                supply.close()


os.register_at_fork(after_in_child=_after_fork_in_child)
atexit.register(_close_all_at_exit)
