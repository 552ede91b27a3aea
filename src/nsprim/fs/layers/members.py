"""The members of an untrusted layer tar: read with bounds, each checked before anything is written.

:func:`open_tar` opens a tar of any compression tarfile knows, with extended
headers bounded; :func:`plan` reads every header and checks it (name, type,
owner, device, xattr names, :class:`~nsprim.fs.layers.ExtractLimits`), so that
a tar refused for what its headers say is refused before the first write.
Whatever bad data makes tarfile or a decompressor raise comes back as
:class:`~nsprim.errors.CorruptLayerError`.
"""

from __future__ import annotations

import contextlib
import io
import lzma
import os
import tarfile
import tempfile
import zlib
from collections.abc import Iterator
from typing import IO, Literal

from ..._dataclass import dataclass
from ..._paths import StrPath
from ...errors import CorruptLayerError, LayerLimitError, NsprimError, SyscallError, UnsafeTarEntryError
from ...errors import UnsafeTarEntry as UnsafeTarEntry  # deprecated alias, kept for one release
from .digest import Digest
from .limits import ExtractLimits, LimitCounter

__all__ = [
    "LayerStats",
    "WHITEOUT_PREFIX",
    "OPAQUE_MARKER",
    "UnsafeTarEntryError",
    "clean_name",
    "symlink_escapes",
    "restorable",
    "open_tar",
    "reading",
    "Member",
    "plan",
]

TarSource = StrPath | IO[bytes]


@dataclass(frozen=True)
class LayerStats:
    """What a commit wrote or an extraction read."""

    digest: Digest | None
    size: int
    entries: int
    whiteouts: int
    opaque_dirs: int
    #: setuid/setgid bits and file capabilities not restored (without *preserve_special*)
    stripped: int = 0
    #: xattrs of namespaces never restored from a tar (``trusted.*``, ``system.*``, most of ``security.*``)
    dropped_xattrs: int = 0


#: OCI whiteout file prefix: ``.wh.x`` deletes ``x`` of the layers below.
WHITEOUT_PREFIX = ".wh."
#: OCI opaque marker: ``d/.wh..wh..opq`` hides everything below ``d`` in lower layers.
OPAQUE_MARKER = ".wh..wh..opq"
OVERLAY_XATTR_PREFIXES = ("trusted.overlay.", "user.overlay.")
XATTR_PAX = "SCHILY.xattr."
CAPABILITY_XATTR = "security.capability"
CHUNK = 1 << 20
_NAME_MAX = 255


def restorable(xattr: str) -> bool:
    """Whether an xattr of this name may come from a tar (with *preserve_special* for the capability).

    ``user.*`` is anyone's to set on their own files; ``security.capability``
    is what the OCI tools' tar writers emit (``ping``'s ``cap_net_raw``).
    ``trusted.*`` (CAP_SYS_ADMIN's: overlay, gluster), the rest of
    ``security.*`` (the host's LSM labels and IMA/EVM signatures) and
    ``system.*`` (ACLs, which can grant what the mode denies) never are.
    """
    if xattr.startswith(OVERLAY_XATTR_PREFIXES):
        return False  # never let a tar forge overlay metadata (redirects, opaque)
    return xattr.startswith("user.") or xattr == CAPABILITY_XATTR


# ---- names ----------------------------------------------------------------------------------


def clean_name(name: str, *, entry: str | None = None) -> tuple[str, ...]:
    """Split a tar member name into safe components, or raise :class:`~nsprim.errors.UnsafeTarEntryError`.

    ``./a//b/`` becomes ``("a", "b")``; absolute names and ``..`` are refused.
    """
    shown = entry if entry is not None else name
    if name.startswith("/"):
        raise UnsafeTarEntryError(shown, f"absolute path `{name}` would be written outside the layer")
    parts = tuple(p for p in name.split("/") if p not in ("", "."))
    if ".." in parts:
        raise UnsafeTarEntryError(shown, f"`..` in `{name}` would leave the layer")
    if any("\0" in p for p in parts):
        raise UnsafeTarEntryError(shown, "NUL byte in name")
    for p in parts:
        if (n := len(p.encode("utf-8", "surrogateescape"))) > _NAME_MAX:
            raise UnsafeTarEntryError(shown, f"a name component of {n} bytes (NAME_MAX is {_NAME_MAX})")
    return parts


def symlink_escapes(parts: tuple[str, ...], target: str) -> bool:
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


