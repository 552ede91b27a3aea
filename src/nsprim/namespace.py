"""Linux namespaces: inspect, enter, create and persist them.

A namespace is named by a file: ``/proc/<pid>/ns/<type>``, or any path where
such a file was bind-mounted.  Its identity is the (device, inode) pair of
that file — what ``readlink /proc/self/ns/net`` shows as ``net:[4026531840]``.

    >>> from nsprim import Namespace, NamespaceType
    >>> ns = Namespace.of_pid("self", NamespaceType.UTS)
    >>> ns.type is NamespaceType.UTS
    True
    >>> ns.close()
"""

from __future__ import annotations

import contextlib
import enum
import errno
import os
from collections.abc import Iterator
from pathlib import Path
from types import TracebackType
from typing import Final

from . import _sys
from ._dataclass import dataclass
from ._sys import C
from .errors import ConfigError, NamespaceError, NamespaceTypeError, NoSuchProcessError, SyscallError

__all__ = [
    "NamespaceType",
    "NamespaceId",
    "Namespace",
    "namespace_ids",
    "shares_namespace",
    "unshare",
    "persist",
    "unpersist",
    "NETNS_RUN_DIR",
]

NETNS_RUN_DIR: Final = Path("/run/netns")

PidArg = int | str  # a pid, or "self"
_ExcType = type[BaseException] | None  # (the class below has a property named "type")


class NamespaceType(enum.Enum):
    """The eight namespace types, named as in ``/proc/<pid>/ns``."""

    MNT = "mnt"
    UTS = "uts"
    IPC = "ipc"
    PID = "pid"
    NET = "net"
    USER = "user"
    CGROUP = "cgroup"
    TIME = "time"

    @property
    def flag(self) -> int:
        """The ``CLONE_NEW*`` flag (from the C headers)."""
        return _FLAGS[self]

    @property
    def proc_name(self) -> str:
        """The file name under ``/proc/<pid>/ns``."""
        return self.value

    @classmethod
    def from_flag(cls, flag: int) -> NamespaceType:
        """The type whose ``CLONE_NEW*`` flag is *flag*."""
        for t, f in _FLAGS.items():
            if f == flag:
                return t
        raise ConfigError(f"{flag:#x} is not a CLONE_NEW* namespace flag", what="flag")

    @classmethod
    def parse(cls, name: str | NamespaceType) -> NamespaceType:
        """Accept ``"net"``, ``"NET"``, ``"network"``, ``"mount"``... or a NamespaceType."""
        if isinstance(name, NamespaceType):
            return name
        key = name.strip().lower()
        key = _ALIASES.get(key, key)
        try:
            return cls(key)
        except ValueError:
            known = ", ".join(t.value for t in cls)
            raise ConfigError(f"unknown namespace type `{name}` (known: {known})", what="namespace type") from None

    @staticmethod
    def mask(types: Iterator[NamespaceType] | frozenset[NamespaceType] | set[NamespaceType]) -> int:
        """OR of the ``CLONE_NEW*`` flags of *types*."""
        flags = 0
        for t in types:
            flags |= t.flag
        return flags


_FLAGS: Final[dict[NamespaceType, int]] = {
    NamespaceType.MNT: C.CLONE_NEWNS,
    NamespaceType.UTS: C.CLONE_NEWUTS,
    NamespaceType.IPC: C.CLONE_NEWIPC,
    NamespaceType.PID: C.CLONE_NEWPID,
    NamespaceType.NET: C.CLONE_NEWNET,
    NamespaceType.USER: C.CLONE_NEWUSER,
    NamespaceType.CGROUP: C.CLONE_NEWCGROUP,
    NamespaceType.TIME: C.CLONE_NEWTIME,
}
_ALIASES: Final = {"mount": "mnt", "ns": "mnt", "network": "net", "hostname": "uts", "users": "user"}


@dataclass(frozen=True, order=True)
class NamespaceId:
    """The identity of a namespace: its type and the (device, inode) of its file."""

    type: NamespaceType
    inode: int
    device: int

    def __str__(self) -> str:
        return f"{self.type.value}:[{self.inode}]"


def _proc_ns_path(pid: PidArg, nstype: NamespaceType) -> Path:
    if isinstance(pid, int) and pid <= 0:
        raise ConfigError(f"pid must be positive, not {pid}", what="pid")
    return Path(f"/proc/{pid}/ns/{nstype.proc_name}")


