"""Warm containers: what every start of a template needs, made ahead of time.

Three things a container start pays for do not depend on the container's
processes: its network namespace (the most expensive namespace to create: the
loopback device and the per-namespace tables, about 0.4 ms here), the first
part of its root file system (the overlay, ``/sys`` and ``/dev``: nothing in
them depends on the pid namespace) and its cgroup (a directory in each
hierarchy, and the limits).  A :class:`WarmContainer` keeps a few of each
ready, made by a background thread, so that a start joins a fresh, never used
network namespace and a mount namespace with that part of the root already
mounted (two ``setns``), and takes a group whose limits are already in place,
as serverless platforms keep warm sandboxes.  Every container still gets its
own namespaces, root and cgroup; nothing is reused.  The root is made by a
short-lived child cloned into a new mount namespace inside the prepared
network namespace, running the same plan steps a start would
(:meth:`RootFS.prepare_steps <nsprim.fs.rootfs.RootFS.prepare_steps>`); the start
runs the rest (``/proc``, masks, cgroup file systems, ``pivot_root``...).

The same thread removes the cgroups of ended containers, after their
statistics were read: ``run()`` returns without waiting for the ``rmdir``
calls, and the groups go within moments (or when the pool is closed, which
waits for them).  The thread runs only when a CPU is otherwise idle: while it
is :data:`MAX_BACKLOG` removals behind, ``run()`` removes its group itself.
The pool applies where it can: network namespaces only for containers that
create one and no user namespace (a user namespace must own its network
namespace, so it cannot be made before it); cgroups only for an unnamed,
attached container started as root.  Everything else starts as usual.  The
prepared cgroups are registered with the cleanup watcher like any
container's: if this process dies, they are removed.
"""

from __future__ import annotations

import atexit
import contextlib
import os
import secrets
import threading
import weakref
from collections import deque
from collections.abc import Callable
from types import TracebackType
from typing import TYPE_CHECKING, Any, TypeVar

from .. import _sys
from ..errors import ConfigError, NsprimError
from ..namespace import NamespaceType

if TYPE_CHECKING:
    from ..cgroup import CGroup
    from .config import ContainerConfig
    from .running import ContainerResult, RunningContainer

__all__ = ["WarmContainer"]

T = TypeVar("T")

_live: weakref.WeakSet[_Supply] = weakref.WeakSet()

#: Ended containers whose cleanup a pool's thread may owe at most; past it, ``run()`` cleans up itself.
MAX_BACKLOG = 16


class _Supply:
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
                    cg = self._make_cgroup(f"nsprim-{secrets.token_hex(6)}")
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


def _root_preparer(config: ContainerConfig) -> Callable[[int], tuple[int, int]] | None:
    """For a container with a root of its own in a new mount namespace: a function that makes the
    first part of that root (the overlay, ``/sys``, ``/dev``) in a new mount namespace, in the given
    network namespace, and returns descriptors of it and of the root directory to use in it."""
    if config.root is None or NamespaceType.MNT not in config.namespaces or config.join:
        return None
    from ..lowlevel import start
    from ..plan import Plan, SetNs
    from .build import prepare_plan
    from .running import ready_state_dir

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
    from .running import remove_group

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


class WarmContainer:
    """A container template whose starts take a network namespace and a cgroup made ahead of time.

    Made with :meth:`Container.warm() <nsprim.container.Container.warm>`; use
    it as a context manager (or call :meth:`close`): on exit the background
    thread stops and what it prepared and no container used is removed.
    :meth:`run` and :meth:`start` are those of :class:`~nsprim.container.Container`.

    >>> from nsprim.container import Container
    >>> with Container(["true"]).host_root().warm(2) as box:
    ...     [box.run().returncode for _ in range(3)]
    [0, 0, 0]
    """

    def __init__(self, config: ContainerConfig, size: int = 2) -> None:
        if isinstance(size, bool) or not isinstance(size, int) or size < 1:
            raise ConfigError(f"warm: the pool size must be a positive number, not `{size!r}`", what="warm")
        from .running import _create_cgroup

        config.validate()
        self.config = config
        self._supply = _Supply(
            config, size, lambda name: _create_cgroup(name, config, watch=True), _root_preparer(config)
        )

    @property
    def hits(self) -> int:
        """How many prepared namespaces and cgroups starts have taken."""
        return self._supply.hits

    @property
    def misses(self) -> int:
        """How many times a start found none ready (it then made its own)."""
        return self._supply.misses

    @property
    def error(self) -> BaseException | None:
        """Why the background thread stopped preparing, if it failed (starts then make their own)."""
        return self._supply.error

    def start(self, **stdio: Any) -> RunningContainer:
        """Start one container (see :meth:`Container.start <nsprim.container.Container.start>`)."""
        from .running import start_container

        return start_container(self.config, warm=self._usable(), **stdio)

    def run(
        self, *, capture_output: bool = False, input: bytes | None = None, timeout: float | None = None, **stdio: Any
    ) -> ContainerResult:
        """Run one container to completion (see :meth:`Container.run <nsprim.container.Container.run>`)."""
        from .running import run_container

        return run_container(
            self.config, capture_output=capture_output, input=input, timeout=timeout, warm=self._usable(), **stdio
        )

    def _usable(self) -> _Supply | None:
        s = self._supply
        if s.owner != os.getpid():  # a forked child starts containers the ordinary way
            return None
        return s

    def close(self) -> None:
        """Stop preparing; remove the prepared namespaces and cgroups no container took."""
        if self._supply.owner == os.getpid():
            self._supply.close()

    def __enter__(self) -> WarmContainer:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"<WarmContainer {list(self.config.argv)!r} size={self._supply.size} hits={self.hits}>"
