"""The :class:`CGroup` primitive: one logical control group on any host mode.

On a cgroup v2 host a group is one directory.  On a v1 or hybrid host it is
the same relative path in every v1 hierarchy it uses, plus the v2 tree when
mounted (which tracks membership and offers ``cgroup.kill``,
``cgroup.freeze``, ``cgroup.events`` and pressure even with no controllers).
"""

from __future__ import annotations

import contextlib
import errno
import os
from collections.abc import Callable, Iterable, Iterator, Sequence
from pathlib import Path
from types import TracebackType
from typing import Final

from nsprim.cgroup import control, files
from nsprim.cgroup import events as _events
from nsprim.cgroup.events import MemoryEvents, wait_until
from nsprim.cgroup.files import Write
from nsprim.cgroup.host import (
    Controller,
    Hierarchy,
    HostInfo,
    cached_host_info,
    host_info,
    process_cgroups,
    read_v2_controllers,
)
from nsprim.cgroup.naming import validate_name, validate_path
from nsprim.cgroup.resources import Resources
from nsprim.cgroup.tree import enable_v2_controllers, init_cpuset, resource_writes, rmdir_retrying
from nsprim.cgroup.v1 import MemoryNow
from nsprim.errors import CGroupBusyError, CGroupTimeoutError, ConfigError, SyscallError, UnsupportedError

TYPE_CHECKING = False  # the statistics and the event watch: imported by the methods that use them
if TYPE_CHECKING:
    from nsprim.cgroup.stats import Stats
    from nsprim.cgroup.watch import GroupEventKind, GroupEventWatch, PressureTrigger

__all__ = ["CGroup", "CGroupBusyError", "ROOT"]

ROOT: Final = "/"
"""Pass as ``parent`` to create a group directly under each hierarchy's root."""

DEFAULT_V2_CONTROLLERS: Final = frozenset({Controller.CPU, Controller.MEMORY, Controller.PIDS, Controller.IO})
_BUSY: Final = frozenset({errno.EBUSY, errno.EOPNOTSUPP})  # what the no-internal-processes rule answers


