"""Starting a container and managing it while it runs.

:func:`start_container` turns a :class:`ContainerConfig` into host-side
preparation (a cgroup, registrations with the cleanup watcher) and one
:class:`~nsprim.plan.Plan` that the core runs in the child.
:class:`RunningContainer` is the handle: wait, signal, kill the whole group,
freeze, update limits, read stats, ``exec`` another command inside.  Cleanup
(cgroup, watcher registrations) happens on every path;
if this process dies, the watcher does it.
"""

from __future__ import annotations

import contextlib
import errno
import logging
import os
import secrets
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from io import FileIO
from pathlib import Path
from types import TracebackType
from typing import TYPE_CHECKING, Any

from .._sys import watcher
from ..cgroup import ROOT, CGroup, CGroupBusyError, Resources, Stats, format_size
from ..cgroup.delegation import delegated_parent
from ..cgroup.host import HostInfo, cached_host_info
from ..errors import (
    ConfigError,
    NsprimError,
    StepError,
    SyscallError,
    TimeoutExpired,
    UnsupportedError,
)
from ..lowlevel import start
from ..namespace import Namespace, NamespaceId, NamespaceType
from ..process import DEVNULL, PIPE, Process
from ..spawning import open_streams
from .build import ChildPlan, _id_maps, build_plan
from .config import ContainerConfig, Network, Veth
from .procview import ProcView, view_directory
from .rootfs import host_dirs
from .terminal import TERMINAL_FD, TerminalChannel, attach, relay, set_terminal_size, terminal_size
from .userns import auto_id_maps, check_payload_ids

if TYPE_CHECKING:
    from .._sys.spawn import MonitorSpec
    from .registry import Registration
    from .veth import VethLink
    from .warm import _Supply

__all__ = ["RunningContainer", "ContainerResult", "start_container", "run_container", "state_dir"]


log = logging.getLogger("nsprim.container")


def state_dir() -> Path:
    """Where containers keep their scratch directories: ``$NSPRIM_STATE_DIR``, else
    ``/run/nsprim`` for root and ``$XDG_RUNTIME_DIR/nsprim`` (or a per-user
    directory in the temporary directory) for everyone else."""
    if "NSPRIM_STATE_DIR" in os.environ:
        return Path(os.environ["NSPRIM_STATE_DIR"])
    if os.geteuid() == 0:
        return Path("/run/nsprim")
    runtime = os.environ.get("XDG_RUNTIME_DIR")
    if runtime and os.access(runtime, os.W_OK):
        return Path(runtime) / "nsprim"
    return Path(tempfile.gettempdir()) / f"nsprim-{os.geteuid()}"


@dataclass(frozen=True)
class ContainerResult:
    """How a container ended, what it printed, and what it used.

    *stats* holds the cgroup's totals at the end — memory usage, peak and
    limit, CPU time, pids — without the ``memory.stat`` breakdown, I/O or
    pressure (read :meth:`RunningContainer.stats` while it runs for those).
    """

    returncode: int
    stdout: bytes | None
    stderr: bytes | None
    stats: Stats | None
    oom_killed: bool

    @property
    def signal(self) -> int | None:
        """The signal that ended the payload, if one did."""
        if self.returncode < 0:
            return -self.returncode
        return None


class _Prepared:
    """Host-side resources of one container, released in reverse order."""

    def __init__(self, config: ContainerConfig, warm: _Supply | None = None) -> None:
        self.config = config
        self.warm = warm
        self.id = config.name or f"nsprim-{secrets.token_hex(6)}"
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
            self.cgroup = _create_delegated_cgroup(self.id, cfg, watch=self.watching)
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
                self.cgroup = _create_cgroup(self.id, cfg, watch=self.watching)
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