def _open_ns(path: Path, pid: PidArg | None) -> int:
    try:
        return os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    except FileNotFoundError as exc:
        if pid is not None and not Path(f"/proc/{pid}").exists():
            raise NoSuchProcessError(errno.ESRCH, "open", path, hint=f"no process {pid}") from exc
        raise NamespaceError(exc.errno, "open", path) from exc
    except OSError as exc:
        raise NamespaceError(exc.errno, "open", path) from exc


def _type_of_fd(fd: int, path: Path) -> NamespaceType:
    try:
        flag = _sys.ns_ioctl(fd, C.NS_GET_NSTYPE, path=path)
    except SyscallError as exc:
        if exc.errno in (errno.ENOTTY, errno.EINVAL):
            raise NamespaceTypeError(f"`{path}` is not a namespace file", what="path") from None
        raise
    return NamespaceType.from_flag(flag)


class Namespace:
    """An open handle on one namespace.

    Holding the handle keeps the namespace alive even after every process in
    it has exited.  Close it with :meth:`close` or a ``with`` block.
    Namespaces compare equal when they are the same kernel object.
    """

    __slots__ = ("_fd", "_id", "_path")

    def __init__(self, fd: int, nstype: NamespaceType, path: Path) -> None:
        """Wrap an already open namespace *fd* (taking ownership of it)."""
        st = os.fstat(fd)
        self._fd = fd
        self._path = path
        self._id = NamespaceId(nstype, st.st_ino, st.st_dev)

    # ---- construction -----------------------------------------------------

    @classmethod
    def of_pid(cls, pid: PidArg, nstype: NamespaceType | str) -> Namespace:
        """The namespace of type *nstype* of process *pid* (``"self"`` for the caller)."""
        t = NamespaceType.parse(nstype)
        path = _proc_ns_path(pid, t)
        fd = _open_ns(path, pid)
        try:
            return cls(fd, t, path)
        except BaseException:
            os.close(fd)
            raise

    @classmethod
    def current(cls, nstype: NamespaceType | str) -> Namespace:
        """The calling thread's namespace of type *nstype*."""
        t = NamespaceType.parse(nstype)
        return cls.of_pid("thread-self", t)

    @classmethod
    def from_path(cls, path: str | os.PathLike[str], nstype: NamespaceType | str | None = None) -> Namespace:
        """Open a namespace file (``/proc/<pid>/ns/*`` or a bind mount of one).

        With *nstype*, the file must be a namespace of that type
        (:class:`~nsprim.errors.NamespaceTypeError` otherwise).
        """
        p = Path(path)
        want = NamespaceType.parse(nstype) if nstype is not None else None
        fd = _open_ns(p, None)
        try:
            actual = _type_of_fd(fd, p)
            if want is not None and actual is not want:
                raise NamespaceTypeError(
                    f"`{p}` is a {actual.value} namespace, not a {want.value} namespace", what="path"
                )
            return cls(fd, actual, p)
        except BaseException:
            os.close(fd)
            raise

    @classmethod
    def all_of(cls, pid: PidArg) -> dict[NamespaceType, Namespace]:
        """Open every namespace of *pid* the kernel has."""
        out: dict[NamespaceType, Namespace] = {}
        try:
            for t in NamespaceType:
                path = _proc_ns_path(pid, t)
                if t is NamespaceType.TIME and not path.exists() and Path(f"/proc/{pid}").exists():
                    continue  # kernel without time namespaces
                out[t] = cls.of_pid(pid, t)
        except BaseException:
            for ns in out.values():
                ns.close()
            raise
        return out

    # ---- identity ---------------------------------------------------------

    @property
    def fd(self) -> int:
        """The open file descriptor (owned by this object)."""
        if self._fd < 0:
            raise ConfigError("namespace handle is closed", what="namespace")
        return self._fd

    @property
    def type(self) -> NamespaceType:
        """The namespace type."""
        return self._id.type

    @property
    def id(self) -> NamespaceId:
        """The namespace identity (type, inode, device)."""
        return self._id

    @property
    def inode(self) -> int:
        """The inode number, as ``readlink /proc/<pid>/ns/<type>`` shows it."""
        return self._id.inode

    @property
    def path(self) -> Path:
        """The file this handle was opened from."""
        return self._path

    def __eq__(self, other: object) -> bool:
        if isinstance(other, Namespace):
            return self._id == other._id
        if isinstance(other, NamespaceId):
            return self._id == other
        return NotImplemented

    def __hash__(self) -> int:
        return hash(self._id)

    def __repr__(self) -> str:
        return f"<Namespace {self._id} from {str(self._path)!r}>"

    def __str__(self) -> str:
        return str(self._id)

    def parent(self) -> Namespace:
        """The parent namespace (pid and user namespaces only; NS_GET_PARENT)."""
        fd = _sys.ns_ioctl(self.fd, C.NS_GET_PARENT, path=self._path)
        return Namespace(fd, self.type, Path(f"/proc/self/fd/{fd}"))

    def owner(self) -> Namespace:
        """The user namespace that owns this namespace (NS_GET_USERNS)."""
        fd = _sys.ns_ioctl(self.fd, C.NS_GET_USERNS, path=self._path)
        return Namespace(fd, NamespaceType.USER, Path(f"/proc/self/fd/{fd}"))

    # ---- enter --------------------------------------------------------------

    @contextlib.contextmanager
    def entered(self) -> Iterator[Namespace]:
        """Move the calling thread into this namespace for the ``with`` block.

        The thread's previous namespace is restored on exit.  The kernel lets
        only a single-threaded process change its mount or user namespace;
        for those, or to run a program inside, use :func:`nsprim.spawn` with
        ``join=``.  A pid or time namespace applies to children the thread
        creates in the block, not to the thread itself.
        """
        t = self.type
        if t is NamespaceType.USER:
            raise NamespaceError(
                errno.EINVAL,
                "setns",
                self._path,
                hint="a process cannot enter a user namespace and come back; spawn a process with join= instead",
            )
        own_name = f"{t.proc_name}_for_children" if t in (NamespaceType.PID, NamespaceType.TIME) else t.proc_name
        old = Namespace(_open_ns(Path(f"/proc/thread-self/ns/{own_name}"), None), t, Path("/proc/thread-self/ns"))
        try:
            self._setns()
            try:
                yield self
            finally:
                _sys.setns(old.fd, t.flag, path=f"/proc/thread-self/ns/{own_name}")
        finally:
            old.close()

    def enter(self) -> None:
        """Move the calling thread into this namespace for good (setns(2))."""
        self._setns()

    def _setns(self) -> None:
        try:
            _sys.setns(self.fd, self.type.flag, path=self._path)
        except SyscallError as exc:
            hint = None
            if exc.errno == errno.EINVAL and self.type in (NamespaceType.MNT, NamespaceType.USER):
                import threading  # only here: a container's start imports no threading

                if threading.active_count() > 1:
                    hint = "the kernel refuses mount and user namespace changes to a multi-threaded process"
                elif self.type is NamespaceType.MNT:
                    hint = "the kernel refuses it while the file system info is shared"
            raise NamespaceError(exc.errno, "setns", self._path, hint=hint) from None

    # ---- persist ------------------------------------------------------------

    def persist(self, target: str | os.PathLike[str]) -> Path:
        """Bind-mount this namespace's file to *target*, keeping it alive.

        *target* is created as an empty file if missing.  Undo with
        :func:`unpersist`.  See :func:`persist` for details.
        """
        return persist(self, target)

    def persist_net(self, name: str) -> Path:
        """Persist a network namespace as ``/run/netns/NAME``, as ``ip netns add`` does.

        ``ip netns exec NAME ...`` then runs commands in it.  Remove it with
        :func:`unpersist` (``nsprim.unpersist("/run/netns/NAME")``).
        """
        if self.type is not NamespaceType.NET:
            raise NamespaceTypeError(f"{self.id} is not a network namespace", what="namespace")
        if not name or "/" in name or name in (".", "..") or "\0" in name:
            raise ConfigError(f"`{name}` is not a valid network namespace name", what="name")
        NETNS_RUN_DIR.mkdir(parents=True, exist_ok=True)
        return persist(self, NETNS_RUN_DIR / name)

    # ---- lifetime -------------------------------------------------------------

    def close(self) -> None:
        """Close the handle (the namespace lives on while anything else uses it)."""
        if self._fd >= 0:
            fd, self._fd = self._fd, -1
            os.close(fd)

    @property
    def closed(self) -> bool:
        """Whether :meth:`close` was called."""
        return self._fd < 0

    def __enter__(self) -> Namespace:
        return self

    def __exit__(self, exc_type: _ExcType, exc: BaseException | None, tb: TracebackType | None) -> None:
        self.close()

    def __del__(self) -> None:
        with contextlib.suppress(Exception):
            self.close()


