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
is :data:`~nsprim.container.pool.MAX_BACKLOG` removals behind, ``run()`` removes its group itself.
The pool applies where it can: network namespaces only for containers that
create one and no user namespace (a user namespace must own its network
namespace, so it cannot be made before it); cgroups only for an unnamed,
attached container started as root.  Everything else starts as usual.  The
prepared cgroups are registered with the cleanup watcher like any
container's: if this process dies, they are removed.
"""

from __future__ import annotations

import os
from types import TracebackType

from ..errors import ConfigError
from .host import create_cgroup
from .pool import MAX_BACKLOG, Supply, root_preparer
from .runnable import Runnable

TYPE_CHECKING = False  # (typing itself is not imported)
if TYPE_CHECKING:
    from .config import ContainerConfig

__all__ = ["WarmContainer", "MAX_BACKLOG"]


class WarmContainer(Runnable):
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
        config.validate()
        self.config = config
        self._supply = Supply(config, size, lambda name: create_cgroup(name, config, watch=True), root_preparer(config))

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

    def _prepared_supply(self) -> Supply | None:
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
