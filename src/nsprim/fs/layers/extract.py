"""Extraction: an OCI layer tar into an overlay layer directory, or onto a plain tree.

:func:`extract_layer` converts a tar into a new layer directory that
overlayfs can stack (``.wh.x`` becomes a whiteout device, ``.wh..wh..opq`` an
opaque xattr), and :func:`apply_layer` applies a tar onto a plain
("flattened") root file system, deleting what it whites out.  The way there
is :mod:`nsprim.fs.layers.commit`.

Extraction never writes outside its directory: names that are absolute or
hold ``..`` are refused, every parent directory is opened with
``openat2(RESOLVE_BENEATH | RESOLVE_NO_SYMLINKS)`` so that an entry can never
be written *through* a symlink, and overlay's own xattrs in a tar are
dropped.  A refused entry raises :class:`UnsafeTarEntryError` naming it, before
anything is written when the name alone gives it away; :func:`extract_layer`
is all-or-nothing (it extracts into a temporary sibling and renames).

Nothing in a tar gains privilege on the host: device nodes, setuid/setgid
bits and file capabilities are kept only with ``preserve_special=True``
(a :class:`~nsprim.fs.layers.LayerStore`, whose root no other user can
enter), and only ``user.*`` xattrs and ``security.capability`` are ever
restored.  Every tar is held to :class:`~nsprim.fs.layers.ExtractLimits`, and
whatever is wrong with it comes back as a :class:`~nsprim.errors.LayerError`
(or a :class:`~nsprim.errors.SyscallError` naming the entry).
"""

from __future__ import annotations

import contextlib
import errno
import math
import os
import stat
import tarfile
import uuid
from collections.abc import Iterator
from pathlib import Path

from ... import _sys
from ..._paths import StrPath
from ..._sys import C
from ...errors import ConfigError, LayerError, SyscallError
from ..overlay import OPAQUE_XATTR, USER_OPAQUE_XATTR
from .limits import DEFAULT_LIMITS, ExtractLimits, LimitCounter
from .members import (
    CAPABILITY_XATTR,
    CHUNK,
    OPAQUE_MARKER,
    WHITEOUT_PREFIX,
    XATTR_PAX,
    LayerStats,
    Member,
    TarSource,
    UnsafeTarEntryError,
    clean_name,
    open_tar,
    plan,
    reading,
    restorable,
)
from .tree import remove_tree, remove_tree_at

__all__ = [
    "WHITEOUT_PREFIX",
    "OPAQUE_MARKER",
    "UnsafeTarEntryError",
    "extract_layer",
    "apply_layer",
    "clean_name",
]

_SETID = stat.S_ISUID | stat.S_ISGID


def _mtime_ns(mtime: float) -> int:
    """A tar mtime back to nanoseconds (a commit records microseconds), within what the kernel takes."""
    if not math.isfinite(mtime):
        return 0
    return max(-(1 << 62), min(round(mtime * 1_000_000) * 1000, 1 << 62))


_RESOLVE = C.RESOLVE_BENEATH | C.RESOLVE_NO_SYMLINKS | C.RESOLVE_NO_MAGICLINKS
_PATH_DIR = os.O_PATH | os.O_DIRECTORY | os.O_CLOEXEC


_have_openat2 = True


def _open_beneath(dir_fd: int, path: str) -> int:
    """An O_PATH descriptor of directory *path* below *dir_fd*, never through a symlink or ``..``.

    ``openat2(RESOLVE_BENEATH | RESOLVE_NO_SYMLINKS)``; on kernels without it
    (before 5.6), one ``O_NOFOLLOW`` component at a time.  Raises
    :class:`~nsprim.errors.SyscallError` (``ELOOP`` for a symlink).
    """
    global _have_openat2
    if _have_openat2:
        try:
            return _sys.openat2(dir_fd, path, _PATH_DIR, 0, _RESOLVE)
        except SyscallError as exc:
            if exc.errno != errno.ENOSYS:
                raise
            _have_openat2 = False
    fd = os.open(".", _PATH_DIR, dir_fd=dir_fd)
    try:
        for comp in (c for c in path.split("/") if c not in ("", ".")):
            if comp == "..":
                raise SyscallError(errno.EXDEV, "open", path)
            try:
                nfd = os.open(comp, _PATH_DIR | os.O_NOFOLLOW, dir_fd=fd)
            except OSError as exc:
                err = exc.errno or errno.EIO
                with contextlib.suppress(OSError):
                    if stat.S_ISLNK(os.stat(comp, dir_fd=fd, follow_symlinks=False).st_mode):
                        err = errno.ELOOP
                raise SyscallError(err, "open", path) from None
            os.close(fd)
            fd = nfd
        return fd
    except BaseException:
        os.close(fd)
        raise


