"""Reading and writing cgroup control files with crun-style errors.

Every OSError becomes a :class:`~nsprim.errors.SyscallError` whose message
reads like "write `64M` to `/sys/fs/cgroup/x/memory.max`: Device or resource busy".
"""

from __future__ import annotations

import contextlib
import errno
import os
from pathlib import Path

from nsprim.cgroup.host import Controller
from nsprim.errors import SyscallError

from .._dataclass import dataclass

__all__ = [
    "Write",
    "read_text",
    "read_int",
    "read_keyed",
    "write_text",
    "try_read_text",
    "try_read_int",
    "MISSING",
    "mkdir",
    "rmdir",
    "rmdir_quietly",
    "subdirs",
]

_HINTS = {
    errno.EBUSY: "the no-internal-processes rule, a lower usage than the new limit, or a group still in use",
    errno.EOPNOTSUPP: "the controller does not support this here",
    errno.ENOSPC: "empty cpuset, or the process may not be moved into this cgroup",
}


@dataclass(frozen=True)
class Write:
    """One control file write of a resource plan.

    ``names`` are alternatives: the first file that exists is written.
    ``tolerate`` lists errnos to ignore (for writes repeated later in the
    plan to work around ordering constraints); ``hint`` explains a failure.
    """

    controller: Controller
    names: tuple[str, ...]
    value: str
    tolerate: frozenset[int] = frozenset()
    hint: str | None = None

    def describe(self) -> str:
        """``memory.max=64M``-style text for messages."""
        return f"{self.names[0]}={self.value}"


def _read_fd(fd: int) -> str:
    # Control files are small; one read usually returns all, the loop handles long cgroup.procs.
    chunks = []
    while True:
        chunk = os.read(fd, 65536)
        if not chunk:
            break
        chunks.append(chunk)
    return b"".join(chunks).decode("utf-8", "surrogateescape")


def read_text(path: Path | str) -> str:
    """Read a control file; errors raise SyscallError("read", path).

    Plain ``os.open``/``os.read``: a control file is read whole, and the
    buffered text layers of ``open()`` cost more than the read itself.
    """
    try:
        fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
        try:
            return _read_fd(fd)
        finally:
            os.close(fd)
    except OSError as exc:
        raise SyscallError(exc.errno or errno.EIO, "read", path) from exc


def try_read_text(path: Path | str) -> str | None:
    """Read a control file, or None when it does not exist."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    except FileNotFoundError:
        return None
    except OSError as exc:
        raise SyscallError(exc.errno or errno.EIO, "read", path) from exc
    try:
        return _read_fd(fd)
    except OSError as exc:
        raise SyscallError(exc.errno or errno.EIO, "read", path) from exc
    finally:
        os.close(fd)


def try_read_int(path: Path | str) -> int | None:
    """Read a single number from a file that may not exist: :data:`MISSING` then, None for ``max``."""
    text = try_read_text(path)
    if text is None:
        return MISSING
    return _parse_int(text, path)


#: What :func:`try_read_int` returns for a missing file (distinct from None, which means ``max``).
MISSING = -(1 << 63)


def _parse_int(text: str, path: Path | str) -> int | None:
    text = text.strip()
    if text == "max":
        return None
    try:
        return int(text)
    except ValueError:
        raise SyscallError(errno.EINVAL, "parse", path, detail=f"parse `{text}` from `{path}` as a number") from None


def read_int(path: Path | str) -> int | None:
    """Read a single number; ``max`` gives None."""
    return _parse_int(read_text(path), path)


def read_keyed(path: Path | str) -> dict[str, int]:
    """Read a flat-keyed file (``key value`` lines, like memory.stat or cgroup.events)."""
    result: dict[str, int] = {}
    for line in read_text(path).splitlines():
        parts = line.split()
        if len(parts) == 2:
            try:
                result[parts[0]] = int(parts[1])
            except ValueError:
                continue
    return result


def write_text(path: Path, value: str, *, hint: str | None = None) -> None:
    """Write *value* to a control file in one ``write(2)``; errors raise SyscallError("write", ...)."""
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CLOEXEC)
    except OSError as exc:
        raise SyscallError(exc.errno or errno.EIO, "open", path) from exc
    try:
        os.write(fd, value.encode())
    except OSError as exc:
        err = exc.errno or errno.EIO
        raise SyscallError(
            err, "write", path, detail=f"write `{value}` to `{path}`", hint=hint if hint else _HINTS.get(err)
        ) from exc
    finally:
        os.close(fd)


def mkdir(path: Path) -> None:
    """``mkdir(2)`` a cgroup directory (mode 0755)."""
    try:
        os.mkdir(path, 0o755)
    except OSError as exc:
        hint = "the parent cgroup does not exist" if exc.errno == errno.ENOENT else None
        raise SyscallError(exc.errno or errno.EIO, "mkdir", path, hint=hint) from exc


def rmdir(path: Path) -> None:
    """``rmdir(2)`` a cgroup directory."""
    try:
        os.rmdir(path)
    except OSError as exc:
        hint = "the cgroup still has processes or child groups" if exc.errno == errno.EBUSY else None
        raise SyscallError(exc.errno or errno.EIO, "rmdir", path, hint=hint) from exc


def subdirs(d: Path) -> list[Path]:
    """Child directories of *d*, sorted; none if *d* is gone (uses d_type, no stat per file)."""
    try:
        with os.scandir(d) as it:
            return sorted(Path(e.path) for e in it if e.is_dir(follow_symlinks=False))
    except FileNotFoundError:
        return []


def rmdir_quietly(d: Path) -> None:
    """rmdir, ignoring errors (rollback of directories we created)."""
    with contextlib.suppress(SyscallError):
        rmdir(d)
