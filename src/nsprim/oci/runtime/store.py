"""The runtime's state store: one directory per container under ``--root``.

::

    <root>/<id>/state.json    the container's record (this module's format, not the spec's State)

* **Ids** follow runc's rule: ASCII letters, digits and ``_ + , - .`` (the
  Go pattern ``^[\\w+-\\.]+$``), not ``.`` or ``..``, at most
  :data:`ID_MAX` bytes: an id is a single path component, never a path.
* **Unique.** The directory is made with ``mkdir``, which the kernel refuses
  for an existing name: two ``create`` of one id cannot both succeed.
* **Crash-safe.** ``state.json`` is only ever replaced whole: written to a
  temporary file in the same directory, synced, then renamed over the old
  one, so a reader sees the old record or the new one, never half of one,
  and a writer killed mid-write leaves the old record in place.
* **Serialized.** Commands that change a container hold an exclusive
  ``flock`` on its directory (:meth:`Store.lock`); the kernel drops it when
  the holder dies, so a killed runtime never leaves a container locked.
  ``state``, ``list`` and ``ps`` only read and take no lock.
* **Live status.** The record says what the runtime last did; the status
  reported is checked against the kernel (:func:`live_status`): a recorded
  pid whose ``/proc/PID/stat`` start time differs (the pid was reused) or
  that is a zombie is ``stopped``; a ``creating`` record whose creator is
  gone (a runtime killed mid-``create``) is ``stopped`` too, so that
  ``delete`` can clean it up.

Only the standard library's C parts are imported here (not even ``json``,
see :mod:`~nsprim.oci.runtime.jsonio`): ``state`` and ``list`` run on every
engine call and must start fast.
"""

from __future__ import annotations

import fcntl
import os
import time

from . import jsonio

TYPE_CHECKING = False  # typing and collections are not imported at run time
if TYPE_CHECKING:
    from collections.abc import Iterator, Mapping

__all__ = [
    "ID_MAX",
    "STATE_FILE",
    "DEFAULT_PARENT",
    "CREATING",
    "CREATED",
    "RUNNING",
    "PAUSED",
    "STOPPED",
    "ContainerRecord",
    "LockedContainer",
    "Store",
    "validate_id",
    "default_root",
    "process_starttime",
    "process_alive",
    "live_status",
    "remove_default_parent_dirs",
    "rfc3339_now",
]

#: The longest container id: a directory name, within NAME_MAX.
ID_MAX = 255
STATE_FILE = "state.json"
#: The group under which containers without a ``cgroupsPath`` go (``/nsprim-runtime/<id>``).
DEFAULT_PARENT = "nsprim-runtime"
RECORD_VERSION = 1

CREATING = "creating"
CREATED = "created"
RUNNING = "running"
PAUSED = "paused"
STOPPED = "stopped"
_STATUSES = frozenset({CREATING, CREATED, RUNNING, PAUSED, STOPPED})

_ID_CHARS = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_+,-.")


def _valid(name: str) -> bool:
    return 0 < len(name) <= ID_MAX and name not in (".", "..") and all(c in _ID_CHARS for c in name)


def validate_id(container_id: str) -> str:
    """Return *container_id* if it is a valid id, else raise :class:`~nsprim.errors.ConfigError`."""
    if _valid(container_id):
        return container_id
    from ...errors import ConfigError

    shown = container_id if len(container_id) <= 80 else container_id[:77] + "..."
    raise ConfigError(
        f"invalid container id `{shown}`: letters, digits and `_+,-.` only, 1 to {ID_MAX} of them, not `.` or `..`",
        what="id",
    )


def default_root() -> str:
    """``/run/nsprim-runtime``, or ``$XDG_RUNTIME_DIR/nsprim-runtime`` for a non-root caller (as runc)."""
    xdg = os.environ.get("XDG_RUNTIME_DIR")
    if os.geteuid() != 0 and xdg:
        return os.path.join(xdg, "nsprim-runtime")
    return "/run/nsprim-runtime"