class _Extractor:
    """Writes members below one root directory file descriptor, safely."""

    def __init__(self, root_fd: int, *, opaque_xattr: str, same_owner: bool, preserve_special: bool) -> None:
        self.root_fd = root_fd
        self.opaque_xattr = opaque_xattr
        self.same_owner = same_owner
        self.preserve_special = preserve_special
        self.stripped = 0
        self.dropped_xattrs = 0
        self.dir_times: list[tuple[tuple[str, ...], int]] = []

    def _open(self, entry: str, parts: tuple[str, ...]) -> int:
        """An O_PATH descriptor of directory *parts*, never through a symlink."""
        return _open_beneath(self.root_fd, "/".join(parts) or ".")

    def parent(self, entry: str, parts: tuple[str, ...], *, create: bool = True) -> int:
        """Open (creating, 0755) the parent directory of *parts*."""
        try:
            return self._open(entry, parts[:-1])
        except SyscallError as exc:
            if exc.errno != errno.ENOENT or not create:
                raise self._refuse(entry, parts[:-1], exc) from None
        fd = os.open(".", _PATH_DIR, dir_fd=self.root_fd)
        try:
            for i, comp in enumerate(parts[:-1]):
                try:
                    nfd = _open_beneath(fd, comp)
                except SyscallError as exc:
                    if exc.errno != errno.ENOENT:
                        raise self._refuse(entry, parts[: i + 1], exc) from None
                    os.mkdir(comp, 0o755, dir_fd=fd)
                    nfd = _open_beneath(fd, comp)
                os.close(fd)
                fd = nfd
            return fd
        except BaseException:
            os.close(fd)
            raise

    @staticmethod
    def _refuse(entry: str, parts: tuple[str, ...], exc: SyscallError) -> UnsafeTarEntryError | SyscallError:
        where = "/".join(parts)
        if exc.errno in (errno.ELOOP, errno.EXDEV):
            return UnsafeTarEntryError(entry, f"`{where}` is a symlink: refusing to write through it")
        if exc.errno == errno.ENOTDIR:
            return UnsafeTarEntryError(entry, f"`{where}` is not a directory")
        if exc.errno == errno.ENOENT:
            return UnsafeTarEntryError(entry, f"`{where}` does not exist in the layer")
        return exc

    def whiteout(self, mem: Member) -> None:
        """Overlay form: a 0/0 character device in place of the entry."""
        pfd = self.parent(mem.info.name, mem.parts)
        try:
            remove_tree_at(pfd, mem.parts[-1])
            os.mknod(mem.parts[-1], stat.S_IFCHR | 0o000, 0, dir_fd=pfd)
            ns = _mtime_ns(mem.info.mtime)
            os.utime(mem.parts[-1], ns=(ns, ns), dir_fd=pfd, follow_symlinks=False)
        finally:
            os.close(pfd)
        self.dir_times.append((mem.parts[:-1], -1))

    def opaque(self, mem: Member) -> None:
        """Overlay form: the opaque xattr on the directory."""
        if not mem.parts:
            raise UnsafeTarEntryError(mem.info.name, "the layer root cannot be opaque")
        pfd = self.parent(mem.info.name, (*mem.parts, "x"))
        try:
            os.setxattr(f"/proc/self/fd/{pfd}", self.opaque_xattr, b"y")
        finally:
            os.close(pfd)

    def remove(self, mem: Member, tf: tarfile.TarFile) -> None:
        """Applied form: delete what a whiteout names, or empty an opaque directory."""
        try:
            pfd = self.parent(mem.info.name, mem.parts, create=False)
        except UnsafeTarEntryError:
            return  # nothing there to delete
        try:
            if mem.kind == "whiteout":
                remove_tree_at(pfd, mem.parts[-1])
            elif mem.parts:
                try:
                    dfd = _open_beneath(pfd, mem.parts[-1])
                except SyscallError:
                    return
                try:
                    for child in os.listdir(f"/proc/self/fd/{dfd}"):
                        remove_tree_at(dfd, child)
                finally:
                    os.close(dfd)
        finally:
            os.close(pfd)

    def _write(self, fd: int, m: tarfile.TarInfo, tf: tarfile.TarFile) -> None:
        with reading(None, entry=m.name):
            src = tf.extractfile(m)
        if src is None:
            return
        while True:
            with reading(None, entry=m.name):
                chunk = src.read(CHUNK)
            if not chunk:
                return
            view = memoryview(chunk)
            while view:
                view = view[os.write(fd, view) :]

    def entry(self, mem: Member, tf: tarfile.TarFile) -> None:
        """Create one member (replacing what is there, unless both are directories)."""
        m, parts = mem.info, mem.parts
        pfd = self.parent(m.name, parts)
        name = parts[-1]
        try:
            try:
                old = os.stat(name, dir_fd=pfd, follow_symlinks=False)
            except FileNotFoundError:
                old = None
            if old is not None and not (m.isdir() and stat.S_ISDIR(old.st_mode)):
                remove_tree_at(pfd, name)
            if m.isdir():
                if old is None or not stat.S_ISDIR(old.st_mode):
                    os.mkdir(name, 0o700, dir_fd=pfd)
                self.dir_times.append((parts, _mtime_ns(m.mtime)))
            elif m.isreg():
                fd = os.open(
                    name, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600, dir_fd=pfd
                )
                try:
                    self._write(fd, m, tf)
                finally:
                    os.close(fd)
            elif m.issym():
                os.symlink(m.linkname, name, dir_fd=pfd)
            elif m.islnk():
                tparts = clean_name(m.linkname, entry=m.name)
                tpfd = self.parent(m.name, tparts, create=False)
                try:
                    os.link(tparts[-1], name, src_dir_fd=tpfd, dst_dir_fd=pfd, follow_symlinks=False)
                except FileNotFoundError:
                    raise UnsafeTarEntryError(m.name, f"hard link target `{m.linkname}` is not in the layer") from None
                except PermissionError:
                    if stat.S_ISDIR(os.stat(tparts[-1], dir_fd=tpfd, follow_symlinks=False).st_mode):
                        raise UnsafeTarEntryError(m.name, f"hard link to the directory `{m.linkname}`") from None
                    raise
                finally:
                    os.close(tpfd)
                return  # a hard link shares its target's metadata
            else:
                kind = stat.S_IFCHR if m.ischr() else stat.S_IFBLK if m.isblk() else stat.S_IFIFO
                os.mknod(name, kind | 0o600, os.makedev(m.devmajor, m.devminor), dir_fd=pfd)
            self._metadata(pfd, name, m)
        finally:
            os.close(pfd)

    def _metadata(self, pfd: int, name: str, m: tarfile.TarInfo) -> None:
        path = f"/proc/self/fd/{pfd}/{name}"
        if self.same_owner:  # first: chown clears setuid bits and file capabilities
            os.chown(name, m.uid, m.gid, dir_fd=pfd, follow_symlinks=False)
        for key, value in m.pax_headers.items():
            if key.startswith(XATTR_PAX):
                xname = key[len(XATTR_PAX) :]
                if not restorable(xname):
                    self.dropped_xattrs += 1
                elif xname == CAPABILITY_XATTR and not self.preserve_special:
                    self.stripped += 1
                else:
                    os.setxattr(path, xname, value.encode("utf-8", "surrogateescape"), follow_symlinks=False)
        mtime = (_mtime_ns(m.mtime),) * 2
        if not m.issym():
            mode = m.mode & 0o7777
            if mode & _SETID and not m.isdir() and not self.preserve_special:
                mode &= ~_SETID  # on a directory, setgid only passes its group on
                self.stripped += 1
            os.chmod(name, mode, dir_fd=pfd)
            if not m.isdir():
                os.utime(name, ns=mtime, dir_fd=pfd, follow_symlinks=False)
        else:
            os.utime(name, ns=mtime, dir_fd=pfd, follow_symlinks=False)

    def finish(self) -> None:
        """Set directory mtimes, deepest first (creating entries changed them)."""
        done: set[tuple[str, ...]] = set()
        for parts, ns in sorted(self.dir_times, key=lambda t: -len(t[0])):
            if ns < 0 or parts in done or not parts:
                continue
            done.add(parts)
            pfd = self._open("", parts[:-1])
            try:
                os.utime(parts[-1], ns=(ns, ns), dir_fd=pfd, follow_symlinks=False)
            finally:
                os.close(pfd)


