"""Layer tars: commit an overlay upper dir to an OCI layer tar, and apply one back.

OCI image layers (image-spec ``layer.md``) and overlayfs say "this was
deleted" differently:

* a deleted entry ``x``: in an upper dir, ``x`` as a character device 0/0
  (a whiteout); in a tar, an empty file ``.wh.x``;
* an opaque directory ``d``: in an upper dir, ``d`` with the xattr
  ``trusted.overlay.opaque=y`` (``user.overlay.opaque`` with ``userxattr``);
  in a tar, ``d/`` and an empty ``d/.wh..wh..opq``.

:func:`commit` converts an upper dir into a tar (what ``docker commit``
does), :func:`extract_layer` converts a tar into a new layer directory that
overlayfs can stack, and :func:`apply_layer` applies a tar onto a plain
("flattened") root file system, deleting what it whites out.  Tars are PAX
and keep modes, owners, symlinks, hard links, device nodes, FIFOs, xattrs
(``SCHILY.xattr.*`` records) and mtimes.

Extraction never writes outside its directory: names that are absolute or
hold ``..`` are refused, every parent directory is opened with
``openat2(RESOLVE_BENEATH | RESOLVE_NO_SYMLINKS)`` so that an entry can never
be written *through* a symlink, and overlay's own xattrs in a tar are
dropped.  A refused entry raises :class:`UnsafeTarEntry` naming it, before
anything is written when the name alone gives it away; :func:`extract_layer`
is all-or-nothing (it extracts into a temporary sibling and renames).
"""

from __future__ import annotations

import contextlib
import errno
import os
import shutil
import stat
import tarfile
import tempfile
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Literal

from .. import _sys
from .._sys import C
from ..errors import ConfigError, SyscallError, UnsupportedError
from ..overlay import OPAQUE_XATTR, USER_OPAQUE_XATTR
from .digest import Digest, HashingWriter

__all__ = [
    "WHITEOUT_PREFIX",
    "OPAQUE_MARKER",
    "UnsafeTarEntry",
    "LayerStats",
    "commit",
    "extract_layer",
    "apply_layer",
    "clean_name",
]

StrPath = str | os.PathLike[str]
TarSource = StrPath | IO[bytes]

#: OCI whiteout file prefix: ``.wh.x`` deletes ``x`` of the layers below.
WHITEOUT_PREFIX = ".wh."
#: OCI opaque marker: ``d/.wh..wh..opq`` hides everything below ``d`` in lower layers.
OPAQUE_MARKER = ".wh..wh..opq"

_OVERLAY_XATTR_PREFIXES = ("trusted.overlay.", "user.overlay.")
_XATTR_PAX = "SCHILY.xattr."
_REDIRECT_XATTRS = ("trusted.overlay.redirect", "user.overlay.redirect")
_METACOPY_XATTRS = ("trusted.overlay.metacopy", "user.overlay.metacopy")
_CHUNK = 1 << 20


def _tar_mtime(st: os.stat_result) -> float:
    """The mtime to record: microseconds, so that it survives the float of a PAX record exactly."""
    return st.st_mtime_ns // 1000 / 1_000_000


def _mtime_ns(mtime: float) -> int:
    """A tar mtime back to nanoseconds (the inverse of :func:`_tar_mtime`)."""
    return round(mtime * 1_000_000) * 1000


class UnsafeTarEntry(ConfigError):
    """A tar entry that would write outside the layer, or that this format cannot hold.

    ``entry`` is the entry's name as found in the tar.
    """

    def __init__(self, entry: str, reason: str) -> None:
        super().__init__(f"tar entry `{entry}`: {reason}", what="tar entry")
        self.entry = entry
        self.path = entry


@dataclass(frozen=True)
class LayerStats:
    """What a commit wrote or an extraction read."""

    digest: Digest | None
    size: int
    entries: int
    whiteouts: int
    opaque_dirs: int


# ---- names ----------------------------------------------------------------------------------


def clean_name(name: str, *, entry: str | None = None) -> tuple[str, ...]:
    """Split a tar member name into safe components, or raise :class:`UnsafeTarEntry`.

    ``./a//b/`` becomes ``("a", "b")``; absolute names and ``..`` are refused.
    """
    shown = entry if entry is not None else name
    if name.startswith("/"):
        raise UnsafeTarEntry(shown, f"absolute path `{name}` would be written outside the layer")
    parts = tuple(p for p in name.split("/") if p not in ("", "."))
    if ".." in parts:
        raise UnsafeTarEntry(shown, f"`..` in `{name}` would leave the layer")
    if any("\0" in p for p in parts):
        raise UnsafeTarEntry(shown, "NUL byte in name")
    return parts


