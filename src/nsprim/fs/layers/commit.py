"""Commit: an overlay upper dir to an OCI layer tar (what ``docker commit`` does).

OCI image layers (image-spec ``layer.md``) and overlayfs say "this was
deleted" differently:

* a deleted entry ``x``: in an upper dir, ``x`` as a character device 0/0
  (a whiteout); in a tar, an empty file ``.wh.x``;
* an opaque directory ``d``: in an upper dir, ``d`` with the xattr
  ``trusted.overlay.opaque=y`` (``user.overlay.opaque`` with ``userxattr``);
  in a tar, ``d/`` and an empty ``d/.wh..wh..opq``.

:func:`commit` converts an upper dir into a tar; the way back is
:mod:`nsprim.fs.layers.extract`.  Tars are PAX and keep modes, owners,
symlinks, hard links, device nodes, FIFOs, xattrs (``SCHILY.xattr.*``
records) and mtimes.
"""

from __future__ import annotations

import contextlib
import errno
import os
import stat
import tarfile
from collections.abc import Iterator
from pathlib import Path
from typing import IO

from ..._paths import StrPath
from ...errors import ConfigError, NsprimError, SyscallError, UnsupportedError
from ..overlay import OPAQUE_XATTR, USER_OPAQUE_XATTR
from .digest import HashingWriter
from .members import (
    OPAQUE_MARKER,
    WHITEOUT_PREFIX,
    XATTR_PAX,
    LayerStats,
    restorable,
)
from .tree import walk

__all__ = ["LayerStats", "commit"]

_REDIRECT_XATTRS = ("trusted.overlay.redirect", "user.overlay.redirect")
_METACOPY_XATTRS = ("trusted.overlay.metacopy", "user.overlay.metacopy")


def _tar_mtime(st: os.stat_result) -> float:
    """The mtime to record: microseconds, so that it survives the float of a PAX record exactly."""
    return st.st_mtime_ns // 1000 / 1_000_000


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
    # only what extraction restores: the tar then says the same on any host (no SELinux labels)
    return {XATTR_PAX + k: v.decode("utf-8", "surrogateescape") for k, v in xattrs.items() if restorable(k)}


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

    def walk(self) -> None:
        """Add the upper dir's entries, depth first, names sorted; a stack, not recursion (any depth)."""
        stack: list[tuple[str, Iterator[str]]] = [("", iter(sorted(os.listdir(self.upper))))]
        while stack:
            rel, names = stack[-1]
            name = next(names, None)
            if name is None:
                stack.pop()
                continue
            arc = f"{rel}/{name}" if rel else name
            path = os.fspath(self.upper / arc)
            if (sub := self._one(rel, name, arc, path)) is not None:
                stack.append((sub, iter(sorted(os.listdir(path)))))

    def _one(self, rel: str, name: str, arc: str, path: str) -> str | None:
        """Add one entry; return *arc* when it is a directory whose entries come next."""
        st = os.lstat(path)
        if stat.S_ISCHR(st.st_mode) and st.st_rdev == 0:
            parent = f"{rel}/" if rel else ""
            self._marker(parent + WHITEOUT_PREFIX + name, _tar_mtime(st))
            self.whiteouts += 1
            return None
        xattrs = _xattrs(path)
        if stat.S_ISDIR(st.st_mode):
            if any(k in xattrs for k in _REDIRECT_XATTRS):
                self._renamed_dir(path, arc, xattrs)
                return None
            self._add(path, arc, xattrs)
            if _is_opaque(xattrs):
                self._marker(f"{arc}/{OPAQUE_MARKER}", _tar_mtime(st))
                self.opaque += 1
            return arc
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
        return None

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
        for dirpath, dirnames, filenames in walk(src):
            for name in sorted(dirnames + filenames):
                p = os.path.join(dirpath, name)
                sub = f"{arc}/{os.path.relpath(p, src)}"
                self._add(p, sub, _xattrs(p))


def commit(upper: StrPath, out: StrPath | IO[bytes], *, merged: StrPath | None = None) -> LayerStats:
    """Write the changes recorded in overlay upper dir *upper* as an OCI layer tar to *out*.

    Whiteouts become ``.wh.<name>`` entries and opaque directories get a
    ``.wh..wh..opq`` entry; of the xattrs, only ``user.*`` (but overlay's
    own) and ``security.capability`` are written, as extraction restores no
    others.  An upper dir made with ``metacopy=on`` or ``redirect_dir=on``
    needs the mounted overlay as *merged* to read data and renamed
    directories from; without it such entries raise
    :class:`~nsprim.errors.UnsupportedError`.  Entries
    are sorted and owner names left empty, so equal trees give equal tars
    (and digests).  Returns the digest (``sha256:`` of the tar) and counts.
    """
    root = Path(upper)
    if not root.is_dir():
        raise ConfigError(f"commit `{root}`: not a directory", what="upper")
    try:
        with contextlib.ExitStack() as stack:
            raw: IO[bytes] = out if not isinstance(out, (str, os.PathLike)) else stack.enter_context(open(out, "wb"))
            hw = HashingWriter(raw)
            with tarfile.open(fileobj=hw, mode="w|", format=tarfile.PAX_FORMAT) as tf:  # type: ignore[call-overload]
                c = _Committer(tf, root, Path(merged) if merged is not None else None)
                c.walk()
            hw.flush()
    except NsprimError:
        raise
    except OSError as exc:
        where = f"commit `{root}`" + (f": `{exc.filename}`" if exc.filename else "")
        raise SyscallError(exc.errno, "commit", root, detail=where) from None
    return LayerStats(hw.digest, hw.size, c.entries, c.whiteouts, c.opaque)
