"""The host side of one container: made before its plan starts, released in reverse order."""

from __future__ import annotations

import contextlib
import os
from pathlib import Path

from .._sys import watcher
from ..cgroup import CGroup, format_size
from ..errors import ConfigError, NsprimError, StepError
from ..namespace import Namespace, NamespaceType
from .config import ContainerConfig, Network, Veth
from .host import create_cgroup, create_delegated_cgroup, ready_state_dir, remove_group, state_dir
from .procview import ProcView, view_directory

TYPE_CHECKING = False  # (typing itself is not imported)
if TYPE_CHECKING:
    from .pool import Supply
    from .registry import Registration
    from .veth import VethLink

__all__ = ["Preparation", "name_the_memory_limit"]


class Preparation:
    """Host-side resources of one container, released in reverse order."""

    def __init__(self, config: ContainerConfig, warm: Supply | None = None) -> None:
        self.config = config
        self.warm = warm
        self.id = config.name or f"nsprim-{os.urandom(6).hex()}"
        self.state: Path | None = None
        self.cgroup: CGroup | None = None
        self.watching = True  # registered with the cleanup watcher (a detached one until its monitor owns it)
        self.registration: Registration | None = None  # a detached container's entry
        self.handed_over = False  # a detached container's monitor owns its cgroup and entry
        self.namespaces: list[Namespace] = []
        self.proc_view: ProcView | None = None
        self.watched_pid: int | None = None  # registered with the watcher (no cgroup to do it)
        self.mntns_fd = -1  # a warm pool's prepared mount namespace, held until the end
        self.veth: VethLink | None = None  # network("veth"): the pair, linked by the plan's parent action

    def setup(self) -> None:
        cfg = self.config
        if os.geteuid() != 0 and cfg.resources is not None and cfg.resources.controllers():
            # Without root, limits need a group the caller may write: enforced there, or refused here
            # before anything is made.  Never a container without them.
            self.cgroup = create_delegated_cgroup(self.id, cfg, watch=self.watching)
        for t, path in cfg.join:
            self.namespaces.append(Namespace.from_path(path, t))
        if cfg.network is Network.VETH and NamespaceType.NET in cfg.namespaces:
            from .veth import VethLink

            self.veth = VethLink(cfg.veth or Veth(), state_dir())
        if cfg.root is not None:
            # Shared by every container: each child covers it with a tmpfs of
            # its own, so nothing per container is made (or left) on the host.
            self.state = ready_state_dir(cfg)
        if cfg.detach:
            from .registry import Registration

            registration = Registration(self.id)
            registration.create()  # a name in use is refused here, and that entry is not ours
            self.registration = registration
        if os.geteuid() == 0:
            ready = self.warm.take_cgroup() if self.warm is not None else None
            if ready is not None:  # made ahead, limits applied, already watched
                self.cgroup, self.id = ready, ready.name
            else:
                self.cgroup = create_cgroup(self.id, cfg, watch=self.watching)
        if cfg.proc_view:
            if self.cgroup is None:
                raise ConfigError("a /proc view needs the container's cgroup (run as root)", what="proc_view")
            self.proc_view = ProcView(view_directory(state_dir(), self.id), self.cgroup, watch=self.watching)
            self.proc_view.create()

    def watch_pid(self, pid: int) -> None:
        """Have the cleanup watcher kill *pid* if this process dies (a container without a cgroup)."""
        watcher.watch_pid(pid)
        self.watched_pid = pid

    def release(self) -> None:
        errors: list[BaseException] = []
        for ns in self.namespaces:
            ns.close()
        if self.registration is not None and not self.handed_over:
            self.registration.abandon()
        self.registration = None
        if self.veth is not None:
            try:  # its /30 is free again; a detached container's when its network namespace goes
                self.veth.remove(keep_address=self.handed_over)
            except BaseException as exc:
                errors.append(exc)
        if self.proc_view is not None:
            try:
                self.proc_view.remove()
            except BaseException as exc:
                errors.append(exc)
            self.proc_view = None
        if self.watched_pid is not None:
            with contextlib.suppress(NsprimError, OSError):
                watcher.forget_pid(self.watched_pid)
            self.watched_pid = None
        if self.warm is not None and (self.mntns_fd >= 0 or (self.cgroup is not None and self.watching)):
            # The warm pool's thread closes the namespace and removes the group (watched until then);
            # not a named container's group: its name must be free again when run() returns.
            cg = self.cgroup if self.watching and self.config.name is None else None
            if self.warm.finished(cg, self.mntns_fd):
                self.mntns_fd = -1
                if cg is not None:
                    self.cgroup = None
        if self.mntns_fd >= 0:
            os.close(self.mntns_fd)
            self.mntns_fd = -1
        if self.cgroup is not None and not self.handed_over:
            try:
                remove_group(self.cgroup, forget=self.watching)
            except BaseException as exc:
                errors.append(exc)
            self.cgroup = None
        if errors:
            raise errors[0]


def name_the_memory_limit(exc: BaseException, prep: Preparation) -> None:
    """A setup that failed in a group that hit its memory limit (a step refused memory -- as
    ENOMEM, or ENFILE for a socket --, or the OOM killer ended the child) says so, and which
    limit it ran into: the group is the container's own, so the setup hit it."""
    res = prep.config.resources
    limit = res.memory.max if res is not None and res.memory is not None else None
    if not isinstance(exc, StepError) or exc.hint or not isinstance(limit, int) or prep.cgroup is None:
        return
    try:
        events = prep.cgroup.memory_events()
    except (NsprimError, OSError):
        return
    if (events.max or 0) > 0 or events.oom_kill > 0:
        exc.hint = f"out of memory during setup: the container's memory limit is {format_size(limit)}"