def _create_cgroup(name: str, cfg: ContainerConfig, *, watch: bool) -> CGroup:
    """The container's group; with *watch*, registered with the cleanup watcher before
    its first directory is made (a kill at any point leaves nothing behind)."""
    info = cached_host_info()
    resources = cfg.resources or Resources()
    wanted = {c.value for c in resources.controllers()}
    for c in ("memory", "pids"):
        if any(k.value == c for k in info.controllers):
            wanted.add(c)
    if info.version_of("freezer") == 1 and info.unified is None:
        # Freeze and kill need it on a pure v1 host; a hybrid host's v2 tree
        # has cgroup.freeze and cgroup.kill for the same processes.
        wanted.add("freezer")
    # NSPRIM_CGROUP_PARENT lets a test suite or a service keep every group under its own.
    parent_path = cfg.cgroup_parent or os.environ.get("NSPRIM_CGROUP_PARENT") or ROOT
    # The parent is opened (a stat per hierarchy) once per host-info snapshot, not per container;
    # if it went away meanwhile, the mkdir says so, and the next try opens it again.
    hit = _parents.get(parent_path)
    if hit is not None and hit[0] is info:
        parent = hit[1]
    else:
        _parents.clear()
        parent = CGroup.open(parent_path, info=info)  # carries the host info into create()
        _parents[parent_path] = (info, parent)
    registered: list[tuple[Path, ...]] = []

    def register(dirs: tuple[Path, ...]) -> None:
        watcher.watch_cgroups(dirs)
        registered.append(dirs)

    def create() -> CGroup:
        return CGroup.create(
            name, parent=parent, resources=resources, controllers=wanted, before_mkdir=register if watch else None
        )

    try:
        try:
            return create()
        except SyscallError as exc:
            if exc.errno != errno.ENOENT:
                raise
            _parents.clear()
            parent = CGroup.open(parent_path, info=info)
            return create()
    except BaseException:
        for dirs in registered:  # create() removed what it made
            watcher.forget_cgroups(dirs)
        raise


_parents: dict[str, tuple[HostInfo, CGroup]] = {}


def _create_delegated_cgroup(name: str, cfg: ContainerConfig, *, watch: bool) -> CGroup:
    """The group of a container started without root, in a cgroup v2 subtree delegated to
    the caller (:func:`~nsprim.cgroup.delegation.delegated_parent` raises if there is none);
    with *watch*, registered with the cleanup watcher before it is made, as :func:`_create_cgroup`."""
    info = cached_host_info()
    resources = cfg.resources or Resources()
    needed = resources.controllers()
    parent_path = cfg.cgroup_parent or os.environ.get("NSPRIM_CGROUP_PARENT")
    hierarchy, directory = delegated_parent(info, needed, parent_path)
    parent = CGroup([(hierarchy, directory)], info)  # the v2 tree only: v1 groups are root's
    registered: list[tuple[Path, ...]] = []

    def register(dirs: tuple[Path, ...]) -> None:
        watcher.watch_cgroups(dirs)
        registered.append(dirs)

    try:
        return CGroup.create(
            name, parent=parent, resources=resources, controllers=needed, before_mkdir=register if watch else None
        )
    except BaseException:
        for dirs in registered:  # create() removed what it made
            watcher.forget_cgroups(dirs)
        raise


def _name_the_memory_limit(exc: BaseException, prep: _Prepared) -> None:
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


def ready_state_dir(cfg: ContainerConfig) -> Path:
    """The state directory, with what *cfg*'s children expect in it on the host."""
    state = state_dir()
    for d in host_dirs(cfg, state):
        try:
            d.mkdir(parents=True, exist_ok=True, mode=0o700)
        except OSError as exc:
            raise SyscallError(exc.errno, "mkdir", d, hint="set NSPRIM_STATE_DIR to a writable place") from None
    return state


def remove_group(cg: CGroup, *, forget: bool = True) -> None:
    """Delete an ended container's group (a group already gone is fine) and, with *forget*,
    its registration with the cleanup watcher.

    Its pid namespace is gone with its init, so the group is empty and a leaf
    nearly always: one ``rmdir`` per hierarchy.  Should one refuse (processes
    that left the pid namespace's init behind, or child groups), the members
    are killed and :meth:`CGroup.delete` removes the rest, children first.
    """
    try:
        for d in cg.directories.values():
            with contextlib.suppress(FileNotFoundError):
                os.rmdir(d)
    except OSError as exc:
        if exc.errno not in (errno.EBUSY, errno.ENOTEMPTY):
            raise SyscallError(exc.errno or errno.EIO, "rmdir", exc.filename) from exc
        try:
            cg.delete(recursive=True)
        except CGroupBusyError:
            cg.kill()  # waits until the group is empty
            cg.delete(recursive=True)
    if forget:
        watcher.forget_cgroups(cg.directories.values())