def _symlink_escapes(parts: tuple[str, ...], target: str) -> bool:
    """Whether a symlink at *parts* pointing at *target* resolves outside its root."""
    if target.startswith("/"):
        return True
    depth = len(parts) - 1
    for comp in target.split("/"):
        if comp == "..":
            depth -= 1
            if depth < 0:
                return True
        elif comp not in ("", "."):
            depth += 1
    return False


# ---- commit: upper dir -> tar ------------------------------------------------------------------


def _xattrs(path: str) -> dict[str, bytes]:
    try:
        names = os.listxattr(path, follow_symlinks=False)
    except OSError as exc:
        if exc.errno in (errno.ENOTSUP, errno.EPERM):
            return {}
        raise
    out = {}
    for name in sorted(names):
        with contextlib.suppress(OSError):
            out[name] = os.getxattr(path, name, follow_symlinks=False)
    return out


def _is_opaque(xattrs: dict[str, bytes]) -> bool:
    return xattrs.get(OPAQUE_XATTR) == b"y" or xattrs.get(USER_OPAQUE_XATTR) == b"y"


def _pax_xattrs(xattrs: dict[str, bytes]) -> dict[str, str]:
    return {
        _XATTR_PAX + k: v.decode("utf-8", "surrogateescape")
        for k, v in xattrs.items()
        if not k.startswith(_OVERLAY_XATTR_PREFIXES)
    }


class _Committer:
    def __init__(self, tf: tarfile.TarFile, upper: Path, merged: Path | None) -> None:
        self.tf = tf
        self.upper = upper
        self.merged = merged
        self.entries = 0
        self.whiteouts = 0
        self.opaque = 0

    def _marker(self, arcname: str, mtime: float) -> None:
        ti = tarfile.TarInfo(arcname)
        ti.type = tarfile.REGTYPE
        ti.mode = 0o600
        ti.mtime = mtime
        ti.uname = ti.gname = ""
        self.tf.addfile(ti)
        self.entries += 1

    def _add(self, path: str, arcname: str, xattrs: dict[str, bytes], data_from: str | None = None) -> None:
        ti = self.tf.gettarinfo(name=path, arcname=arcname)
        if ti is None:  # a socket: not representable, and meaningless in an image
            return
        ti.uname = ti.gname = ""
        ti.mtime = _tar_mtime(os.lstat(path))
        ti.pax_headers = _pax_xattrs(xattrs)
        if ti.isreg():
            src = data_from or path
            if data_from is not None:
                ti.size = os.stat(src).st_size
            with open(src, "rb") as f:
                self.tf.addfile(ti, f)
        else:
            self.tf.addfile(ti)
        self.entries += 1

    def walk(self, rel: str = "") -> None:
        base = self.upper / rel if rel else self.upper
        for name in sorted(os.listdir(base)):
            arc = f"{rel}/{name}" if rel else name
            path = os.fspath(base / name)
            st = os.lstat(path)
            if stat.S_ISCHR(st.st_mode) and st.st_rdev == 0:
                parent = f"{rel}/" if rel else ""
                self._marker(parent + WHITEOUT_PREFIX + name, _tar_mtime(st))
                self.whiteouts += 1
                continue
            xattrs = _xattrs(path)
            if stat.S_ISDIR(st.st_mode):
                if any(k in xattrs for k in _REDIRECT_XATTRS):
                    self._renamed_dir(path, arc, xattrs)
                    continue
                self._add(path, arc, xattrs)
                if _is_opaque(xattrs):
                    self._marker(f"{arc}/{OPAQUE_MARKER}", _tar_mtime(st))
                    self.opaque += 1
                self.walk(arc)
            elif stat.S_ISREG(st.st_mode) and any(k in xattrs for k in _METACOPY_XATTRS):
                if self.merged is None:
                    raise UnsupportedError(
                        f"commit `{self.upper}`: `{arc}` holds metadata only (metacopy=on); "
                        "pass the mounted overlay as merged= to read its data",
                        feature="metacopy",
                    )
                self._add(path, arc, xattrs, data_from=os.fspath(self.merged / arc))
            else:
                self._add(path, arc, xattrs)

    def _renamed_dir(self, path: str, arc: str, xattrs: dict[str, bytes]) -> None:
        """A directory renamed from a lower layer (redirect_dir=on): emit it whole, opaque."""
        if self.merged is None:
            raise UnsupportedError(
                f"commit `{self.upper}`: `{arc}` is a renamed lower directory (redirect_dir=on), which a layer "
                "tar cannot express; pass the mounted overlay as merged= to commit its full contents",
                feature="redirect_dir",
            )
        self._add(path, arc, xattrs)
        self._marker(f"{arc}/{OPAQUE_MARKER}", _tar_mtime(os.lstat(path)))
        self.opaque += 1
        src = self.merged / arc
        for dirpath, dirnames, filenames in os.walk(src):
            dirnames.sort()
            for name in sorted(dirnames + filenames):
                p = os.path.join(dirpath, name)
                sub = f"{arc}/{os.path.relpath(p, src)}"
                self._add(p, sub, _xattrs(p))