def namespace_ids(pid: PidArg = "self") -> dict[NamespaceType, NamespaceId]:
    """The identity of every namespace of *pid*, read with stat(2) only."""
    out: dict[NamespaceType, NamespaceId] = {}
    for t in NamespaceType:
        path = _proc_ns_path(pid, t)
        try:
            st = os.stat(path)
        except FileNotFoundError as exc:
            if not Path(f"/proc/{pid}").exists():
                raise NoSuchProcessError(errno.ESRCH, "stat", path, hint=f"no process {pid}") from exc
            continue  # this kernel lacks the type
        except OSError as exc:
            raise NamespaceError(exc.errno, "stat", path) from exc
        out[t] = NamespaceId(t, st.st_ino, st.st_dev)
    return out


def shares_namespace(pid_a: PidArg, pid_b: PidArg, nstype: NamespaceType | str) -> bool:
    """Whether processes *pid_a* and *pid_b* are in the same namespace of *nstype*."""
    t = NamespaceType.parse(nstype)
    ids = []
    for pid in (pid_a, pid_b):
        path = _proc_ns_path(pid, t)
        try:
            st = os.stat(path)
        except FileNotFoundError as exc:
            raise NoSuchProcessError(errno.ESRCH, "stat", path, hint=f"no process {pid}") from exc
        ids.append((st.st_dev, st.st_ino))
    return ids[0] == ids[1]


