"""A created container's handle, and the start socket its init waits on.

Apart from :mod:`.lifecycle` because a kept program (:mod:`.replay`) makes
both too, and imports neither the spec model nor the plan.
"""

from __future__ import annotations

import os

TYPE_CHECKING = False
if TYPE_CHECKING:
    import _socket

    from ...cgroup import CGroup
    from ...process import Process
    from .store import ContainerRecord, LockedContainer

__all__ = ["START_SOCKET", "SECCOMP_CACHE", "LIFT", "Created", "QuickProcess", "unix_socket", "start_socket"]

#: The init's start socket, in the container's state directory (0700).
START_SOCKET = "start.sock"
#: Compiled seccomp programs by content, in the state root (an ``@`` is in no container id).
SECCOMP_CACHE = "@seccomp"
#: The descriptors a plan hands its init sit at or above this (and above the preserved ones).
LIFT = 100


def unix_socket(dirfd: int, name: str, *, listen: bool) -> _socket.socket:
    """A socket bound (or connected) to *name* in the directory *dirfd*: by a relative
    path, as ``sun_path`` holds 108 bytes and a state path may be longer.

    The C module's socket: :mod:`socket` costs ``start`` the import of
    :mod:`selectors` and of four enum classes."""
    import _socket

    sock = _socket.socket(_socket.AF_UNIX, _socket.SOCK_STREAM | _socket.SOCK_CLOEXEC)
    here = os.open(".", os.O_PATH | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        os.fchdir(dirfd)
        if listen:
            sock.bind(name)
            sock.listen(1)
        else:
            sock.connect(name)
    except BaseException:
        sock.close()
        raise
    finally:
        os.fchdir(here)
        os.close(here)
    return sock


def start_socket(dirfd: int, *, listen: bool, floor: int = 0) -> int:
    """The start socket in the directory *dirfd* through the C core, without :mod:`_socket`: a descriptor
    bound and listening (at or above *floor*), or connected to it; :class:`OSError` if it cannot be."""
    from ..._sys._lib import lib

    fd = lib.nsp_unix_socket_at(dirfd, START_SOCKET.encode(), 1 if listen else 0, floor)
    if fd < 0:
        raise OSError(-fd, os.strerror(-fd))
    return fd


class Created:
    """A container ``create`` made: its locked directory, record, init and group (a :class:`CGroup`, or
    with a kept program only its directories)."""

    def __init__(
        self,
        locked: LockedContainer,
        record: ContainerRecord,
        proc: Process | QuickProcess,
        group: CGroup | None,
        cgroup_dirs: tuple[str, ...] = (),
    ) -> None:
        self.locked = locked
        self.record = record
        self.proc = proc
        self.group = group
        self.cgroup_dirs = cgroup_dirs if group is None else tuple(str(d) for d in group.directories.values())


class QuickProcess:
    """A kept program's init: its pid and a pidfd (this process is its parent until it exits)."""

    __slots__ = ("pid", "pidfd")

    def __init__(self, pid: int, pidfd: int) -> None:
        self.pid = pid
        self.pidfd = pidfd

    def send_signal(self, sig: int) -> None:
        """Signal the init through its pidfd (never a reused pid)."""
        if TYPE_CHECKING:
            from signal import pidfd_send_signal
        else:
            from _signal import pidfd_send_signal
        if self.pidfd >= 0:
            try:
                pidfd_send_signal(self.pidfd, sig)
            except ProcessLookupError:
                pass

    def kill(self) -> None:
        """SIGKILL the init."""
        self.send_signal(9)

    def wait(self) -> int:
        """Reap the init: its exit status, or minus the signal that ended it."""
        while True:
            try:
                _pid, status = os.waitpid(self.pid, 0)
                break
            except InterruptedError:
                continue
            except ChildProcessError:
                status = 0
                break
        self.release()
        return os.waitstatus_to_exitcode(status)

    def release(self) -> None:
        """Close the pidfd without reaping (the engine, a subreaper, reaps the init)."""
        if self.pidfd >= 0:
            os.close(self.pidfd)
            self.pidfd = -1