class RunningContainer:
    """A started container.  Use it as a context manager: on exit it is killed
    (if still running) and everything it used on the host is removed — except a
    detached container, which goes on under its monitor (see
    :mod:`nsprim.container.registry`)."""

    def __init__(self, config: ContainerConfig, prep: _Prepared, process: Process) -> None:
        self.config = config
        self.id = prep.id
        self.process = process
        self._prep = prep
        self._ns: dict[NamespaceType, Namespace] = {}
        self._closed = False
        self._execs: list[Process] = []  # exec()'d processes: our children, in its pid namespace
        self.oom_killed = False
        self.final_stats: Stats | None = None
        #: The master side of the container's terminal (:meth:`Container.tty`), else ``None``.
        self.terminal: FileIO | None = None

    # ---- identity --------------------------------------------------------------

    @property
    def pid(self) -> int:
        """The host pid of the container's first process (its pid 1)."""
        return self.process.pid

    @property
    def cgroup(self) -> CGroup | None:
        """The container's cgroup (None when running without one)."""
        return self._prep.cgroup

    @property
    def veth(self) -> VethLink | None:
        """A ``network("veth")`` container's link: its host interface and the addresses of both sides."""
        return self._prep.veth

    @property
    def returncode(self) -> int | None:
        """The exit status once it has ended (``-N`` for signal N)."""
        return self.process.returncode

    def namespace_ids(self) -> dict[NamespaceType, NamespaceId]:
        """The identities of the container's namespaces, for inspection from the host."""
        return self.process.namespace_ids()

    def namespace(self, nstype: NamespaceType | str) -> Namespace:
        """A handle on one of the container's namespaces (owned by the container)."""
        t = NamespaceType.parse(nstype)
        if t not in self._ns:
            self._ns[t] = Namespace.of_pid(self.pid, t)
        return self._ns[t]

    # ---- life ------------------------------------------------------------------

    def wait(self, timeout: float | None = None) -> int:
        """Wait for the container's pid 1 to exit; then clean up and return its status.

        Processes started with :meth:`exec` that exit meanwhile are reaped: a
        pid 1 cannot finish exiting while a process of its namespace waits to
        be reaped by a parent outside (us).
        """
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            self._reap_execs()
            left = None if deadline is None else deadline - time.monotonic()
            step = 0.05 if self._execs else left
            if step is not None and left is not None:
                step = min(step, max(left, 0.0))
            try:
                status = self.process.wait(step)
                break
            except TimeoutExpired:
                if left is not None and left <= 0:
                    raise TimeoutExpired(self.pid, timeout or 0.0) from None
        self._reap_execs()
        self._finish()
        return status

    def _reap_execs(self) -> None:
        self._execs = [p for p in self._execs if p.poll() is None]

    def resize(self, rows: int, cols: int) -> None:
        """Set the window size of the container's terminal (its payload gets SIGWINCH)."""
        set_terminal_size(self._need_terminal("resize").fileno(), rows, cols)

    def attach(self, stdin: int | None = 0, stdout: int | None = 1) -> int:
        """Connect this process' terminal to the container's until its pid 1 exits; return its status.

        What *stdin* gives goes to the container's terminal, what it writes goes
        to *stdout*.  A terminal on *stdin* is in raw mode meanwhile (keys, ``^C``
        included, go to the container) and gets its modes back on every way out;
        the container's window size follows the caller's, on every SIGWINCH when
        called from the main thread.
        """
        master = self._need_terminal("attach").fileno()
        if self.process.returncode is None:
            attach(master, self.process.pidfd, stdin, stdout)
        return self.wait()

    def _need_terminal(self, what: str) -> FileIO:
        if self.terminal is None:
            raise ConfigError(f"{what} needs the container's terminal: use .tty()", what="tty")
        return self.terminal

    def send_signal(self, sig: int) -> None:
        """Signal the container's pid 1 (with ``init``, it forwards to the payload)."""
        self.process.send_signal(sig)

    def kill(self) -> None:
        """SIGKILL every process of the container (the whole cgroup), and reap
        the processes :meth:`exec` started."""
        if self.cgroup is not None and not self.config.detach and self.cgroup.exists():
            self.cgroup.kill()  # a detached container's monitor kills the rest when pid 1 died
        self.process.kill()
        for p in self._execs:
            p.kill()
            p.wait()
        self._execs.clear()

    def freeze(self) -> None:
        """Stop every process of the container (cgroup freezer)."""
        self._need_cgroup("freeze").freeze()

    def thaw(self) -> None:
        """Let a frozen container run again."""
        self._need_cgroup("thaw").thaw()

    def update(self, resources: Resources) -> None:
        """Change the cgroup limits of the running container."""
        self._need_cgroup("update").update(resources)

    def stats(self) -> Stats:
        """Resource usage so far (memory, cpu, pids, io, pressure)."""
        return self._need_cgroup("stats").stats()

    def refresh_proc_view(self) -> None:
        """Rewrite the container's ``/proc/meminfo`` now, and its CPU files (after an
        :meth:`update` of the cpuset or quota; see
        :meth:`Container.proc_view <nsprim.container.Container.proc_view>`)."""
        view = self._prep.proc_view
        if view is None:
            raise ConfigError(f"container {self.id} has no /proc view: use .proc_view()", what="proc_view")
        view.refresh(cpus=True)

    def _need_cgroup(self, what: str) -> CGroup:
        if self.cgroup is None:
            raise ConfigError(f"{what} needs the container's cgroup (run as root)", what="cgroup")
        return self.cgroup

    def exec(self, argv: Sequence[str], **kwargs: Any) -> Process:
        """Run another command inside the container, as ``docker exec`` does.

        It joins every namespace of the container and its cgroup, with the
        container's environment, user, working directory and security policy.
        Returns the new :class:`~nsprim.process.Process`.
        """
        if self.process.returncode is not None:
            raise ConfigError(f"container {self.id} is not running", what="exec")
        cfg = self.config
        joined = [self.namespace(t) for t in cfg.namespaces if t is not NamespaceType.TIME]
        exec_cfg = ContainerConfig(
            argv=tuple(argv),
            namespaces=frozenset(),
            env=cfg.env,
            cwd=cfg.cwd,
            uid=cfg.uid,
            gid=cfg.gid,
            groups=cfg.groups,
            rlimits=cfg.rlimits,
            umask=cfg.umask,
            security=cfg.security,
            network=Network.HOST,
        )
        proc = _launch(
            exec_cfg,
            lambda pairs: build_plan(
                exec_cfg, cgroup=self.cgroup, state=None, stdio=pairs, joined=joined, for_exec=True
            ),
            kwargs.get("stdin"),
            kwargs.get("stdout"),
            kwargs.get("stderr"),
        )
        self._execs.append(proc)
        return proc

    def _finish(self) -> None:
        if self._closed:
            return
        self._closed = True
        cg = self.cgroup if not self._prep.handed_over else None  # the monitor removes that one
        if self.process.monitor is not None:
            self.oom_killed = self.process.monitor.oom_killed
        if cg is not None:  # a group removed meanwhile by someone else reads as an error: no stats then
            with contextlib.suppress(NsprimError, OSError):
                self.final_stats = cg.stats(full=False)  # the totals: a quarter of the files
            with contextlib.suppress(NsprimError, OSError, UnsupportedError):
                self.oom_killed = cg.oom_kills() > 0
        for ns in self._ns.values():
            ns.close()
        self._ns.clear()
        self._prep.release()

    def close(self) -> None:
        """Kill the container if it still runs, reap it, and remove what it used.

        A detached container goes on: only this handle's descriptors are closed."""
        try:
            if self.process.returncode is None and self.process.monitor is None:
                self.kill()
                self.process.wait()
        finally:
            if self.terminal is not None:
                self.terminal.close()
            self.process.close()
            self._finish()

    def __enter__(self) -> RunningContainer:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    def __repr__(self) -> str:
        state = "running" if self.returncode is None else f"exited {self.returncode}"
        return f"<RunningContainer {self.id} pid={self.pid} {state}>"