def rfc3339_now() -> str:
    """Now, as Go's RFC3339Nano in UTC (what runc's ``state`` and ``list`` print)."""
    ns = time.time_ns()
    secs, frac = divmod(ns, 1_000_000_000)
    text = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(secs))
    digits = f"{frac:09d}".rstrip("0")
    return f"{text}.{digits}Z" if digits else f"{text}Z"


# ---- processes ---------------------------------------------------------------------------------


def _stat_fields(pid: int) -> list[bytes] | None:
    """The fields of ``/proc/PID/stat`` after the command name (state is [0], start time [19])."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            data = f.read()
    except OSError:
        return None
    # The command name may hold spaces and ')': the last ')' ends it.
    return data.rsplit(b")", 1)[-1].split()


def process_starttime(pid: int) -> int | None:
    """Field 22 of ``/proc/PID/stat``: with the pid, it names one process across pid reuse."""
    fields = _stat_fields(pid) if pid > 0 else None
    if fields is None or len(fields) < 20:
        return None
    return int(fields[19])


def process_alive(pid: int, starttime: int) -> bool:
    """True if *pid* is still the process that started at *starttime*, and not a zombie."""
    if pid <= 0:
        return False
    fields = _stat_fields(pid)
    if fields is None or len(fields) < 20:
        return False
    return fields[0] not in (b"Z", b"X", b"x") and int(fields[19]) == starttime


# ---- the record --------------------------------------------------------------------------------


class ContainerRecord:
    """What ``state.json`` holds about one container.

    ``status`` is the status the runtime recorded; :func:`live_status` says
    what it is now.  ``pid``/``starttime`` name the container's init,
    ``creator_pid``/``creator_starttime`` the runtime process that is creating
    it.  ``cgroup`` is the group's path (as :meth:`nsprim.cgroup.CGroup.open`
    takes it) and ``cgroup_dirs`` its directories.  Keys this version does
    not know are kept in ``extra`` and written back.
    """

    __slots__ = (
        "annotations",
        "bundle",
        "cgroup",
        "cgroup_dirs",
        "created",
        "creator_pid",
        "creator_starttime",
        "extra",
        "id",
        "pid",
        "rootfs",
        "rootless",
        "starttime",
        "status",
    )

    def __init__(
        self,
        *,
        id: str,
        bundle: str,
        status: str = CREATING,
        pid: int = 0,
        starttime: int = 0,
        creator_pid: int = 0,
        creator_starttime: int = 0,
        created: str = "",
        rootfs: str = "",
        cgroup: str | None = None,
        cgroup_dirs: tuple[str, ...] = (),
        annotations: Mapping[str, str] | None = None,
        rootless: bool = False,
        extra: Mapping[str, object] | None = None,
    ) -> None:
        if status not in _STATUSES:
            from ...errors import ConfigError

            raise ConfigError(f"unknown container status `{status}`", what="status")
        self.id = id
        self.bundle = bundle
        self.status = status
        self.pid = pid
        self.starttime = starttime
        self.creator_pid = creator_pid
        self.creator_starttime = creator_starttime
        self.created = created or rfc3339_now()
        self.rootfs = rootfs
        self.cgroup = cgroup
        self.cgroup_dirs = tuple(cgroup_dirs)
        self.annotations = dict(annotations or {})
        self.rootless = rootless
        self.extra = dict(extra or {})

    def __repr__(self) -> str:
        return f"<ContainerRecord {self.id} {self.status} pid={self.pid}>"

    def to_json(self) -> dict[str, object]:
        """The record as ``state.json`` holds it."""
        out: dict[str, object] = dict(self.extra)
        out.update(
            version=RECORD_VERSION,
            id=self.id,
            bundle=self.bundle,
            status=self.status,
            pid=self.pid,
            starttime=self.starttime,
            creator_pid=self.creator_pid,
            creator_starttime=self.creator_starttime,
            created=self.created,
            rootfs=self.rootfs,
            cgroup=self.cgroup,
            cgroup_dirs=list(self.cgroup_dirs),
            annotations=self.annotations,
            rootless=self.rootless,
        )
        return out

    @classmethod
    def from_json(cls, data: object, where: str) -> ContainerRecord:
        """Parse a record read from *where*; a malformed one is a :class:`~nsprim.errors.SyscallError` (EBADMSG)."""
        try:
            if not isinstance(data, dict):
                raise TypeError("not an object")
            known = {
                "id": str(data["id"]),
                "bundle": str(data["bundle"]),
                "status": str(data["status"]),
                "pid": int(data.get("pid") or 0),
                "starttime": int(data.get("starttime") or 0),
                "creator_pid": int(data.get("creator_pid") or 0),
                "creator_starttime": int(data.get("creator_starttime") or 0),
                "created": str(data.get("created") or ""),
                "rootfs": str(data.get("rootfs") or ""),
                "cgroup": None if data.get("cgroup") is None else str(data["cgroup"]),
                "cgroup_dirs": tuple(str(d) for d in data.get("cgroup_dirs") or ()),
                "annotations": {str(k): str(v) for k, v in (data.get("annotations") or {}).items()},
                "rootless": bool(data.get("rootless", False)),
            }
            extra = {k: v for k, v in data.items() if k not in known and k != "version"}
            return cls(**known, extra=extra)  # type: ignore[arg-type]
        except (KeyError, TypeError, ValueError, AttributeError) as exc:
            import errno

            from ...errors import SyscallError

            raise SyscallError(errno.EBADMSG, "read", where, hint=f"malformed container record: {exc}") from None

    def replace(self, **changes: object) -> ContainerRecord:
        """A copy with *changes* applied."""
        values: dict[str, object] = {name: getattr(self, name) for name in self.__slots__}
        values.update(changes)
        return ContainerRecord(**values)  # type: ignore[arg-type]


def remove_default_parent_dirs(cgroup: str | None, dirs: tuple[str, ...] | list[str]) -> None:
    """Remove the runtime's default parent group (``/nsprim-runtime``) above a removed container's
    group *dirs*, once its last group is gone (a busy one stays): without the cgroup layer."""
    if cgroup is None or not cgroup.startswith(f"/{DEFAULT_PARENT}/"):
        return
    for d in dirs:
        try:
            os.rmdir(os.path.dirname(d))
        except OSError:
            pass


def live_status(record: ContainerRecord) -> str:
    """The container's status now: the recorded one, checked against the kernel.

    ``paused`` is read from the group's freezer where one is recorded, so a
    group thawed behind the runtime's back shows ``running`` again.
    """
    if record.status == CREATING:
        return CREATING if process_alive(record.creator_pid, record.creator_starttime) else STOPPED
    if record.status == STOPPED or not process_alive(record.pid, record.starttime):
        return STOPPED
    if record.status in (RUNNING, PAUSED) and record.cgroup_dirs:
        return PAUSED if _frozen(record.cgroup_dirs) else RUNNING
    return record.status


def _frozen(dirs: tuple[str, ...]) -> bool:
    for d in dirs:
        for name, frozen in (("cgroup.freeze", (b"1",)), ("freezer.state", (b"FROZEN", b"FREEZING"))):
            try:
                with open(os.path.join(d, name), "rb") as f:
                    if f.read().strip() in frozen:
                        return True
            except OSError:
                continue
    return False


# ---- the store ---------------------------------------------------------------------------------


def _syscall_error(exc: OSError, operation: str, path: str) -> Exception:
    from ...errors import SyscallError

    return SyscallError(exc.errno or 0, operation, exc.filename or path)


def _write_atomically(dirfd: int, dirpath: str, data: bytes) -> None:
    tmp = f".{STATE_FILE}.{os.getpid()}.tmp"
    flags = os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC | os.O_NOFOLLOW
    try:
        fd = os.open(tmp, flags, 0o600, dir_fd=dirfd)
        try:
            view = memoryview(data)
            while view:
                view = view[os.write(fd, view) :]
            # No fsync: the rename alone keeps readers from a half-written record,
            # and a container's state means nothing after the machine goes down.
        finally:
            os.close(fd)
        os.rename(tmp, STATE_FILE, src_dir_fd=dirfd, dst_dir_fd=dirfd)
    except OSError as exc:
        try:
            os.unlink(tmp, dir_fd=dirfd)
        except OSError:
            pass
        raise _syscall_error(exc, "write", os.path.join(dirpath, STATE_FILE)) from None


class LockedContainer:
    """A container's directory, opened and exclusively locked (``flock``).

    Use as a context manager; the lock goes with :meth:`close` (or with the
    process).  :meth:`save` replaces the record atomically, :meth:`remove`
    deletes the directory.
    """

    def __init__(self, store: Store, container_id: str, dirfd: int, record: ContainerRecord | None) -> None:
        self.store = store
        self.id = container_id
        self.path = store.path(container_id)
        self.dirfd = dirfd
        self._record = record

    @property
    def record(self) -> ContainerRecord:
        """The record as read when the lock was taken (or last saved)."""
        if self._record is None:
            from ...errors import ContainerNotFoundError

            raise ContainerNotFoundError(self.id, self.store.root)
        return self._record

    @property
    def has_record(self) -> bool:
        """False for a directory without ``state.json``: a ``create`` that died before its first write."""
        return self._record is not None

    def save(self, record: ContainerRecord) -> None:
        """Replace ``state.json`` whole with *record*."""
        if self.dirfd < 0:
            raise ValueError("the container's lock was released")
        _write_atomically(self.dirfd, self.path, (jsonio.dumps(record.to_json(), compact=True) + "\n").encode())
        self._record = record

    def remove(self) -> None:
        """Delete the container's directory and everything in it (the lock is held until :meth:`close`)."""
        try:
            for name in os.listdir(self.dirfd):
                try:
                    os.unlink(name, dir_fd=self.dirfd)
                except IsADirectoryError:
                    import shutil  # only here: the usual directory holds files only

                    shutil.rmtree(os.path.join(self.path, name))
            os.rmdir(self.path)
        except FileNotFoundError:
            pass
        except OSError as exc:
            raise _syscall_error(exc, "remove", self.path) from None
        self._record = None

    def close(self) -> None:
        """Release the lock."""
        if self.dirfd >= 0:
            os.close(self.dirfd)
            self.dirfd = -1

    def __enter__(self) -> LockedContainer:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class Store:
    """The containers under one root directory (``--root``)."""

    def __init__(self, root: str) -> None:
        self.root = os.path.abspath(root)

    def __repr__(self) -> str:
        return f"<Store {self.root}>"

    def path(self, container_id: str) -> str:
        """The directory of container *container_id* (validated)."""
        return os.path.join(self.root, validate_id(container_id))

    def _read(self, container_id: str, dirfd: int | None = None) -> ContainerRecord | None:
        where = os.path.join(self.path(container_id), STATE_FILE)
        try:
            if dirfd is None:
                fd = os.open(where, os.O_RDONLY | os.O_CLOEXEC | os.O_NOFOLLOW)
            else:
                fd = os.open(STATE_FILE, os.O_RDONLY | os.O_CLOEXEC | os.O_NOFOLLOW, dir_fd=dirfd)
        except (FileNotFoundError, NotADirectoryError):
            return None
        except OSError as exc:
            raise _syscall_error(exc, "open", where) from None
        with os.fdopen(fd, "rb") as f:
            data = f.read()
        try:
            parsed = jsonio.loads(data)
        except ValueError as exc:
            import errno

            from ...errors import SyscallError

            raise SyscallError(errno.EBADMSG, "read", where, hint=f"not JSON: {exc}") from None
        record = ContainerRecord.from_json(parsed, where)
        if record.id != container_id:
            import errno

            from ...errors import SyscallError

            raise SyscallError(errno.EBADMSG, "read", where, hint=f"it names container `{record.id}`")
        return record

    def load(self, container_id: str) -> ContainerRecord:
        """The record of *container_id*, without a lock; :class:`~nsprim.errors.ContainerNotFoundError` if none."""
        record = self._read(container_id)
        if record is None:
            from ...errors import ContainerNotFoundError

            raise ContainerNotFoundError(container_id, self.root)
        return record

    def exists(self, container_id: str) -> bool:
        """True if a directory for *container_id* exists (with or without a record)."""
        return os.path.isdir(self.path(container_id))

    def ids(self) -> list[str]:
        """The ids of every container directory, sorted."""
        try:
            with os.scandir(self.root) as it:
                names = [e.name for e in it if e.is_dir(follow_symlinks=False)]
        except FileNotFoundError:
            return []
        except OSError as exc:
            raise _syscall_error(exc, "open", self.root) from None
        return sorted(n for n in names if _valid(n))

    def records(self) -> Iterator[ContainerRecord]:
        """Every container with a record, by id (directories of a ``create`` that died before writing are left out)."""
        for container_id in self.ids():
            record = self._read(container_id)
            if record is not None:
                yield record

    def owner(self, container_id: str) -> int:
        """The uid owning the container's directory (``list``'s OWNER)."""
        return os.stat(self.path(container_id)).st_uid

    def lock(self, container_id: str, *, missing_ok: bool = False) -> LockedContainer:
        """Open and lock *container_id*'s directory (blocking until other commands let go).

        :class:`~nsprim.errors.ContainerNotFoundError` if it does not exist
        (unless *missing_ok*, which returns a container without record for a
        directory without ``state.json``, to be removed by ``delete --force``).
        """
        path = self.path(container_id)
        while True:
            try:
                dirfd = os.open(path, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC)
            except (FileNotFoundError, NotADirectoryError):
                from ...errors import ContainerNotFoundError

                raise ContainerNotFoundError(container_id, self.root) from None
            except OSError as exc:
                raise _syscall_error(exc, "open", path) from None
            try:
                fcntl.flock(dirfd, fcntl.LOCK_EX)
                # The holder before us may have deleted it (and someone made it anew): look again.
                here = os.fstat(dirfd)
                try:
                    there = os.stat(path, follow_symlinks=False)
                except FileNotFoundError:
                    there = None
                if there is None or (there.st_dev, there.st_ino) != (here.st_dev, here.st_ino):
                    os.close(dirfd)
                    if there is None:
                        from ...errors import ContainerNotFoundError

                        raise ContainerNotFoundError(container_id, self.root)
                    continue
                record = self._read(container_id, dirfd)
            except BaseException:
                if dirfd >= 0:
                    try:
                        os.close(dirfd)
                    except OSError:
                        pass
                raise
            if record is None and not missing_ok:
                os.close(dirfd)
                from ...errors import ContainerNotFoundError

                raise ContainerNotFoundError(container_id, self.root)
            return LockedContainer(self, container_id, dirfd, record)

    def create(self, record: ContainerRecord) -> LockedContainer:
        """Make the directory of a new container, locked, and write its first record.

        The id is refused if any container (or a ``create`` that died) holds
        it: :class:`~nsprim.errors.ContainerExistsError`.
        """
        path = self.path(record.id)
        try:
            os.makedirs(self.root, 0o700, exist_ok=True)
            os.mkdir(path, 0o700)
        except FileExistsError:
            from ...errors import ContainerExistsError

            raise ContainerExistsError(record.id, self.root) from None
        except OSError as exc:
            raise _syscall_error(exc, "mkdir", path) from None
        try:
            locked = self.lock(record.id, missing_ok=True)
        except BaseException:
            try:
                os.rmdir(path)
            except OSError:
                pass
            raise
        try:
            locked.save(record)
        except BaseException:
            locked.remove()
            locked.close()
            raise
        return locked
