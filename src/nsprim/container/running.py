"""A started container and managing it while it runs.

:class:`RunningContainer` is the handle :func:`~nsprim.container.start.start_container`
returns: wait, signal, kill the whole group, freeze, update limits, read stats,
``exec`` another command inside.  Cleanup (cgroup, watcher registrations)
happens on every path; if this process dies, the watcher does it.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable, Iterable, Sequence
from io import FileIO
from types import TracebackType

from .._dataclass import dataclass
from .._readiness import readable_async, wait_any_readable
from ..cgroup import CGroup, Resources, Stats, control, files
from ..errors import ConfigError, NsprimError, TimeoutExpired, UnsupportedError
from ..namespace import Namespace, NamespaceId, NamespaceType
from ..process import PIPE, CompletedRun, Process
from .build import build_plan
from .config import ContainerConfig, Network
from .launch import launch
from .terminal import attach, set_terminal_size

TYPE_CHECKING = False  # (typing itself is not imported)
if TYPE_CHECKING:
    from ..cgroup.watch import PressureTrigger
    from ..spawning import StdioArg
    from .events import ContainerEvents, EventKind
    from .preparation import Preparation
    from .veth import VethLink

__all__ = ["RunningContainer", "ContainerResult"]


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


class RunningContainer:
    """A started container.  Use it as a context manager: on exit it is killed
    (if still running) and everything it used on the host is removed — except a
    detached container, which goes on under its monitor (see
    :mod:`nsprim.container.registry`)."""

    def __init__(self, config: ContainerConfig, prep: Preparation, process: Process) -> None:
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
        while (status := self._collect()) is None:
            left = None if deadline is None else deadline - time.monotonic()
            if left is not None and left <= 0:
                raise TimeoutExpired(self.pid, timeout or 0.0)
            wait_any_readable(self._exit_fds(), left)
        self._finish()
        return status

    async def wait_async(self, timeout: float | None = None) -> int:
        """:meth:`wait` in the running event loop (asyncio or trio): the exits of pid 1 and
        of the :meth:`exec`'d processes are watched through their pidfds by the loop (no
        thread); then clean up and return pid 1's status.  Raises
        :class:`~nsprim.errors.TimeoutExpired` after *timeout* seconds (the container
        goes on).

        Cancelling the awaiting task stops the wait and leaves the container
        running (``async with`` then kills it and cleans up)."""
        deadline = None if timeout is None else time.monotonic() + timeout
        while (status := self._collect()) is None:
            if deadline is not None and time.monotonic() >= deadline:
                raise TimeoutExpired(self.pid, timeout or 0.0)
            await readable_async(*self._exit_fds(), deadline=deadline)
        self._finish()
        return status

    def _collect(self) -> int | None:
        """Reap the exec'd processes that ended; pid 1's status if it ended (else None)."""
        self._reap_execs()
        status = self.process.poll()
        if status is not None:
            self._reap_execs()
        return status

    def _reap_execs(self) -> None:
        self._execs = [p for p in self._execs if p.poll() is None]

    def _exit_fds(self) -> list[int]:
        fds = [self.process.exit_fd(), *(p.exit_fd() for p in self._execs)]
        return [fd for fd in fds if fd >= 0]

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

    async def freeze_async(self) -> None:
        """:meth:`freeze` in the running event loop (asyncio or trio): the v2 freezer is written and its
        ``frozen`` state awaited as a reader of the loop (through ``cgroup.events``).

        The v1 freezer does not notify: there this is :meth:`freeze`, which polls, on
        one of the shared worker threads of the starts (the loop goes on meanwhile).
        Cancelled, the freeze asked for stays asked for (:meth:`thaw_async` undoes it)."""
        await self._set_frozen_async(True)

    async def thaw_async(self) -> None:
        """Let a frozen container run again (see :meth:`freeze_async`)."""
        await self._set_frozen_async(False)

    async def _set_frozen_async(self, frozen: bool) -> None:
        cg = self._need_cgroup("freeze" if frozen else "thaw")
        version, d = control.freezer_of(cg)
        if version != 2:
            from .._offload import off_loop

            await off_loop(cg.freeze if frozen else cg.thaw)
            return
        from ..cgroup.watch import GroupEventKind

        with cg.watch_events([GroupEventKind.FROZEN, GroupEventKind.THAWED]) as watch:
            files.write_text(d / "cgroup.freeze", "1" if frozen else "0")
            while bool(files.read_keyed(d / "cgroup.events").get("frozen", 0)) != frozen:
                await readable_async(*watch.fds)
                for fd in watch.fds:  # re-arms the files for the next change
                    watch.on_ready(fd)

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

    def exec(
        self, argv: Sequence[str], *, stdin: StdioArg = None, stdout: StdioArg = None, stderr: StdioArg = None
    ) -> Process:
        """Run another command inside the container, as ``docker exec`` does.

        It joins every namespace of the container and its cgroup, with the
        container's environment, user, working directory and security policy;
        the standard streams are taken as :func:`nsprim.spawn` takes them.
        Returns the new :class:`~nsprim.process.Process`.
        """
        proc = self._exec_launch(argv, stdin, stdout, stderr)()
        self._execs.append(proc)
        return proc

    def _exec_launch(
        self, argv: Sequence[str], stdin: StdioArg, stdout: StdioArg, stderr: StdioArg
    ) -> Callable[[], Process]:
        """The checks and the namespaces of :meth:`exec` now, on the caller's thread; the launch
        (system calls only: it may run on a worker thread) as the function returned."""
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
        cgroup = self.cgroup
        return lambda: launch(
            exec_cfg,
            lambda pairs: build_plan(exec_cfg, cgroup=cgroup, state=None, stdio=pairs, joined=joined, for_exec=True),
            stdin,
            stdout,
            stderr,
        )

    async def exec_async(
        self,
        argv: Sequence[str],
        *,
        input: bytes | None = None,
        capture_output: bool = False,
        timeout: float | None = None,
        stdin: StdioArg = None,
        stdout: StdioArg = None,
        stderr: StdioArg = None,
    ) -> CompletedRun:
        """Run another command inside the container (as :meth:`exec`) to its end, on the
        running event loop (asyncio or trio): its pipes and its exit are watched by the loop.

        *input*, *capture_output* and *timeout* work as in :meth:`Container.run
        <nsprim.container.Container.run>`: after *timeout* seconds the command is
        killed (:class:`~nsprim.errors.TimeoutExpired`).  A cancelled exec kills
        and reaps the command before the cancellation goes on; the container goes
        on running."""
        if capture_output:
            stdout = PIPE if stdout is None else stdout
            stderr = PIPE if stderr is None else stderr
        if input is not None and stdin is None:
            stdin = PIPE
        from .._offload import off_loop

        # The clone (in vfork mode, until the command's exec) on a shared worker thread, as a start's.
        proc = await off_loop(self._exec_launch(argv, stdin, stdout, stderr), lambda p, _exc: p.close())
        self._execs.append(proc)
        try:
            try:
                out, err = await proc.communicate_async(input, timeout)
            except TimeoutExpired:
                raise TimeoutExpired(proc.pid, timeout or 0.0, killed=True) from None
            assert proc.returncode is not None
            return CompletedRun(list(argv), proc.returncode, out, err)
        finally:
            try:
                await _kill_and_reap(proc)
            finally:  # a cancelled scope (trio) cancels that wait too: the reap there was synchronous
                self._reap_execs()

    def events(
        self, kinds: Iterable[EventKind] | None = None, *, pressure: Sequence[PressureTrigger] = ()
    ) -> ContainerEvents:
        """The container's events, as an asynchronous iterator for the running event loop (asyncio or trio):
        ``async for event in box.events(): ...``.

        Yields :class:`~nsprim.container.events.ContainerEvent` values — OOMs and
        OOM kills, ``memory.high`` and ``memory.max`` hits, freezes and thaws,
        the *pressure* triggers' firings — and last the exit of pid 1, after
        which the iteration ends.  Every source is a kernel notification on a
        descriptor the loop watches (see :mod:`nsprim.container.events`).
        Counters count from the container's start.

        *kinds* (default: every kind the host can deliver for it, pressure when
        triggers are given) that the host cannot deliver raise
        :class:`~nsprim.errors.UnsupportedError` naming the event, here and now."""
        from .events import ContainerEvents

        def exit_fds() -> dict[int, int]:
            if self.process.returncode is not None:
                return {}
            fds = {p.pid: p.exit_fd() for p in self._execs}
            fds[self.pid] = self.process.exit_fd()
            return {pid: fd for pid, fd in fds.items() if fd >= 0}

        return ContainerEvents(self.id, self.cgroup, self._collect, exit_fds, kinds, pressure)

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

    async def aclose(self) -> None:
        """:meth:`close` in the running event loop (asyncio or trio): SIGKILL every process of the
        container, await their exits through pidfd readiness, then remove what it used.

        Should this be cancelled (or fail) half-way, the cleanup finishes
        synchronously before the exception goes on: nothing is left behind."""
        try:
            if self.process.returncode is None and self.process.monitor is None:
                self._kill_without_waiting()
                await self.wait_async()
        finally:
            self.close()

    def _kill_without_waiting(self) -> None:
        """SIGKILL the container's processes; wait only where the host cannot kill a group at once."""
        cg = self.cgroup
        if cg is not None and not self.config.detach and cg.exists() and not cg.request_kill():
            self.kill()  # the v1 loop over the pids, frozen: it waits until the group is empty
            return
        self.process.kill()
        for p in self._execs:
            p.kill()

    def __enter__(self) -> RunningContainer:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    async def __aenter__(self) -> RunningContainer:
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.aclose()

    def __repr__(self) -> str:
        state = "running" if self.returncode is None else f"exited {self.returncode}"
        return f"<RunningContainer {self.id} pid={self.pid} {state}>"


async def _kill_and_reap(proc: Process) -> None:
    """Kill *proc* if it still runs and await its exit; cancelled meanwhile, reap it blocking (it was killed)."""
    try:
        if proc.returncode is None:
            proc.kill()
            await proc.wait_async()
    finally:
        proc.close()