class CGroup:
    """A control group, possibly spanning several v1 hierarchies and the v2 tree.

    Build one with :meth:`create`, :meth:`open`, :meth:`from_pid` or
    :meth:`child`.  As a context manager it removes the group on exit
    (killing processes still inside first).

    >>> with CGroup.create("job", parent=ROOT,
    ...                    resources=Resources(memory=MemoryResources(max="256M"))) as cg:  # doctest: +SKIP
    ...     cg.add(pid)
    """

    def __init__(self, dirs: Iterable[tuple[Hierarchy, Path]], info: HostInfo | None = None) -> None:
        """Wrap existing directories; prefer the class methods."""
        self._dirs: tuple[tuple[Hierarchy, Path], ...] = tuple(dirs)
        if not self._dirs:
            raise ConfigError("a cgroup needs at least one hierarchy directory", what="dirs")
        self._info = info if info is not None else cached_host_info()

    # ----------------------------------------------------------------- construction
    @classmethod
    def create(
        cls,
        name: str,
        parent: CGroup | str | None = None,
        resources: Resources | None = None,
        *,
        controllers: Iterable[Controller | str] | None = None,
        exist_ok: bool = False,
        before_mkdir: Callable[[tuple[Path, ...]], object] | None = None,
    ) -> CGroup:
        """Create group *name* under *parent* and apply *resources*.

        *parent* is a :class:`CGroup`, a path relative to each hierarchy's mount point (:data:`ROOT` for
        the roots), or None for the caller's own cgroup in each hierarchy.  *controllers* limits the v1
        hierarchies used and chooses the v2 controllers to enable (default: all v1 hierarchies; on v2 cpu,
        memory, pids and io where offered); those the resources need are always included.  On v2 the
        needed controllers are enabled in each ancestor's ``cgroup.subtree_control``.  On any error
        every directory created so far is removed again.

        *before_mkdir*, if given, is called with every directory of the group before the first one is
        made: to register them with a cleanup that must also cover a process killed half-way (the
        directories may then not all exist).
        """
        validate_name(name)
        resources = resources if resources is not None else Resources()
        if not isinstance(resources, Resources):
            raise ConfigError(f"resources: `{resources!r}` is not a Resources", what="resources")
        wanted = {Controller.parse(c) for c in controllers} if controllers is not None else None
        info = parent._info if isinstance(parent, CGroup) else cached_host_info()
        needed = resources.controllers()
        serving = info.controllers
        for c in sorted(needed, key=lambda c: c.value):
            if c not in serving:
                raise UnsupportedError(
                    f"controller `{c.value}` is not available on this host (mode: {info.mode.value})", feature=c.value
                )
        if wanted is not None:
            for c in wanted:
                if c not in serving:
                    raise UnsupportedError(
                        f"controller `{c.value}` is not available on this host (mode: {info.mode.value})",
                        feature=c.value,
                    )
        # Hierarchies to span, and the parent directory in each.
        parents: list[tuple[Hierarchy, Path]] = []
        for h in info.hierarchies:
            if h.version == 1:
                if not h.controllers:
                    continue  # named hierarchies (name=systemd) belong to their managers
                if wanted is not None and not (h.controllers & (wanted | needed)):
                    continue
            parents.append((h, cls._parent_dir(h, parent, info)))
        if not parents:
            raise UnsupportedError(f"no cgroup hierarchy is usable (mode: {info.mode.value})", feature="cgroup")
        plan = resource_writes(resources, info, {h for h, _ in parents}, MemoryNow.fresh())
        v2_controllers = (wanted if wanted is not None else set(DEFAULT_V2_CONTROLLERS)) | set(needed)
        created: list[Path] = []
        dirs: list[tuple[Hierarchy, Path]] = []
        if before_mkdir is not None:
            before_mkdir(tuple(pdir / name for _h, pdir in parents))
        try:
            for h, pdir in parents:
                if h.version == 2:
                    serve_v2 = {c for c in v2_controllers if serving.get(c) == h}
                    enable_v2_controllers(h, pdir, serve_v2, {c for c in needed if serving.get(c) == h})
                d = pdir / name
                try:
                    files.mkdir(d)
                    created.append(d)
                except SyscallError as exc:
                    if not (exist_ok and exc.errno == errno.EEXIST):
                        raise
                if h.version == 1 and Controller.CPUSET in h.controllers:
                    init_cpuset(pdir, d, fresh=bool(created) and created[-1] == d)
                dirs.append((h, d))
            group = cls(dirs, info)
            memory = group.locate(Controller.MEMORY)
            if memory is not None and memory[0] == 1 and memory[1] not in created:  # exist_ok: not fresh
                plan = resource_writes(resources, info, {h for h, _ in dirs}, MemoryNow.read(memory[1]))
            group._apply(plan)
        except BaseException:
            for d in reversed(created):
                files.rmdir_quietly(d)
            raise
        return group

    @classmethod
    def open(cls, path: str, *, info: HostInfo | None = None) -> CGroup:
        """Open the existing group at *path* (relative to each hierarchy's mount point).

        Hierarchies in which the path does not exist are left out; if it exists in none, raises
        :class:`SyscallError` (``ENOENT``).
        """
        p = validate_path(path)
        info = info if info is not None else cached_host_info()
        dirs = [(h, h.mount_point.joinpath(*p.parts[1:])) for h in info.hierarchies if h.controllers or h.version == 2]
        found = [(h, d) for h, d in dirs if d.is_dir()]
        if not found:
            raise SyscallError(errno.ENOENT, "open", path, detail=f"open cgroup `{path}`")
        return cls(found, info)

    @classmethod
    def from_pid(cls, pid: int | None = None) -> CGroup:
        """The group *pid* (default: the caller) belongs to, in every hierarchy."""
        info = host_info(pid)
        dirs = [(h, h.directory(path)) for h, path in info.cgroups if h.controllers or h.version == 2]
        return cls(dirs, info)

    def child(
        self, name: str, resources: Resources | None = None, *, controllers: Iterable[Controller | str] | None = None,
        exist_ok: bool = False,
    ) -> CGroup:  # fmt: skip
        """Create a child group (see :meth:`create`, with this group as parent)."""
        return CGroup.create(name, self, resources, controllers=controllers, exist_ok=exist_ok)

    @staticmethod
    def _parent_dir(h: Hierarchy, parent: CGroup | str | None, info: HostInfo) -> Path:
        if isinstance(parent, CGroup):
            for ph, d in parent._dirs:
                if ph == h:
                    return d
            raise ConfigError(f"parent `{parent.path}` does not span {h}", what="parent")
        if parent is None:
            own = info.cgroup_of(h)
            if own is None:
                raise ConfigError(f"the calling process has no cgroup in {h}", what="parent")
            return h.directory(own)
        p = validate_path(parent)
        return h.mount_point.joinpath(*p.parts[1:])

    # ----------------------------------------------------------------- properties
    @property
    def host(self) -> HostInfo:
        """The host description this group was built with."""
        return self._info

    @property
    def path(self) -> str:
        """The group's path (in the v2 tree if spanned, else in the first hierarchy), e.g. ``/job/web``."""
        h, d = self._primary()
        return "/" + str(d.relative_to(h.mount_point)).lstrip(".")

    @property
    def name(self) -> str:
        """The last component of the path."""
        return self._dirs[0][1].name

    @property
    def directories(self) -> dict[Hierarchy, Path]:
        """The directory of this group in each hierarchy it spans."""
        return dict(self._dirs)

    @property
    def unified_dir(self) -> Path | None:
        """The group's directory in the v2 tree, if it spans it."""
        for h, d in self._dirs:
            if h.version == 2:
                return d
        return None

    def directory(self, controller: Controller | str) -> Path:
        """The directory holding *controller*'s files; :class:`UnsupportedError` if the group lacks it."""
        w = self.locate(Controller.parse(controller))
        if w is None:
            c = Controller.parse(controller)
            raise UnsupportedError(
                f"controller `{c.value}` is not available to `{self.path}` (host mode: {self._info.mode.value})",
                feature=c.value,
            )
        return w[1]

    @property
    def controllers(self) -> frozenset[Controller]:
        """Controllers whose files this group has: its v1 hierarchies' plus those in its v2 ``cgroup.controllers``."""
        found: set[Controller] = set()
        for h, d in self._dirs:
            found |= h.controllers if h.version == 1 else read_v2_controllers(d)
        return frozenset(found)

    @property
    def subtree_control(self) -> frozenset[Controller]:
        """v2 controllers this group enables for its children (empty without a v2 tree)."""
        u = self.unified_dir
        return read_v2_controllers(u, "cgroup.subtree_control") if u is not None else frozenset()

    def version_of(self, controller: Controller | str) -> int | None:
        """The cgroup version serving *controller* for this group, or None."""
        w = self.locate(Controller.parse(controller))
        return w[0] if w is not None else None

    @property
    def is_root(self) -> bool:
        """True if this is the root group of a hierarchy (never killed, frozen or deleted by nsprim)."""
        return any(d == h.mount_point for h, d in self._dirs)

    def _refuse_root(self, verb: str) -> None:
        if self.is_root:
            raise ConfigError(f"{verb} `{self.path}`: refusing to act on a hierarchy's root cgroup", what="cgroup")

    def _primary(self) -> tuple[Hierarchy, Path]:
        for h, d in self._dirs:
            if h.version == 2:
                return h, d
        return self._dirs[0]

    def locate(self, controller: Controller) -> tuple[int, Path] | None:
        """(cgroup version, directory) serving *controller* for this group, or None."""
        h = self._info.controllers.get(controller)
        if h is None and controller is Controller.CPUACCT:
            h = self._info.controllers.get(Controller.CPU)
        for dh, d in self._dirs:
            if dh == h:
                return dh.version, d
        return None

    def __repr__(self) -> str:
        return f"CGroup({self.path!r}, hierarchies={len(self._dirs)})"

    def __eq__(self, other: object) -> bool:
        return isinstance(other, CGroup) and self._dirs == other._dirs

    def __hash__(self) -> int:
        return hash(self._dirs)

    # ----------------------------------------------------------------- resources
    def _apply(self, plan: list[Write]) -> None:
        # A plan may repeat a write for ordering's sake (v1: memory limit, memsw, limit again, as
        # limit <= memsw must hold at every moment); once the first one took, the repeat is a no-op.
        done: set[tuple[Controller, tuple[str, ...], str]] = set()
        for w in plan:
            key = (w.controller, w.names, w.value)
            if key in done:
                continue
            where = self.locate(w.controller)
            if where is None:
                raise UnsupportedError(
                    f"controller `{w.controller.value}` is not available to `{self.path}` "
                    f"(host mode: {self._info.mode.value})",
                    feature=w.controller.value,
                )
            version, d = where
            for name in w.names:  # alternatives: the first file that exists
                try:
                    files.write_text(d / name, w.value, hint=w.hint)
                    done.add(key)
                    break
                except SyscallError as exc:
                    if exc.operation == "open" and exc.errno == errno.ENOENT:
                        continue
                    if exc.errno not in w.tolerate:
                        raise
                    break
            else:
                raise UnsupportedError(
                    f"{w.names[0]}: the `{w.controller.value}` controller on cgroup v{version} of this host "
                    f"(mode: {self._info.mode.value}) has no such file (kernel too old or feature disabled)",
                    feature=w.names[0],
                )

    def update(self, resources: Resources) -> None:
        """Apply *resources* to the running group (fields left None are unchanged).

        Validation happens first; the writes then run in order and stop at the first failure (earlier
        writes stay in effect).  On cgroup v1 a memory limit given without ``swap`` keeps the swap the
        group allows: ``memory.memsw.limit_in_bytes`` moves with the limit, written before it when the
        limit rises and after it when it falls.
        """
        if not isinstance(resources, Resources):
            raise ConfigError(f"resources: `{resources!r}` is not a Resources", what="resources")
        memory = self.locate(Controller.MEMORY) if resources.memory is not None else None
        # v1 orders the limit and memsw writes by the values in force (limit <= memsw at every moment).
        now = MemoryNow.read(memory[1]) if memory is not None and memory[0] == 1 else None
        plan = resource_writes(resources, self._info, {h for h, _ in self._dirs}, now)
        for h, d in self._dirs:
            if h.version == 2:
                needed = {c for c in resources.controllers() if self._info.controllers.get(c) == h}
                if needed:
                    enable_v2_controllers(h, d.parent, needed, needed)
        self._apply(plan)

    # ----------------------------------------------------------------- membership
    def add(self, pid: int) -> None:
        """Move process *pid* (all its threads) into the group, in every hierarchy.

        If a later hierarchy refuses, the process is moved back where it was
        in the earlier ones before the error is raised.
        """
        self._move(pid, "cgroup.procs", "cgroup.procs")

    def add_thread(self, tid: int) -> None:
        """Move one thread (v1 ``tasks``, v2 ``cgroup.threads``).

        cgroup v2 moves single threads only inside a *threaded* subtree
        (``cgroup.type`` ``threaded``).  In a v2 domain group the move is
        refused with :class:`UnsupportedError` on a pure v2 host; on a hybrid
        host the thread moves in the v1 hierarchies and stays with its process
        in the v2 tree (which then only tracks membership).
        """
        v2_domain = [
            d
            for h, d in self._dirs
            if h.version == 2 and (files.try_read_text(d / "cgroup.type") or "domain").strip() != "threaded"
        ]
        if v2_domain and len(self._dirs) == 1:
            raise UnsupportedError(
                f"add_thread `{self.path}`: cgroup v2 moves single threads only within a threaded subtree "
                f"(write `threaded` to cgroup.type first)",
                feature="cgroup.threads",
            )
        self._move(tid, "tasks", "cgroup.threads", skip=set(v2_domain))

    def _move(self, pid: int, v1_file: str, v2_file: str, skip: set[Path] | None = None) -> None:
        if isinstance(pid, bool) or not isinstance(pid, int) or pid <= 0:
            raise ConfigError(f"pid: `{pid!r}` is not a process id", what="pid")
        try:
            before = dict(process_cgroups(pid, self._info.hierarchies))
        except (SyscallError, ConfigError):
            before = {}
        done: list[Hierarchy] = []
        for h, d in self._dirs:
            if skip and d in skip:
                continue
            target = d / (v1_file if h.version == 1 else v2_file)
            try:
                files.write_text(target, str(pid))
            except SyscallError as exc:
                if h.version == 2 and exc.errno in _BUSY and read_v2_controllers(d, "cgroup.subtree_control"):
                    exc.hint = "the no-internal-processes rule: this group delegates controllers to its children"
                for dh in done:
                    old = before.get(dh)
                    if old is not None:
                        with contextlib.suppress(SyscallError):
                            files.write_text(dh.directory(old) / (v1_file if dh.version == 1 else v2_file), str(pid))
                raise
            done.append(h)

    def procs(self, *, recursive: bool = False) -> list[int]:
        """The pids in the group (union over its hierarchies), sorted; with *recursive* also in descendants."""
        pids: set[int] = set()
        for _h, d in self._dirs:
            for sub in self._walk(d) if recursive else (d,):
                text = files.try_read_text(sub / "cgroup.procs")
                if text is not None:
                    pids.update(int(x) for x in text.split())
        return sorted(pids)

    def threads(self) -> list[int]:
        """The thread ids in the group (v1 ``tasks`` or v2 ``cgroup.threads``)."""
        tids: set[int] = set()
        for h, d in self._dirs:
            text = files.try_read_text(d / ("tasks" if h.version == 1 else "cgroup.threads"))
            if text is not None:
                tids.update(int(x) for x in text.split())
        return sorted(tids)

    @staticmethod
    def _walk(d: Path) -> Iterator[Path]:
        """*d* and every descendant directory, children before parents."""
        try:
            if os.stat(d).st_nlink == 2:  # cgroupfs (kernfs) counts 2 + subdirectories: a leaf
                yield d
                return
        except FileNotFoundError:
            pass
        for sub in files.subdirs(d):
            yield from CGroup._walk(sub)
        yield d

    def children(self) -> list[str]:
        """Names of the child groups (in any hierarchy)."""
        return sorted({sub.name for _h, d in self._dirs for sub in files.subdirs(d)})

    @property
    def populated(self) -> bool:
        """True while any process is in the group or a descendant (v2 ``cgroup.events``, v1 ``cgroup.procs``)."""
        u = self.unified_dir
        if u is not None and (u / "cgroup.events").exists():
            if files.read_keyed(u / "cgroup.events").get("populated", 0):
                return True
            if len(self._dirs) == 1:
                return False
        # v1 hierarchies (a thread moved alone on a hybrid host is not in this group's v2 directory)
        return bool(self.procs(recursive=True))

    def exists(self) -> bool:
        """True if the group's directories are still there."""
        return any(os.path.isdir(d) for _h, d in self._dirs)

    # ----------------------------------------------------------------- waiting and events
    def wait_empty(self, timeout: float | None = None) -> None:
        """Block until no process is in the group or its descendants; :class:`CGroupTimeoutError` after *timeout* s."""
        u = self.unified_dir
        notify = [u / "cgroup.events"] if u is not None else []
        wait_until(
            lambda: not self.populated,
            timeout=timeout,
            what="the group to be empty",
            path=self._primary()[1],
            notify=notify,
        )

    def memory_events(self) -> MemoryEvents:
        """The group's OOM and limit counters (v2 ``memory.events``, v1 ``memory.oom_control``/``memory.failcnt``)."""
        return _events.read_memory_events(*self.directory_of_memory())

    def oom_kills(self) -> int:
        """How many processes the OOM killer has killed in the group (one file read; see :meth:`memory_events`)."""
        return _events.read_oom_kills(*self.directory_of_memory())

    def wait_oom_kill(self, since: int | None = None, timeout: float | None = None) -> int:
        """Wait until the OOM-kill counter exceeds *since* (default: its value now); return the new count."""
        return _events.wait_oom_kill(*self.directory_of_memory(), since=since, timeout=timeout)

    def watch_events(
        self,
        kinds: Iterable[GroupEventKind] | None = None,
        pressure: Sequence[PressureTrigger] = (),
        *,
        from_zero: bool = False,
    ) -> GroupEventWatch:
        """The descriptors that signal the group's events: a :class:`~nsprim.cgroup.watch.GroupEventWatch`."""
        from nsprim.cgroup.watch import GroupEventWatch

        return GroupEventWatch(self, kinds, pressure, from_zero=from_zero)

    def directory_of_memory(self) -> tuple[int, Path]:
        """(version, directory) of the memory controller; :class:`UnsupportedError` if the group lacks it."""
        return self.version_of("memory") or 0, self.directory("memory")

    def stats(self, *, full: bool = True) -> Stats:
        """A typed snapshot of memory, CPU, pids, I/O and pressure statistics.

        ``full=False`` reads the totals only (no ``memory.stat``, I/O or pressure).
        """
        from nsprim.cgroup.stats import read_stats

        return read_stats(self.locate, self.unified_dir, full=full)

    # ----------------------------------------------------------------- freezing and killing
    def freeze(self, timeout: float | None = 10.0, *, version: int | None = None) -> None:
        """Stop every process in the group (and descendants) and wait until they are frozen.

        Uses v2 ``cgroup.freeze`` where available, else v1 ``freezer.state``;
        *version* forces one.  :class:`~nsprim.errors.CGroupTimeoutError` after *timeout* seconds.
        """
        self._refuse_root("freeze")
        control.freeze(self, timeout, version)

    def thaw(self, timeout: float | None = 10.0, *, version: int | None = None) -> None:
        """Let the group's processes run again (undoes :meth:`freeze`)."""
        control.thaw(self, timeout, version)

    @property
    def frozen(self) -> bool:
        """True if the group is frozen (by either freezer)."""
        return control.is_frozen(self)

    def kill(self, sig: int = 9, timeout: float | None = 10.0, *, use_cgroup_kill: bool = True) -> None:
        """Send *sig* (default: SIGKILL) to every process in the group and its descendants.

        For SIGKILL, uses v2 ``cgroup.kill`` where present and waits until the
        group is empty.  Otherwise (or with ``use_cgroup_kill=False``) loops:
        freeze, signal every pid, thaw, until empty — no process can fork
        away while frozen.  Other signals are sent once, without waiting.
        Refuses (ConfigError) if the calling process is inside.
        """
        self._refuse_root("kill")
        control.kill(self, sig, timeout, use_cgroup_kill)

    def request_kill(self) -> bool:
        """SIGKILL every process in the group and its descendants through v2 ``cgroup.kill``,
        without waiting for them to die; False (nothing sent) where the group has no
        ``cgroup.kill`` — :meth:`kill` then loops over the pids instead."""
        self._refuse_root("kill")
        return control.request_kill(self)

    # ----------------------------------------------------------------- deletion
    def delete(self, *, recursive: bool = False, timeout: float = 0.0) -> None:
        """Remove the group (and with *recursive* its descendants) from every hierarchy.

        Waits up to *timeout* seconds for the group to become empty; if
        processes remain, raises :class:`~nsprim.errors.CGroupBusyError` and removes nothing.
        Without *recursive*, child groups also raise :class:`~nsprim.errors.CGroupBusyError`.
        """
        self._refuse_root("delete")
        if not self.exists():
            return
        if timeout > 0:
            with contextlib.suppress(CGroupTimeoutError):
                self.wait_empty(timeout)
        trees = [list(self._walk(d)) for _h, d in self._dirs]  # descendants first, the group itself last
        children = sorted({sub.name for tree in trees for sub in tree if sub.parent in (t[-1] for t in trees)})
        if not recursive and children:
            raise CGroupBusyError(
                errno.EBUSY, "delete", self._primary()[1], hint=f"it has child groups {children}; pass recursive=True"
            )
        left: set[int] = set()
        for tree in trees:
            for sub in tree:
                text = files.try_read_text(sub / "cgroup.procs")
                left.update(int(x) for x in (text or "").split())
        if left:
            raise CGroupBusyError(
                errno.EBUSY,
                "delete",
                self._primary()[1],
                hint=f"{len(left)} process(es) still inside: {sorted(left)[:8]}; kill() them first",
            )
        for tree in trees:
            for sub in tree:
                rmdir_retrying(sub)

    def __enter__(self) -> CGroup:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        if not self.exists():
            return
        if self.procs(recursive=True):
            self.kill()
        if self.frozen:
            self.thaw()
        self.delete(recursive=True, timeout=5.0)
