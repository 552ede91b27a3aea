"""Detached containers: started by one process, found again by name from any other.

A detached container (:meth:`Container.detach() <nsprim.container.Container.detach>`,
``nsprim run -d``) is cloned by a monitor process of the core
(``_native/monitor.c``) that stays its parent, as conmon is for podman: it reaps
the container's pid 1 (no zombie, whether or not the starting process is still
there), records its exit status and OOM kills, and removes its cgroup.  Every
detached container has an entry ``<state dir>/containers/<name>/``:

``state.json``
    its record, replaced whole (a temporary file renamed over it) when it
    starts and when it ends: name (also its id and its cgroup's name),
    command, creation time, pid and the monitor's pid, each with its
    ``/proc/PID/stat`` start time (a pid alone may have been reused), cgroup
    path and directories, status (``running`` or ``exited``) and, once ended,
    exit code (128+N for signal N), signal, whether the OOM killer struck,
    and when it ended.
``output.log``
    the payload's standard output and error, unless the caller gave its own;
    standard input is ``/dev/null``.

The cgroup goes when the container ends (its totals are of no use once the
record is written, and an ended group still holds kernel memory).  The entry
stays, so that ``nsprim ps -a`` shows how it ended, until
:meth:`DetachedContainer.remove` (``nsprim rm``); with
``detach(remove=True)`` (``run -d --rm``) the monitor removes it as soon as
the container ends.
"""

from __future__ import annotations

import contextlib
import enum
import errno
import os
import re
import select
import signal
import time
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .. import _sys
from .._dataclass import dataclass
from .._sys import watcher
from .._sys.spawn import MonitorSpec, core_file
from ..cgroup import CGroup
from ..errors import (
    ConfigError,
    ContainerRunningError,
    NoSuchContainerError,
    NsprimError,
    SyscallError,
    TimeoutExpired,
    UnsupportedError,
)
from ..process import DEVNULL
from .host import remove_group, state_dir

if TYPE_CHECKING:
    from ..process import Process
    from ..spawning import StdioArg
    from .config import ContainerConfig
    from .pool import Supply

__all__ = [
    "ContainerStatus",
    "ContainerState",
    "DetachedContainer",
    "NoSuchContainerError",
    "ContainerRunningError",
    "containers_dir",
    "list_containers",
    "find",
]

STATE_FILE = "state.json"


def _dumps(value: object) -> str:
    import json  # only here: an attached container writes no state file

    return json.dumps(value)


LOG_FILE = "output.log"
# A single path component that is also a valid cgroup name, as docker's names are.
_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,127}")
_SIGTERM = int(signal.SIGTERM)  # (ContainerState has a field named signal)


def containers_dir() -> Path:
    """Where detached containers have their entries: ``<state dir>/containers``."""
    return state_dir() / "containers"


class ContainerStatus(enum.Enum):
    """What a detached container is doing."""

    RUNNING = "running"
    EXITED = "exited"
    LOST = "lost"  # its monitor was killed: how it ended was not recorded


@dataclass(frozen=True)
class ContainerState:
    """One reading of a detached container's ``state.json``."""

    name: str
    command: tuple[str, ...]
    created: float
    pid: int
    starttime: int
    monitor_pid: int
    monitor_starttime: int
    status: str  # as recorded: "running" or "exited"
    cgroup: str | None
    cgroup_dirs: tuple[str, ...]
    auto_remove: bool
    exit_code: int | None = None
    signal: int | None = None
    oom_killed: bool = False
    finished: float | None = None
    stop_signal: int = _SIGTERM

    @classmethod
    def from_json(cls, record: Mapping[str, object]) -> ContainerState:
        """Parse a record; :class:`~nsprim.errors.ConfigError` if a field is missing or of the wrong type."""
        data: Mapping[str, Any] = record  # every conversion below checks its value
        try:
            return cls(
                name=str(data["name"]),
                command=tuple(str(a) for a in data["command"]),
                created=float(data["created"]),
                pid=int(data["pid"]),
                starttime=int(data["starttime"]),
                monitor_pid=int(data["monitor_pid"]),
                monitor_starttime=int(data["monitor_starttime"]),
                status=str(data["status"]),
                cgroup=None if data.get("cgroup") is None else str(data["cgroup"]),
                cgroup_dirs=tuple(str(d) for d in data.get("cgroup_dirs", ())),
                auto_remove=bool(data.get("auto_remove", False)),
                exit_code=None if data.get("exit_code") is None else int(data["exit_code"]),
                signal=None if data.get("signal") is None else int(data["signal"]),
                oom_killed=bool(data.get("oom_killed", False)),
                finished=None if data.get("finished") is None else float(data["finished"]),
                stop_signal=int(data.get("stop_signal", signal.SIGTERM)),
            )
        except (KeyError, TypeError, ValueError) as exc:
            raise ConfigError(f"malformed container state ({exc!r})", what="state") from None