def commit(upper: StrPath, out: StrPath | IO[bytes], *, merged: StrPath | None = None) -> LayerStats:
    """Write the changes recorded in overlay upper dir *upper* as an OCI layer tar to *out*.

    Whiteouts become ``.wh.<name>`` entries and opaque directories get a
    ``.wh..wh..opq`` entry; overlay's own xattrs are left out.  An upper dir
    made with ``metacopy=on`` or ``redirect_dir=on`` needs the mounted
    overlay as *merged* to read data and renamed directories from; without
    it such entries raise :class:`~nsprim.errors.UnsupportedError`.  Entries
    are sorted and owner names left empty, so equal trees give equal tars
    (and digests).  Returns the digest (``sha256:`` of the tar) and counts.
    """
    root = Path(upper)
    if not root.is_dir():
        raise ConfigError(f"commit `{root}`: not a directory", what="upper")
    with contextlib.ExitStack() as stack:
        raw: IO[bytes] = out if not isinstance(out, (str, os.PathLike)) else stack.enter_context(open(out, "wb"))
        hw = HashingWriter(raw)
        with tarfile.open(fileobj=hw, mode="w|", format=tarfile.PAX_FORMAT) as tf:  # type: ignore[call-overload]
            c = _Committer(tf, root, Path(merged) if merged is not None else None)
            c.walk()
        hw.flush()
    return LayerStats(hw.digest, hw.size, c.entries, c.whiteouts, c.opaque)


# ---- extraction ---------------------------------------------------------------------------------

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


def _rmtree_at(dir_fd: int, name: str) -> None:
    """Remove *name* below *dir_fd*, recursively, never following a symlink."""
    try:
        st = os.stat(name, dir_fd=dir_fd, follow_symlinks=False)
    except FileNotFoundError:
        return
    if not stat.S_ISDIR(st.st_mode):
        os.unlink(name, dir_fd=dir_fd)
        return
    fd = os.open(name, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC, dir_fd=dir_fd)
    try:
        for child in os.listdir(fd):
            _rmtree_at(fd, child)
    finally:
        os.close(fd)
    os.rmdir(name, dir_fd=dir_fd)


@contextlib.contextmanager
def _open_tar(src: TarSource) -> Iterator[tarfile.TarFile]:
    if isinstance(src, (str, os.PathLike)):
        with tarfile.open(os.fspath(src), "r:*") as tf:
            yield tf
        return
    seekable = False
    with contextlib.suppress(AttributeError, OSError):
        seekable = src.seekable()
    if seekable:
        with tarfile.open(fileobj=src, mode="r:*") as tf:
            yield tf
        return
    with tempfile.TemporaryFile() as spool:  # two passes need random access
        shutil.copyfileobj(src, spool, _CHUNK)
        spool.seek(0)
        with tarfile.open(fileobj=spool, mode="r:*") as tf:
            yield tf


@dataclass(frozen=True)
class _Member:
    info: tarfile.TarInfo
    parts: tuple[str, ...]
    kind: Literal["entry", "whiteout", "opaque"]


