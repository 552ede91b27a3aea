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
    from ...kept import QuickProcess
    from ...process import Process
    from .store import ContainerRecord, LockedContainer

__all__ = ["START_SOCKET", "SECCOMP_CACHE", "LIFT", "Created", "unix_socket", "start_socket"]

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