def _load(directory: Path) -> ContainerState | None:
    """The entry's record; None while it starts (no record yet) or once it was removed."""
    try:
        text = (directory / STATE_FILE).read_text()
        import json

        return ContainerState.from_json(json.loads(text))
    except (FileNotFoundError, NotADirectoryError):
        return None
    except ValueError as exc:
        raise SyscallError(errno.EBADMSG, "read", directory / STATE_FILE, hint=str(exc)) from None


def _starttime(pid: int) -> int | None:
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            stat = f.read()
        return int(stat.rsplit(b")", 1)[1].split()[19])  # field 22; the name may hold ')'
    except (OSError, IndexError, ValueError):
        return None


def _open_verified(pid: int, starttime: int) -> int | None:
    """A pidfd of *pid* if it is still the process that started at *starttime*, else None.

    The pidfd is opened first: if the start time read afterwards matches, the
    descriptor names that very process, even if it ends and its pid is reused later.
    """
    if pid <= 0:
        return None
    try:
        fd = _sys.pidfd_open(pid)
    except (NsprimError, OSError):
        return None
    if _starttime(pid) != starttime:
        os.close(fd)
        return None
    return fd


def _ended(pidfd: int, timeout: float | None) -> bool:
    """Wait up to *timeout* seconds (None: forever) for the process to end."""
    poller = select.poll()
    poller.register(pidfd, select.POLLIN)
    return bool(poller.poll(None if timeout is None else max(0, int(timeout * 1000))))