def _plan(tf: tarfile.TarFile, strict_symlinks: bool) -> list[_Member]:
    """Check every member's name before anything is written."""
    out = []
    for m in tf.getmembers():
        parts = clean_name(m.name, entry=m.name)
        if not parts:
            if m.isdir():
                continue  # "./": the root itself
            raise UnsafeTarEntry(m.name, "an entry must have a name")
        base = parts[-1]
        if m.islnk() and not clean_name(m.linkname, entry=m.name):
            raise UnsafeTarEntry(m.name, "a hard link to the layer root")
        if m.issym() and strict_symlinks and _symlink_escapes(parts, m.linkname):
            raise UnsafeTarEntry(m.name, f"symlink to `{m.linkname}` points outside the layer")
        if not (m.isreg() or m.isdir() or m.issym() or m.islnk() or m.ischr() or m.isblk() or m.isfifo()):
            raise UnsafeTarEntry(m.name, f"unsupported member type {m.type!r}")
        if base == OPAQUE_MARKER:
            out.append(_Member(m, parts[:-1], "opaque"))
        elif base.startswith(WHITEOUT_PREFIX):
            gone = base[len(WHITEOUT_PREFIX) :]
            if gone in ("", ".", "..") or gone.startswith(WHITEOUT_PREFIX):
                raise UnsafeTarEntry(m.name, "a whiteout of nothing")
            out.append(_Member(m, (*parts[:-1], gone), "whiteout"))
        else:
            out.append(_Member(m, parts, "entry"))
    return out


class _Extractor:
    """Writes members below one root directory file descriptor, safely."""

    def __init__(self, root_fd: int, *, opaque_xattr: str, same_owner: bool) -> None:
        self.root_fd = root_fd
        self.opaque_xattr = opaque_xattr
        self.same_owner = same_owner
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
    def _refuse(entry: str, parts: tuple[str, ...], exc: SyscallError) -> UnsafeTarEntry | SyscallError:
        where = "/".join(parts)
        if exc.errno in (errno.ELOOP, errno.EXDEV):
            return UnsafeTarEntry(entry, f"`{where}` is a symlink: refusing to write through it")
        if exc.errno == errno.ENOTDIR:
            return UnsafeTarEntry(entry, f"`{where}` is not a directory")
        if exc.errno == errno.ENOENT:
            return UnsafeTarEntry(entry, f"`{where}` does not exist in the layer")
        return exc

    def whiteout(self, mem: _Member) -> None:
        """Overlay form: a 0/0 character device in place of the entry."""
        pfd = self.parent(mem.info.name, mem.parts)
        try:
            _rmtree_at(pfd, mem.parts[-1])
            os.mknod(mem.parts[-1], stat.S_IFCHR | 0o000, 0, dir_fd=pfd)
            ns = _mtime_ns(mem.info.mtime)
            os.utime(mem.parts[-1], ns=(ns, ns), dir_fd=pfd, follow_symlinks=False)
        finally:
            os.close(pfd)
        self.dir_times.append((mem.parts[:-1], -1))

    def opaque(self, mem: _Member) -> None:
        """Overlay form: the opaque xattr on the directory."""
        if not mem.parts:
            raise UnsafeTarEntry(mem.info.name, "the layer root cannot be opaque")
        pfd = self.parent(mem.info.name, (*mem.parts, "x"))
        try:
            os.setxattr(f"/proc/self/fd/{pfd}", self.opaque_xattr, b"y")
        finally:
            os.close(pfd)

    def remove(self, mem: _Member, tf: tarfile.TarFile) -> None:
        """Applied form: delete what a whiteout names, or empty an opaque directory."""
        try:
            pfd = self.parent(mem.info.name, mem.parts, create=False)
        except UnsafeTarEntry:
            return  # nothing there to delete
        try:
            if mem.kind == "whiteout":
                _rmtree_at(pfd, mem.parts[-1])
            elif mem.parts:
                try:
                    dfd = _open_beneath(pfd, mem.parts[-1])
                except SyscallError:
                    return
                try:
                    for child in os.listdir(f"/proc/self/fd/{dfd}"):
                        _rmtree_at(dfd, child)
                finally:
                    os.close(dfd)
        finally:
            os.close(pfd)

    def entry(self, mem: _Member, tf: tarfile.TarFile) -> None:
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
                _rmtree_at(pfd, name)
            if m.isdir():
                if old is None or not stat.S_ISDIR(old.st_mode):
                    os.mkdir(name, 0o700, dir_fd=pfd)
                self.dir_times.append((parts, _mtime_ns(m.mtime)))
            elif m.isreg():
                fd = os.open(
                    name, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600, dir_fd=pfd
                )
                try:
                    src = tf.extractfile(m)
                    if src is not None:
                        while chunk := src.read(_CHUNK):
                            os.write(fd, chunk)
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
                    raise UnsafeTarEntry(m.name, f"hard link target `{m.linkname}` is not in the layer") from None
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
        if self.same_owner:
            os.chown(name, m.uid, m.gid, dir_fd=pfd, follow_symlinks=False)
        for key, value in m.pax_headers.items():
            if key.startswith(_XATTR_PAX):
                xname = key[len(_XATTR_PAX) :]
                if xname.startswith(_OVERLAY_XATTR_PREFIXES):
                    continue  # never let a tar forge overlay metadata (redirects, opaque)
                os.setxattr(path, xname, value.encode("utf-8", "surrogateescape"), follow_symlinks=False)
        if not m.issym():
            os.chmod(name, m.mode & 0o7777, dir_fd=pfd)
            if not m.isdir():
                os.utime(name, ns=(_mtime_ns(m.mtime),) * 2, dir_fd=pfd, follow_symlinks=False)
        else:
            os.utime(name, ns=(_mtime_ns(m.mtime),) * 2, dir_fd=pfd, follow_symlinks=False)

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