@contextlib.contextmanager
def _writing(label: str, entry: str) -> Iterator[None]:
    """Name the layer and the entry in what the kernel refuses while writing it."""
    try:
        yield
    except LayerError:
        raise
    except SyscallError as exc:
        if type(exc) is not SyscallError:
            raise
        what = f"{exc.operation} `{exc.path}`" if exc.path else exc.operation
        where = f"extract layer `{label}`: tar entry `{entry}`: {what}"
        raise SyscallError(exc.errno, exc.operation, exc.path, detail=where) from None
    except OSError as exc:
        raise SyscallError(
            exc.errno, "extract", entry, detail=f"extract layer `{label}`: tar entry `{entry}`"
        ) from None


def _extract(
    tf: tarfile.TarFile,
    root: Path,
    *,
    overlay_form: bool,
    opaque_xattr: str,
    strict_symlinks: bool,
    same_owner: bool,
    preserve_special: bool,
    counter: LimitCounter,
    label: str,
) -> LayerStats:
    members = plan(tf, counter, strict_symlinks, preserve_special)
    root_fd = os.open(root, os.O_PATH | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        ex = _Extractor(
            root_fd,
            opaque_xattr=opaque_xattr,
            same_owner=same_owner,
            preserve_special=preserve_special,
        )
        if not overlay_form:
            for mem in members:  # whiteouts act on lower layers only: delete first, then add
                if mem.kind != "entry":
                    with _writing(label, mem.info.name):
                        ex.remove(mem, tf)
        for mem in members:
            with _writing(label, mem.info.name):
                if mem.kind == "entry":
                    ex.entry(mem, tf)
                elif overlay_form and mem.kind == "whiteout":
                    ex.whiteout(mem)
        if overlay_form:  # after the directories exist
            for mem in members:
                if mem.kind == "opaque":
                    with _writing(label, mem.info.name):
                        ex.opaque(mem)
        with _writing(label, "."):
            ex.finish()
    finally:
        os.close(root_fd)
    return LayerStats(
        None,
        0,
        sum(1 for m in members if m.kind == "entry"),
        sum(1 for m in members if m.kind == "whiteout"),
        sum(1 for m in members if m.kind == "opaque"),
        ex.stripped,
        ex.dropped_xattrs,
    )


def _label(tar: TarSource) -> str:
    if isinstance(tar, (str, os.PathLike)):
        return os.fspath(tar)
    name = getattr(tar, "name", None)
    return name if isinstance(name, str) else "<stream>"


def extract_layer(
    tar: TarSource,
    dest: StrPath,
    *,
    userxattr: bool = False,
    strict_symlinks: bool = False,
    same_owner: bool | None = None,
    preserve_special: bool = False,
    limits: ExtractLimits | None = None,
    label: str | None = None,
) -> LayerStats:
    """Extract OCI layer tar *tar* into the new directory *dest*, in overlay form.

    ``.wh.<name>`` entries become 0/0 character devices and ``.wh..wh..opq``
    the opaque xattr (``user.overlay.opaque`` with *userxattr*), so that
    *dest* can be stacked as a lower layer.  All or nothing: the tar is
    extracted into a temporary sibling of *dest* that is renamed into place
    only when complete, and removed on any error.  *strict_symlinks* also
    refuses symlinks that point outside the layer (absolute or climbing with
    ``..``); by default they are kept, since they resolve inside the
    container, and only writing through one is refused.  *same_owner*
    (default: when root) restores numeric owners.

    Device nodes are refused, and setuid/setgid bits and file capabilities
    (``security.capability``) dropped, unless *preserve_special*: pass it
    only for a *dest* no other user can reach, as a
    :class:`~nsprim.fs.layers.LayerStore` does (its root is 0700).  Of the
    xattrs only ``user.*`` ones (and with *preserve_special* the capability)
    are restored.  *limits* (default :class:`ExtractLimits()
    <nsprim.fs.layers.ExtractLimits>`) bound what the tar may unpack to;
    *label* names the tar in errors (default: its path).  Raises
    :class:`~nsprim.errors.LayerError` (:class:`UnsafeTarEntryError`,
    :class:`~nsprim.errors.LayerLimitError`,
    :class:`~nsprim.errors.CorruptLayerError`) or
    :class:`~nsprim.errors.SyscallError`.
    """
    target = Path(dest)
    shown = label if label is not None else _label(tar)
    if os.path.lexists(target):
        raise ConfigError(f"extract layer to `{target}`: File exists", what="dest")
    tmp = target.parent / f".tmp-{target.name}-{uuid.uuid4().hex[:12]}"
    try:
        tmp.mkdir(mode=0o755)
    except OSError as exc:
        raise SyscallError(exc.errno, "mkdir", tmp) from None
    try:
        with open_tar(tar, limits or DEFAULT_LIMITS) as (tf, size):
            stats = _extract(
                tf,
                tmp,
                overlay_form=True,
                opaque_xattr=USER_OPAQUE_XATTR if userxattr else OPAQUE_XATTR,
                strict_symlinks=strict_symlinks,
                same_owner=os.geteuid() == 0 if same_owner is None else same_owner,
                preserve_special=preserve_special,
                counter=LimitCounter(limits or DEFAULT_LIMITS, size),
                label=shown,
            )
        try:
            os.rename(tmp, target)
        except OSError as exc:
            raise SyscallError(exc.errno, "rename", tmp, detail=f"rename `{tmp}` to `{target}`") from None
    except BaseException as exc:
        with contextlib.suppress(OSError):
            remove_tree(tmp)
        if isinstance(exc, LayerError):
            exc.in_layer(shown)
        raise
    return stats


def apply_layer(
    tar: TarSource,
    root: StrPath,
    *,
    strict_symlinks: bool = False,
    same_owner: bool | None = None,
    preserve_special: bool = False,
    limits: ExtractLimits | None = None,
    label: str | None = None,
) -> LayerStats:
    """Apply OCI layer tar *tar* onto the plain directory tree *root* (a flattened image).

    Whiteouts delete what they name, opaque markers empty their directory
    (of what the layers below had), then the entries are written.  Names,
    types and limits are all checked before the first change; an entry
    found to go through a symlink during extraction stops it with
    :class:`UnsafeTarEntryError`.  *preserve_special*, *limits* and *label* as
    for :func:`extract_layer`.
    """
    target = Path(root)
    if not target.is_dir():
        raise ConfigError(f"apply layer to `{target}`: not a directory", what="root")
    shown = label if label is not None else _label(tar)
    try:
        with open_tar(tar, limits or DEFAULT_LIMITS) as (tf, size):
            return _extract(
                tf,
                target,
                overlay_form=False,
                opaque_xattr=OPAQUE_XATTR,
                strict_symlinks=strict_symlinks,
                same_owner=os.geteuid() == 0 if same_owner is None else same_owner,
                preserve_special=preserve_special,
                counter=LimitCounter(limits or DEFAULT_LIMITS, size),
                label=shown,
            )
    except LayerError as exc:
        raise exc.in_layer(shown) from None