class DetachedContainer:
    """A detached container, found by name in the state directory.

    :attr:`state` is the record as last read; :attr:`status` and the other
    live properties read it again.  Every operation checks the recorded pid
    against its start time before it signals anything.
    """

    def __init__(self, directory: Path, state: ContainerState) -> None:
        self.directory = directory
        self.state = state
        self._removed = False

    def __repr__(self) -> str:
        return f"<DetachedContainer {self.name} pid={self.state.pid} {self.state.status}>"

    @property
    def name(self) -> str:
        """The container's name (also its id, and its cgroup's name)."""
        return self.state.name

    @property
    def pid(self) -> int:
        """The host pid of the container's pid 1."""
        return self.state.pid

    @property
    def log_path(self) -> Path:
        """Where the payload's output goes (unless its starter gave other streams)."""
        return self.directory / LOG_FILE

    def refresh(self) -> ContainerState:
        """Read the record again (its monitor replaces it when the container ends)."""
        state = _load(self.directory)
        if state is None:
            self._removed = True  # removed: by `rm`, or by the monitor (auto-remove)
        else:
            self.state = state
        return self.state

    @property
    def status(self) -> ContainerStatus:
        """Running, exited (recorded), or lost (ended while its monitor was gone)."""
        state = self.refresh()
        if state.status == "exited":
            return ContainerStatus.EXITED
        if self._removed:
            return ContainerStatus.EXITED
        fd = _open_verified(state.pid, state.starttime)
        if fd is not None:
            try:
                if not _ended(fd, 0):
                    return ContainerStatus.RUNNING
            finally:
                os.close(fd)
        # pid 1 ended: its monitor writes the record in a moment, unless it is gone too.
        if not self._wait_monitor(10.0):
            return ContainerStatus.RUNNING  # still recording; the next look will tell
        state = self.refresh()
        if state.status == "exited" or self._removed:
            return ContainerStatus.EXITED
        return ContainerStatus.LOST

    @property
    def returncode(self) -> int | None:
        """How it ended, as :attr:`RunningContainer.returncode` says it (``-N`` for signal N);
        None while it runs or when it was not recorded."""
        state = self.refresh()
        if state.signal is not None:
            return -state.signal
        return state.exit_code

    @property
    def oom_killed(self) -> bool:
        """True if the OOM killer struck in the container's group."""
        return self.refresh().oom_killed

    def wait(self, timeout: float | None = None) -> int | None:
        """Wait until the container ended and its monitor recorded it; return :attr:`returncode`
        (None for an auto-removed container, whose record went with it).
        :class:`~nsprim.errors.TimeoutExpired` after *timeout* seconds."""
        deadline = None if timeout is None else time.monotonic() + timeout
        fd = _open_verified(self.state.pid, self.state.starttime)
        if fd is not None:
            try:
                if not _ended(fd, timeout):
                    raise TimeoutExpired(self.pid, timeout or 0.0)
            finally:
                os.close(fd)
        left = None if deadline is None else max(0.0, deadline - time.monotonic())
        if not self._wait_monitor(left):
            raise TimeoutExpired(self.state.monitor_pid, timeout or 0.0)
        return self.returncode

    def kill(self, sig: int = signal.SIGKILL) -> None:
        """Send *sig* to the container's pid 1 (its init forwards it, with ``init()``).

        SIGKILL ends the pid namespace, and the monitor kills whatever else is
        left in the container's cgroup when it removes the group.
        """
        fd = _open_verified(self.state.pid, self.state.starttime)
        if fd is None:
            return
        try:
            _sys.pidfd_send_signal(fd, sig)
        except (NsprimError, OSError):
            pass  # ended meanwhile
        finally:
            os.close(fd)

    def stop(self, timeout: float = 10.0) -> None:
        """Its stop signal (SIGTERM unless it was given another, as an image's ``StopSignal``), then
        SIGKILL if it still runs after *timeout* seconds (as ``docker stop -t``); returns once the
        monitor recorded the end."""
        fd = _open_verified(self.state.pid, self.state.starttime)
        if fd is not None:
            try:
                with contextlib.suppress(NsprimError, OSError):
                    _sys.pidfd_send_signal(fd, self.state.stop_signal)
                if not _ended(fd, timeout):
                    with contextlib.suppress(NsprimError, OSError):
                        _sys.pidfd_send_signal(fd, signal.SIGKILL)
                    _ended(fd, None)
            finally:
                os.close(fd)
        self._wait_monitor(None)
        self.refresh()

    def remove(self, *, force: bool = False) -> None:
        """Remove the container's entry and anything it left (its cgroup, if its monitor
        could not).  A running container is refused (:class:`ContainerRunningError`)
        unless *force*, which kills it first (as ``docker rm -f``)."""
        if self.status is ContainerStatus.RUNNING:
            if not force:
                raise ContainerRunningError(self.name)
            self.kill()
            fd = _open_verified(self.state.pid, self.state.starttime)
            if fd is not None:
                try:
                    _ended(fd, None)
                finally:
                    os.close(fd)
        self._wait_monitor(None)  # it may still be on its way out: after rm, nothing of the container runs
        state = self.state
        if state.cgroup is not None and any(os.path.isdir(d) for d in state.cgroup_dirs):
            with contextlib.suppress(FileNotFoundError):
                remove_group(CGroup.open(state.cgroup), forget=False)
        try:
            import shutil

            shutil.rmtree(self.directory)  # never follows symlinks
        except FileNotFoundError:
            pass
        except OSError as exc:
            raise SyscallError(exc.errno or 0, "remove", exc.filename or self.directory) from None
        self._removed = True

    def _wait_monitor(self, timeout: float | None) -> bool:
        """Wait for the monitor to end (it does once the record is written and the group is gone)."""
        fd = _open_verified(self.state.monitor_pid, self.state.monitor_starttime)
        if fd is None:
            return True
        try:
            return _ended(fd, timeout)
        finally:
            os.close(fd)


def list_containers(*, running_only: bool = False) -> list[DetachedContainer]:
    """The detached containers of this state directory, oldest first (with
    *running_only*, those still running); entries still starting are left out."""
    root = containers_dir()
    try:
        names = sorted(e.name for e in os.scandir(root) if e.is_dir(follow_symlinks=False))
    except FileNotFoundError:
        return []
    found = []
    for name in names:
        state = _load(root / name)
        if state is None:
            continue
        box = DetachedContainer(root / name, state)
        if running_only and box.status is not ContainerStatus.RUNNING:
            continue
        found.append(box)
    return sorted(found, key=lambda b: b.state.created)


def find(name: str) -> DetachedContainer:
    """The detached container called *name*; :class:`NoSuchContainerError` if there is none."""
    if not _NAME.fullmatch(name):
        raise NoSuchContainerError(name, containers_dir())
    directory = containers_dir() / name
    state = _load(directory)
    if state is None:
        raise NoSuchContainerError(name, containers_dir())
    return DetachedContainer(directory, state)