# Reading: tarfile reads an extended header (PAX, GNU long name) whole and the
# header after it recursively, so a tar could ask for gigabytes of memory or
# thousands of frames; real ones hold a few KiB, one or two in a row.
_EXTENDED = (
    tarfile.GNUTYPE_LONGNAME,
    tarfile.GNUTYPE_LONGLINK,
    tarfile.XHDTYPE,
    tarfile.XGLTYPE,
    tarfile.SOLARIS_XHDTYPE,
)
_MAX_EXTENDED_HEADER = 1 << 20
_MAX_HEADER_CHAIN = 16
# What tarfile and the decompressors raise on bad data (an OSError without errno is one of theirs too).
_BAD_DATA = (tarfile.TarError, EOFError, zlib.error, lzma.LZMAError, ValueError, KeyError, IndexError, OverflowError)


class _BoundedTarInfo(tarfile.TarInfo):
    """A TarInfo that refuses huge extended headers, and long chains of them."""

    def _proc_member(self, tf: tarfile.TarFile) -> tarfile.TarInfo:
        if self.type not in _EXTENDED:
            return super()._proc_member(tf)  # type: ignore[misc, no-any-return]
        if self.size > _MAX_EXTENDED_HEADER:
            raise tarfile.ReadError(f"an extended header of {self.size} bytes (at most {_MAX_EXTENDED_HEADER})")
        depth: int = getattr(tf, "_nsprim_chain", 0)
        if depth >= _MAX_HEADER_CHAIN:
            raise tarfile.ReadError(f"more than {_MAX_HEADER_CHAIN} extended headers in a row")
        tf._nsprim_chain = depth + 1  # type: ignore[attr-defined]
        try:
            return super()._proc_member(tf)  # type: ignore[misc, no-any-return]
        finally:
            tf._nsprim_chain = depth  # type: ignore[attr-defined]


@contextlib.contextmanager
def reading(after: str | None, *, entry: str | None = None) -> Iterator[None]:
    """Turn what reading a bad tar raises into :class:`CorruptLayerError`.

    *entry* is the member being read; *after* the last one read before it.
    """
    try:
        yield
    except NsprimError:
        raise
    except OSError as exc:
        if exc.errno is not None:
            raise SyscallError(exc.errno, "read", exc.filename) from None
        raise _corrupt(after, entry, exc) from None
    except _BAD_DATA as exc:
        raise _corrupt(after, entry, exc) from None


def _corrupt(after: str | None, entry: str | None, exc: BaseException) -> CorruptLayerError:
    why = " ".join(str(exc).split()) or type(exc).__name__
    if why.startswith("file could not be opened successfully"):
        why = "not a tar, nor a gzip, bzip2 or xz compressed one"
    if entry is not None:
        return CorruptLayerError(f"tar entry `{entry}`: truncated or corrupt ({why})", entry=entry)
    if after is not None:
        return CorruptLayerError(f"after tar entry `{after}`: truncated or corrupt ({why})", entry=after)
    return CorruptLayerError(f"not a readable tar ({why})")


def _size_of(f: IO[bytes]) -> int | None:
    with contextlib.suppress(AttributeError, OSError, ValueError):
        pos = f.tell()
        end = f.seek(0, os.SEEK_END)
        f.seek(pos)
        return end - pos
    return None


@contextlib.contextmanager
def open_tar(src: TarSource, limits: ExtractLimits) -> Iterator[tuple[tarfile.TarFile, int | None]]:
    """The tar *src* opened for reading (any compression tarfile knows), and its size in bytes."""
    with contextlib.ExitStack() as stack:
        if isinstance(src, (str, os.PathLike)):
            try:
                f: IO[bytes] = stack.enter_context(open(src, "rb"))
            except OSError as exc:
                raise SyscallError(exc.errno, "open", src) from None
        else:
            f = src
            seekable = False
            with contextlib.suppress(AttributeError, OSError, ValueError):
                # a wrapper (a GzipFile) says it seeks, but rewinds what it wraps: only if that is a file
                seekable = src.seekable() and (isinstance(src, io.BytesIO) or src.fileno() >= 0)
            if not seekable:  # two passes need random access
                f = stack.enter_context(tempfile.TemporaryFile())
                with reading(None):
                    while chunk := src.read(CHUNK):
                        f.write(chunk)
                        if f.tell() > limits.max_tar_size:
                            raise LayerLimitError(
                                f"a tar of more than {limits.max_tar_size} bytes, more than contents of max_size="
                                f"{limits.max_size} and headers take (raise it with ExtractLimits(max_size=...))",
                                limit="max_size",
                                value=f.tell(),
                                maximum=limits.max_tar_size,
                            )
                f.seek(0)
        size = _size_of(f)
        with reading(None):
            tf = stack.enter_context(tarfile.open(fileobj=f, mode="r:*", tarinfo=_BoundedTarInfo))
        yield tf, size