def start_container(
    config: ContainerConfig,
    *,
    stdin: Any = None,
    stdout: Any = None,
    stderr: Any = None,
    warm: _Supply | None = None,
) -> RunningContainer:
    """Prepare the host side, start the plan, and return the handle.

    With *warm*, a network namespace, a mount namespace with the first part of
    the root, and a cgroup made ahead of time are used where they are ready and
    apply (see :mod:`nsprim.container.warm`)."""
    if os.geteuid() != 0 and NamespaceType.USER not in config.namespaces and not config.join:
        # Rootless: a user namespace gives the privileges the rest needs.
        config = replace(config, namespaces=config.namespaces | {NamespaceType.USER})
    config.validate()
    config = config.resolve_user()
    if config.tty:
        if stdin is not None or stdout is not None or stderr is not None:
            raise ConfigError("a container with a tty has its terminal as stdin, stdout and stderr", what="tty")
        stdin = stdout = stderr = DEVNULL  # the setup never holds the caller's streams either
    if config.detach:
        from .registry import Registration

        Registration.check(config, warm)
    id_maps = contextlib.ExitStack()  # an automatic map's slot stays locked until its maps are written
    if config.auto_id_maps:
        uid_map, gid_map = id_maps.enter_context(auto_id_maps(state_dir()))
        config = replace(config, uid_map=uid_map, gid_map=gid_map, auto_id_maps=False)
    prep = _Prepared(config, warm)
    netns_fd = mntns_fd = root_fd = -1
    channel: TerminalChannel | None = None
    master = -1
    try:
        check_payload_ids(config, *_id_maps(config))
        prep.setup()
        monitor = None
        if prep.registration is not None:
            stdin, stdout, stderr = prep.registration.stdio(stdin, stdout, stderr)
            monitor = prep.registration.monitor_spec(config, prep.cgroup)
        if warm is not None:
            netns_fd, mntns_fd, root_fd = warm.take_namespaces() or (-1, -1, -1)
            # Kept until the container ended, then closed by the pool's thread: the
            # namespace's mounts are taken down there, not by the payload's exit.
            prep.mntns_fd = mntns_fd
        if config.tty:
            channel = TerminalChannel(config.tty_size or terminal_size(1) or terminal_size(0))
        placed = [(channel.child_fd, TERMINAL_FD)] if channel is not None else []
        proc = _launch(
            config,
            lambda pairs: build_plan(
                config,
                cgroup=prep.cgroup,
                state=prep.state,
                stdio=[*pairs, *placed],
                joined=prep.namespaces,
                proc_view=prep.proc_view,
                netns_fd=netns_fd,
                mntns_fd=mntns_fd,
                mntns_root_fd=root_fd,
                veth=prep.veth,
            ),
            stdin,
            stdout,
            stderr,
            log_id=prep.id,
            monitor=monitor,
            on_clone=None if config.detach or prep.cgroup is not None else prep.watch_pid,
        )
        if channel is not None:
            channel.child_started()
            try:
                master = channel.receive()
            except BaseException:
                proc.close()  # kills and reaps it
                raise
        if prep.registration is not None:
            prep.registration.commit(proc, prep.cgroup)
            prep.watching, prep.handed_over = False, True
    except BaseException as exc:
        _name_the_memory_limit(exc, prep)
        prep.release()
        raise
    finally:
        id_maps.close()
        for fd in (netns_fd, root_fd):  # the child holds them now, or starting failed
            if fd >= 0:
                os.close(fd)
        if channel is not None:
            channel.close()
    if prep.proc_view is not None and config.proc_view_refresh is not None:
        prep.proc_view.start_refresher(config.proc_view_refresh)
    box = RunningContainer(config, prep, proc)
    if master >= 0:
        box.terminal = os.fdopen(master, "r+b", buffering=0)
    return box