def _extract(
    tf: tarfile.TarFile,
    root: Path,
    *,
    overlay_form: bool,
    opaque_xattr: str,
    strict_symlinks: bool,
    same_owner: bool,
) -> LayerStats:
    members = _plan(tf, strict_symlinks)
    root_fd = os.open(root, os.O_PATH | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        ex = _Extractor(root_fd, opaque_xattr=opaque_xattr, same_owner=same_owner)
        if not overlay_form:
            for mem in members:  # whiteouts act on lower layers only: delete first, then add
                if mem.kind != "entry":
                    ex.remove(mem, tf)
        for mem in members:
            if mem.kind == "entry":
                ex.entry(mem, tf)
            elif overlay_form and mem.kind == "whiteout":
                ex.whiteout(mem)
        if overlay_form:  # after the directories exist
            for mem in members:
                if mem.kind == "opaque":
                    ex.opaque(mem)
        ex.finish()
    finally:
        os.close(root_fd)
    return LayerStats(
        None,
        0,
        sum(1 for m in members if m.kind == "entry"),
        sum(1 for m in members if m.kind == "whiteout"),
        sum(1 for m in members if m.kind == "opaque"),
    )


def extract_layer(
    tar: TarSource,
    dest: StrPath,
    *,
    userxattr: bool = False,
    strict_symlinks: bool = False,
    same_owner: bool | None = None,
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
    """
    target = Path(dest)
    if os.path.lexists(target):
        raise ConfigError(f"extract layer to `{target}`: File exists", what="dest")
    tmp = target.parent / f".tmp-{target.name}-{uuid.uuid4().hex[:12]}"
    tmp.mkdir(mode=0o755)
    try:
        with _open_tar(tar) as tf:
            stats = _extract(
                tf,
                tmp,
                overlay_form=True,
                opaque_xattr=USER_OPAQUE_XATTR if userxattr else OPAQUE_XATTR,
                strict_symlinks=strict_symlinks,
                same_owner=os.geteuid() == 0 if same_owner is None else same_owner,
            )
        os.rename(tmp, target)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return stats


def apply_layer(
    tar: TarSource, root: StrPath, *, strict_symlinks: bool = False, same_owner: bool | None = None
) -> LayerStats:
    """Apply OCI layer tar *tar* onto the plain directory tree *root* (a flattened image).

    Whiteouts delete what they name, opaque markers empty their directory
    (of what the layers below had), then the entries are written.  Names
    are all checked before the first change; an entry found to go through a
    symlink during extraction stops it with :class:`UnsafeTarEntry`.
    """
    target = Path(root)
    if not target.is_dir():
        raise ConfigError(f"apply layer to `{target}`: not a directory", what="root")
    with _open_tar(tar) as tf:
        return _extract(
            tf,
            target,
            overlay_form=False,
            opaque_xattr=OPAQUE_XATTR,
            strict_symlinks=strict_symlinks,
            same_owner=os.geteuid() == 0 if same_owner is None else same_owner,
        )