@dataclass(frozen=True)
class Member:
    info: tarfile.TarInfo
    parts: tuple[str, ...]
    kind: Literal["entry", "whiteout", "opaque"]


def check_member(
    m: tarfile.TarInfo, counter: LimitCounter, strict_symlinks: bool, preserve_special: bool
) -> Member | None:
    """One member's name, type and numbers, against the limits; None for the root itself."""
    counter.path(m.name, m.name)
    parts = clean_name(m.name, entry=m.name)
    counter.member(m.name, len(parts), m.size if m.isreg() else 0)
    if not parts:
        if m.isdir():
            return None  # "./": the root itself
        raise UnsafeTarEntryError(m.name, "an entry must have a name")
    if m.issym() or m.islnk():
        counter.path(m.name, m.linkname, link=True)
        if "\0" in m.linkname:
            raise UnsafeTarEntryError(m.name, "NUL byte in link target")
    if m.islnk() and not clean_name(m.linkname, entry=m.name):
        raise UnsafeTarEntryError(m.name, "a hard link to the layer root")
    if m.issym() and strict_symlinks and symlink_escapes(parts, m.linkname):
        raise UnsafeTarEntryError(m.name, f"symlink to `{m.linkname}` points outside the layer")
    if not (m.isreg() or m.isdir() or m.issym() or m.islnk() or m.ischr() or m.isblk() or m.isfifo()):
        raise UnsafeTarEntryError(m.name, f"unsupported member type {m.type!r}")
    if not (0 <= m.uid < 0xFFFFFFFF and 0 <= m.gid < 0xFFFFFFFF):
        raise UnsafeTarEntryError(m.name, f"owner {m.uid}:{m.gid} is out of range")
    if m.ischr() or m.isblk():
        dev = f"{m.devmajor}:{m.devminor}"
        if not (0 <= m.devmajor < 1 << 12 and 0 <= m.devminor < 1 << 20):
            raise UnsafeTarEntryError(m.name, f"device number {dev} is out of range")
        if not preserve_special and not (m.ischr() and m.devmajor == m.devminor == 0):
            kind = "character" if m.ischr() else "block"
            raise UnsafeTarEntryError(
                m.name,
                f"a {kind} device {dev}: device nodes are kept only with preserve_special=True, "
                "in a directory no other user can enter (a layer store)",
            )
    for key in m.pax_headers:
        xname = key[len(XATTR_PAX) :]
        if key.startswith(XATTR_PAX) and ("\0" in xname or len(xname.encode("utf-8", "surrogateescape")) > _NAME_MAX):
            raise UnsafeTarEntryError(m.name, f"bad xattr name {xname!r}")
    return classify(m, parts)


def classify(m: tarfile.TarInfo, parts: tuple[str, ...]) -> Member:
    """An entry, a whiteout (of the last name without its ``.wh.``) or an opaque marker (of its directory)."""
    base = parts[-1]
    if base == OPAQUE_MARKER:
        return Member(m, parts[:-1], "opaque")
    if base.startswith(WHITEOUT_PREFIX):
        gone = base[len(WHITEOUT_PREFIX) :]
        if gone in ("", ".", "..") or gone.startswith(WHITEOUT_PREFIX):
            raise UnsafeTarEntryError(m.name, "a whiteout of nothing")
        return Member(m, (*parts[:-1], gone), "whiteout")
    return Member(m, parts, "entry")


def plan(tf: tarfile.TarFile, counter: LimitCounter, strict_symlinks: bool, preserve_special: bool) -> list[Member]:
    """Read every header and check it (names, types, limits) before anything is written."""
    out: list[Member] = []
    last: str | None = None
    while True:
        with reading(last):
            m = tf.next()
        if m is None:
            return out
        last = m.name
        if (mem := check_member(m, counter, strict_symlinks, preserve_special)) is not None:
            out.append(mem)