def _launch(
    config: ContainerConfig,
    plan_for: Callable[[list[tuple[int, int]]], ChildPlan],
    stdin: Any,
    stdout: Any,
    stderr: Any,
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
    streams = open_streams(stdin, stdout, stderr)
    child: ChildPlan | None = None
    debug = log_id is not None and log.isEnabledFor(logging.DEBUG)
    try:
        child = plan_for(streams.pairs)
        if debug:
            log.debug("container %s: clone flags %#x, %d plan steps", log_id, child.clone_flags, len(child.steps))
            for i, step in enumerate(child.steps):
                log.debug("  %2d. %s", i, step.describe())
        actions = child.actions
        if on_clone is not None and actions:
            first, clone_seen = actions[0], on_clone

            def first_action(pid: int) -> None:
                clone_seen(pid)  # while the child still waits: an owner killed from here on takes it along
                first(pid)

            actions = (first_action, *actions[1:])
        proc = start(
            child.body,
            prefix=child.prefix,
            args=list(config.argv),
            clone_flags=child.clone_flags,
            cgroup_fd=child.cgroup_fd,
            pidns_fd=child.pidns_fd,
            parent_actions=actions,
            close_after=streams.hand_over(),
            timings=debug,
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
    if debug and proc.setup_us and child is not None:
        log.debug("container %s: set up in %.0f µs: clone %.0f µs, then", log_id, sum(proc.setup_us), proc.setup_us[0])
        for i, (us, step) in enumerate(zip(proc.setup_us[1:], child.steps, strict=True)):
            log.debug("  %2d. %6.0f µs  %s", i, us, step.describe())
    return proc


def run_container(
    config: ContainerConfig,
    *,
    capture_output: bool = False,
    input: bytes | None = None,
    timeout: float | None = None,
    stdin: Any = None,
    stdout: Any = None,
    stderr: Any = None,
    warm: _Supply | None = None,
) -> ContainerResult:
    """Start, feed *input*, collect output, wait, clean up.

    With a tty, *input* is typed into the container's terminal and
    *capture_output* collects what it shows (as ``stdout``); with neither, this
    process' own terminal is attached (:meth:`RunningContainer.attach`).
    """
    if config.tty:
        if stdin is not None or stdout is not None or stderr is not None:
            raise ConfigError("a container with a tty has its terminal as stdin, stdout and stderr", what="tty")
        return _run_with_terminal(config, capture_output, input, timeout, warm)
    if capture_output:
        stdout = PIPE if stdout is None else stdout
        stderr = PIPE if stderr is None else stderr
    if input is not None and stdin is None:
        stdin = PIPE
    with start_container(config, stdin=stdin, stdout=stdout, stderr=stderr, warm=warm) as box:
        try:
            out, err = box.process.communicate(input, timeout)
        except TimeoutExpired:
            box.kill()
            raise TimeoutExpired(box.pid, timeout or 0.0, killed=True, name=box.id) from None
        box.wait()
        status = box.returncode
        assert status is not None
        return ContainerResult(status, out, err, box.final_stats, box.oom_killed)


def _run_with_terminal(
    config: ContainerConfig, capture: bool, input: bytes | None, timeout: float | None, warm: _Supply | None
) -> ContainerResult:
    with start_container(config, warm=warm) as box:
        master = box._need_terminal("run").fileno()
        collect: list[bytes] | None = [] if capture else None
        if capture or input is not None:
            ended = relay(master, box.process.pidfd, data=input or b"", collect=collect, timeout=timeout)
        else:
            ended = attach(master, box.process.pidfd, 0, 1, timeout=timeout)
        if not ended:
            box.kill()
            raise TimeoutExpired(box.pid, timeout or 0.0, killed=True, name=box.id)
        status = box.wait()
        out = b"".join(collect) if collect is not None else None
        return ContainerResult(status, out, None, box.final_stats, box.oom_killed)
