"""Directory trees of any depth: remove and walk them without recursion.

A layer or a container's upper dir can be thousands of directories deep;
``shutil.rmtree`` and ``os.walk`` recurse (before Python 3.12/3.13) and stop
with ``RecursionError`` past about a thousand.  :func:`remove_tree_at` holds one
directory descriptor at a time, whatever the depth, walks back up through
``..`` (checked against the inode it came from), never follows a symlink
and refuses to remove a tree with a mount point in it.
"""

from __future__ import annotations

import errno
import os
import stat
from collections.abc import Iterator

from ..._dataclass import dataclass, field
from ..._paths import StrPath
from ...errors import SyscallError
from ..mountinfo import mountinfo

__all__ = ["remove_tree", "remove_tree_at", "walk"]


_DIR = os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC


@dataclass
class _Level:
    name: str  # in the directory above
    ino: int
    subdirs: list[str] = field(default_factory=list)  # still to remove


def _clear(fd: int, where: str) -> list[str]:
    """Unlink every non-directory in directory *fd*; return the names of its subdirectories."""
    subdirs = []
    with os.scandir(fd) as it:
        for entry in it:
            if entry.is_dir(follow_symlinks=False):
                subdirs.append(entry.name)
                continue
            try:
                os.unlink(entry.name, dir_fd=fd)
            except FileNotFoundError:
                continue
            except OSError as exc:
                raise SyscallError(exc.errno, "unlink", os.path.join(where, entry.name)) from None
    return subdirs


def _mount_below(dir_fd: int, name: str) -> str | None:
    """A mount point at or below *name* (a bind mount keeps ``st_dev``: only the mount table tells)."""
    try:
        base = os.path.join(os.readlink(f"/proc/self/fd/{dir_fd}"), name)
        table = mountinfo()
    except OSError:
        return None
    for m in table:
        if m.mount_point == base or m.mount_point.startswith(base.rstrip("/") + "/"):
            return m.mount_point
    return None


def remove_tree_at(dir_fd: int, name: str, *, shown: str | None = None) -> None:
    """Remove *name* below directory *dir_fd*, and everything below it; nothing if it does not exist.

    Raises :class:`~nsprim.errors.SyscallError` (naming *shown*, or *name*),
    ``EBUSY`` for a tree with a mount point in it (nothing is removed then).
    """
    where = shown if shown is not None else name
    try:
        st = os.stat(name, dir_fd=dir_fd, follow_symlinks=False)
    except FileNotFoundError:
        return
    except OSError as exc:
        raise SyscallError(exc.errno, "stat", where) from None
    if not stat.S_ISDIR(st.st_mode):
        try:
            os.unlink(name, dir_fd=dir_fd)
        except FileNotFoundError:
            pass
        except OSError as exc:
            raise SyscallError(exc.errno, "unlink", where) from None
        return
    if (mp := _mount_below(dir_fd, name)) is not None:
        raise SyscallError(errno.EBUSY, "remove", where, hint=f"`{mp}` is a mount point: unmount it first")
    try:
        fd = os.open(name, _DIR | os.O_NOFOLLOW, dir_fd=dir_fd)
    except OSError as exc:
        raise SyscallError(exc.errno, "open", where) from None
    try:
        dev = os.fstat(fd).st_dev
        stack = [_Level(name, st.st_ino, _clear(fd, where))]
        path = [where]  # for messages only
        while True:
            top = stack[-1]
            if top.subdirs:
                sub = top.subdirs.pop()
                try:
                    nfd = os.open(sub, _DIR | os.O_NOFOLLOW, dir_fd=fd)
                except FileNotFoundError:
                    continue
                except OSError as exc:
                    raise SyscallError(exc.errno, "open", os.path.join(*path, sub)) from None
                nst = os.fstat(nfd)
                if nst.st_dev != dev:
                    os.close(nfd)
                    where = os.path.join(*path, sub)
                    raise SyscallError(
                        errno.EBUSY, "remove", where, hint=f"`{where}` is a mount point: unmount it first"
                    )
                os.close(fd)
                fd = nfd
                path.append(sub)
                stack.append(_Level(sub, nst.st_ino, _clear(fd, os.path.join(*path))))
                continue
            if len(stack) == 1:
                break
            try:
                parent = os.open("..", _DIR, dir_fd=fd)
            except OSError as exc:
                raise SyscallError(exc.errno, "open", os.path.join(*path, "..")) from None
            pst = os.fstat(parent)
            if (pst.st_dev, pst.st_ino) != (dev, stack[-2].ino):
                os.close(parent)
                raise SyscallError(errno.ESTALE, "remove", os.path.join(*path), hint="moved while being removed")
            os.close(fd)
            fd = parent
            path.pop()
            stack.pop()
            try:
                os.rmdir(top.name, dir_fd=fd)
            except FileNotFoundError:
                pass
            except OSError as exc:
                raise SyscallError(exc.errno, "rmdir", os.path.join(*path, top.name)) from None
    finally:
        os.close(fd)
    try:
        os.rmdir(name, dir_fd=dir_fd)
    except FileNotFoundError:
        pass
    except OSError as exc:
        raise SyscallError(exc.errno, "rmdir", where) from None


def remove_tree(path: StrPath) -> None:
    """Remove *path* (a directory tree, or any other file); nothing if it does not exist."""
    p = os.path.abspath(os.fspath(path))
    parent, name = os.path.split(p)
    if not name:
        raise SyscallError(errno.EBUSY, "remove", p, hint="refusing to remove `/`")
    try:
        pfd = os.open(parent, os.O_PATH | os.O_DIRECTORY | os.O_CLOEXEC)
    except FileNotFoundError:
        return
    except OSError as exc:
        raise SyscallError(exc.errno, "open", parent) from None
    try:
        remove_tree_at(pfd, name, shown=p)
    finally:
        os.close(pfd)


def walk(top: StrPath) -> Iterator[tuple[str, list[str], list[str]]]:
    """``os.walk(top)`` top-down, names sorted, without recursion; symlinks are not followed.

    Remove names from the yielded directory list to skip them; unreadable
    directories are skipped, as ``os.walk`` does.
    """
    stack = [os.fspath(top)]
    while stack:
        d = stack.pop()
        dirs: list[str] = []
        files: list[str] = []
        try:
            with os.scandir(d) as it:
                for entry in it:
                    try:
                        is_dir = entry.is_dir(follow_symlinks=False)
                    except OSError:
                        is_dir = False
                    (dirs if is_dir else files).append(entry.name)
        except OSError:
            continue
        dirs.sort()
        files.sort()
        yield d, dirs, files
        stack.extend(os.path.join(d, n) for n in reversed(dirs))