def unshare(*types: NamespaceType | str) -> None:
    """Move the calling process into new namespaces of *types* (unshare(2)).

    Mount and user namespaces need a single-threaded process.  For pid and
    time namespaces only later children are placed in the new namespace.
    A new mount namespace gets ``/`` made recursively private at once, so
    that nothing mounted in it propagates back to the host.
    """
    if not types:
        raise ConfigError("unshare needs at least one namespace type", what="types")
    parsed = {NamespaceType.parse(t) for t in types}
    try:
        _sys.unshare(NamespaceType.mask(parsed))
    except SyscallError as exc:
        hint = None
        if exc.errno == errno.EINVAL and parsed & {NamespaceType.MNT, NamespaceType.USER}:
            hint = "user and mount namespaces need a single-threaded process"
        names = ",".join(sorted(t.value for t in parsed))
        raise NamespaceError(exc.errno, "unshare", detail=f"unshare {names}", hint=hint) from None
    if NamespaceType.MNT in parsed:
        _sys.mount(None, "/", None, C.MS_REC | C.MS_PRIVATE)


def persist(ns: Namespace, target: str | os.PathLike[str]) -> Path:
    """Keep *ns* alive by bind-mounting its file onto *target*.

    The mount lives in the caller's mount namespace.  For a network namespace
    use ``/run/netns/NAME`` to make it visible to ``ip netns`` (iproute2);
    :meth:`Namespace.persist_net` does that.  (The kernel refuses to bind a
    mount namespace inside itself: persist those from another one.)  A missing *target* file is
    created, and removed again if the bind mount fails.
    """
    path = Path(target)
    created = False
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o444)
        os.close(fd)
        created = True
    try:
        _sys.mount(f"/proc/self/fd/{ns.fd}", path, None, C.MS_BIND)
    except SyscallError as exc:
        if created:
            with contextlib.suppress(OSError):
                path.unlink()
        hint = "a mount namespace cannot be bound inside itself" if exc.errno == errno.EINVAL else None
        raise NamespaceError(exc.errno, "persist", path, detail=f"persist {ns.id} at `{path}`", hint=hint) from None
    return path


def unpersist(target: str | os.PathLike[str]) -> None:
    """Undo :func:`persist`: unmount *target* and delete the file."""
    path = Path(target)
    try:
        _sys.umount(path, C.MNT_DETACH | C.UMOUNT_NOFOLLOW)
    except SyscallError as exc:
        if exc.errno != errno.EINVAL:  # EINVAL: not a mount point any more
            raise NamespaceError(exc.errno, "umount", path) from None
    try:
        path.unlink()
    except FileNotFoundError:
        pass
    except OSError as exc:
        raise NamespaceError(exc.errno, "unlink", path) from None