class Registration:
    """A detached container's entry while :func:`~nsprim.container.start.start_container`
    starts it: the name reserved, the record's first part, the hand-over to the monitor."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.directory = containers_dir() / name
        self.dirfd = -1
        self.log_fd = -1
        self.fields: dict[str, Any] = {}

    @staticmethod
    def check(config: ContainerConfig, warm: Supply | None) -> None:
        """Refuse what a detached container cannot have, before any system call."""
        if config.name is not None and not _NAME.fullmatch(config.name):
            raise ConfigError(
                f"container name `{config.name}`: letters, digits, '_', '.' and '-', "
                "at most 128, the first a letter or digit",
                what="name",
            )
        if config.proc_view:
            raise ConfigError("a /proc view is refreshed by the starting process: not with detach()", what="proc_view")
        if warm is not None:
            raise ConfigError("a warm pool's containers end with the pool: not with detach()", what="detach")

    def create(self) -> None:
        """Reserve the name: make the entry (a name in use is refused), watched until the monitor owns it."""
        parent = self.directory.parent
        try:
            parent.mkdir(parents=True, exist_ok=True, mode=0o700)
            os.mkdir(self.directory, 0o700)
        except FileExistsError:
            raise ConfigError(
                f"container name `{self.name}` is already in use (`{self.directory}`; `nsprim rm {self.name}`)",
                what="name",
            ) from None
        except OSError as exc:
            raise SyscallError(
                exc.errno or 0, "mkdir", exc.filename or self.directory, hint="set NSPRIM_STATE_DIR to a writable place"
            ) from None
        watcher.watch_tree(self.directory)
        self.dirfd = os.open(self.directory, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)

    def stdio(self, stdin: StdioArg, stdout: StdioArg, stderr: StdioArg) -> tuple[StdioArg, StdioArg, StdioArg]:
        """The defaults of a detached container: no input, output appended to ``output.log``."""
        if stdout is None or stderr is None:
            flags = os.O_WRONLY | os.O_CREAT | os.O_APPEND | os.O_CLOEXEC | os.O_NOFOLLOW
            self.log_fd = os.open(self.directory / LOG_FILE, flags, 0o600)
        return (
            DEVNULL if stdin is None else stdin,
            self.log_fd if stdout is None else stdout,
            self.log_fd if stderr is None else stderr,
        )

    def monitor_spec(self, config: ContainerConfig, cgroup: CGroup | None) -> MonitorSpec:
        """What the monitor needs, with the part of the record known before the clone."""
        dirs = [str(d) for d in cgroup.directories.values()] if cgroup is not None else []
        self.fields = {
            "version": 1,
            "id": self.name,
            "name": self.name,
            "command": list(config.argv),
            "created": time.time(),
            "cgroup": cgroup.path if cgroup is not None else None,
            "cgroup_dirs": dirs,
            "auto_remove": config.auto_remove,
            "stop_signal": config.stop_signal,
        }
        oom_file = None
        if cgroup is not None:
            with contextlib.suppress(UnsupportedError, NsprimError):
                version, memory = cgroup.directory_of_memory()
                oom_file = os.fsencode(memory / ("memory.events" if version == 2 else "memory.oom_control"))
        return MonitorSpec(
            state_dirfd=self.dirfd,
            state_dir=os.fsencode(self.directory),
            state_prefix=(_dumps(self.fields)[:-1] + ", ").encode(),
            cgroup_dirs=tuple(os.fsencode(d) for d in dirs),
            oom_file=oom_file,
            remove_state=config.auto_remove,
            exe=core_file(),
        )

    def commit(self, proc: Process, cgroup: CGroup | None) -> None:
        """Write the running record, withdraw the watcher's registrations and hand over to the monitor."""
        link = proc.monitor
        assert link is not None
        try:
            record = {
                **self.fields,
                "pid": link.pid,
                "starttime": link.starttime,
                "monitor_pid": link.monitor_pid,
                "monitor_starttime": link.monitor_starttime,
                "status": "running",
            }
            _write_atomically(self.directory / STATE_FILE, _dumps(record) + "\n")
            # Should we die between the forgetting and the verdict, the monitor sees none and cleans up.
            if cgroup is not None:
                watcher.forget_cgroups(cgroup.directories.values())
            watcher.forget_tree(self.directory)
            link.commit()
        except BaseException:
            link.abort()
            proc.close()
            raise
        finally:
            self.close()

    def close(self) -> None:
        """Close our descriptors of the entry (the monitor and the child have their own)."""
        for fd in (self.dirfd, self.log_fd):
            if fd >= 0:
                os.close(fd)
        self.dirfd = self.log_fd = -1

    def abandon(self) -> None:
        """The start failed: remove the entry (the caller removes the cgroup)."""
        self.close()
        import shutil

        shutil.rmtree(self.directory, ignore_errors=True)
        with contextlib.suppress(NsprimError, OSError):
            watcher.forget_tree(self.directory)


def _write_atomically(path: Path, text: str) -> None:
    tmp = path.with_name(f"{path.name}.{os.getpid()}")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC | os.O_NOFOLLOW, 0o600)
    try:
        data = memoryview(text.encode())
        while data:
            data = data[os.write(fd, data) :]
        os.fsync(fd)
    finally:
        os.close(fd)
    os.replace(tmp, path)
