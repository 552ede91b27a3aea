"""Overlay file systems: read-only lower layers under one writable upper dir.

An :class:`OverlayMount` describes a union of directories and mounts it::

    from nsprim.overlay import OverlayMount, OverlayOptions

    with OverlayMount("/x/merged", lower=["/x/app", "/x/base"],   # top first
                      upper="/x/upper", work="/x/work") as ov:
        (ov.target / "hello").write_text("hi")    # lands in /x/upper/hello

Copy-on-write: a write copies the file up into *upper*; the lower layers are
never modified.  Deleting a lower file leaves a *whiteout* in upper (a 0/0
character device); a directory that replaces a lower one is marked *opaque*
(the ``trusted.overlay.opaque`` xattr, ``user.overlay.opaque`` with
``userxattr``).  Without *upper* the overlay is read-only (the kernel then
wants at least two lower layers).

Two ways to mount.  The classic ``mount(2)`` takes all options as one string
of at most a page (4095 bytes), which bounds the number of lower layers to a
few dozen long paths.  The new mount API (``fsopen("overlay")`` and one
``fsconfig("lowerdir+")`` per layer, Linux 6.8+) has no such bound.  By
default (``api="auto"``) the classic call is used when the options fit and
the new API otherwise; a kernel that has neither room nor ``lowerdir+``
raises :class:`~nsprim.errors.UnsupportedError`.

Mount only inside a private mount namespace (see :mod:`nsprim.mount`).
"""

from __future__ import annotations

import contextlib
import errno
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Literal

from . import _sys
from ._sys import C
from .errors import ConfigError, SyscallError, UnsupportedError
from .mount import MountFlags

__all__ = [
    "OverlayOptions",
    "OverlayMount",
    "MountApi",
    "OPTIONS_LIMIT",
    "has_lowerdir_append",
    "WHITEOUT_DEVICE",
    "OPAQUE_XATTR",
    "USER_OPAQUE_XATTR",
]

StrPath = str | os.PathLike[str]
MountApi = Literal["auto", "classic", "new"]

#: The longest option string mount(2) accepts: one page, NUL included.
OPTIONS_LIMIT = 4095
#: The device number of an overlay whiteout (a character device).
WHITEOUT_DEVICE = 0
#: The xattr that marks an upper directory opaque (``userxattr``: :data:`USER_OPAQUE_XATTR`).
OPAQUE_XATTR = "trusted.overlay.opaque"
USER_OPAQUE_XATTR = "user.overlay.opaque"

_SPECIAL = (",", ":", "\\", "\n")
_ON_OFF = ("on", "off")


@dataclass(frozen=True)
class OverlayOptions:
    """The overlay features the kernel offers (``None``: the kernel's default).

    * *index*: follow hard links and file handles across copy-up.
    * *metacopy*: copy up only metadata on chmod/chown (data stays below).
    * *redirect_dir*: ``"on"`` lets renamed lower directories keep their
      contents via a redirect xattr; ``"off"``/``"follow"``/``"nofollow"``.
    * *volatile*: skip all syncs to upper (fast; the upper is unusable after a crash).
    * *userxattr*: keep overlay's xattrs in ``user.overlay.*`` (needed in user namespaces).
    * *xino*: ``"on"``/``"off"``/``"auto"``: unique inode numbers across layers.
    * *extra*: anything else as ``(key, value)``; value ``None`` for a flag.
    """

    index: bool | None = None
    metacopy: bool | None = None
    redirect_dir: Literal["on", "off", "follow", "nofollow"] | None = None
    volatile: bool = False
    userxattr: bool = False
    xino: Literal["on", "off", "auto"] | None = None
    extra: tuple[tuple[str, str | None], ...] = ()

    def __post_init__(self) -> None:
        if self.redirect_dir not in (None, "on", "off", "follow", "nofollow"):
            raise ConfigError(f"redirect_dir must be on, off, follow or nofollow, not {self.redirect_dir!r}")
        if self.xino not in (None, "on", "off", "auto"):
            raise ConfigError(f"xino must be on, off or auto, not {self.xino!r}", what="xino")
        for key, value in self.extra:
            if not key or any(c in key for c in ",=") or (value is not None and any(c in value for c in _SPECIAL)):
                raise ConfigError(f"bad overlay option {key}={value}", what="extra")

    def pairs(self) -> list[tuple[str, str | None]]:
        """The options as ``(key, value)`` pairs, value ``None`` for a flag."""
        out: list[tuple[str, str | None]] = []
        if self.index is not None:
            out.append(("index", _ON_OFF[not self.index]))
        if self.redirect_dir is not None:
            out.append(("redirect_dir", self.redirect_dir))
        if self.metacopy is not None:
            out.append(("metacopy", _ON_OFF[not self.metacopy]))
        if self.xino is not None:
            out.append(("xino", self.xino))
        if self.userxattr:
            out.append(("userxattr", None))
        if self.volatile:
            out.append(("volatile", None))
        out.extend(self.extra)
        return out

    @property
    def opaque_xattr(self) -> str:
        """The xattr that marks a directory opaque with these options."""
        return USER_OPAQUE_XATTR if self.userxattr else OPAQUE_XATTR


def _as_path(p: StrPath) -> Path:
    return Path(os.path.abspath(os.fspath(p)))


_MOUNT_ATTRS = (
    (MountFlags.RDONLY, "MOUNT_ATTR_RDONLY"),
    (MountFlags.NOSUID, "MOUNT_ATTR_NOSUID"),
    (MountFlags.NODEV, "MOUNT_ATTR_NODEV"),
    (MountFlags.NOEXEC, "MOUNT_ATTR_NOEXEC"),
)

_lowerdir_append: bool | None = None


def has_lowerdir_append() -> bool:
    """Whether this kernel's overlay takes one lower layer at a time (``lowerdir+``, Linux 6.8+).

    Probed once, with a file system context that is never created or mounted.
    """
    global _lowerdir_append
    if _lowerdir_append is None:
        try:
            fd = _sys.fsopen("overlay")
        except SyscallError:
            _lowerdir_append = False
            return False
        try:
            _sys.fsconfig_set_string(fd, "lowerdir+", "/")
            _lowerdir_append = True
        except SyscallError:
            _lowerdir_append = False
        finally:
            os.close(fd)
    return _lowerdir_append


def _read_fs_log(fd: int) -> list[str]:
    """The messages a file system context logged ("e overlayfs: ..."), without the prefix."""
    out = []
    while True:
        try:
            raw = os.read(fd, 1024)
        except OSError:
            break
        if not raw:
            break
        text = raw.decode(errors="replace").strip()
        level, _, msg = text.partition(" ")
        if level in ("e", "w"):
            out.append(msg.removeprefix("overlayfs: ").removeprefix("overlay: "))
    return out


class OverlayMount:
    """An overlay of *lower* layers (top first) with an optional *upper* and *work* dir.

    Nothing happens until :meth:`mount` (or ``with``); :meth:`unmount` undoes
    it.  Input that cannot work (no lower layer, a missing directory, upper
    and work on different file systems) raises
    :class:`~nsprim.errors.ConfigError` naming the path, before any system call.
    """

    def __init__(
        self,
        target: StrPath,
        lower: Sequence[StrPath],
        upper: StrPath | None = None,
        work: StrPath | None = None,
        *,
        options: OverlayOptions | None = None,
        flags: MountFlags | int = MountFlags.NONE,
        api: MountApi = "auto",
    ) -> None:
        if isinstance(lower, (str, bytes, os.PathLike)):
            raise ConfigError("lower must be a sequence of directories, top first", what="lower")
        self.target = _as_path(target)
        self.lower: tuple[Path, ...] = tuple(_as_path(p) for p in lower)
        self.upper = _as_path(upper) if upper is not None else None
        self.work = _as_path(work) if work is not None else None
        self.options = options if options is not None else OverlayOptions()
        self.flags = MountFlags(int(flags))
        if api not in ("auto", "classic", "new"):
            raise ConfigError(f"api must be auto, classic or new, not {api!r}", what="api")
        self.api: MountApi = api
        self._mounted = False
        if not self.lower:
            raise ConfigError("an overlay needs at least one lower directory", what="lower")
        if (self.upper is None) != (self.work is None):
            raise ConfigError("upper and work dirs go together: give both or neither", what="work")
        if self.upper is None and len(self.lower) < 2:
            raise ConfigError(
                "a read-only overlay (no upper dir) needs at least two lower dirs; "
                "bind-mount a single layer read-only instead",
                what="lower",
            )
        if self.options.volatile and self.upper is None:
            raise ConfigError("volatile needs an upper dir", what="volatile")

    def __repr__(self) -> str:
        state = "mounted" if self._mounted else "not mounted"
        return f"<OverlayMount {self.target} lower={len(self.lower)} upper={self.upper} {state}>"

    # ---- description ------------------------------------------------------------------

    @property
    def mounted(self) -> bool:
        """Whether this object mounted the overlay and has not unmounted it yet."""
        return self._mounted

    @property
    def readonly(self) -> bool:
        """Whether the overlay has no upper dir (or is mounted ``RDONLY``)."""
        return self.upper is None or bool(self.flags & MountFlags.RDONLY)

    def fs_params(self) -> list[tuple[str, str | None]]:
        """The parameters for the new mount API, one ``lowerdir+`` per layer (top first)."""
        out: list[tuple[str, str | None]] = [("source", "overlay")]
        out += [("lowerdir+", os.fspath(p)) for p in self.lower]
        if self.upper is not None and self.work is not None:
            out += [("upperdir", os.fspath(self.upper)), ("workdir", os.fspath(self.work))]
        out += self.options.pairs()
        return out

    def _classic_paths_ok(self) -> bool:
        paths = [*self.lower, *([self.upper, self.work] if self.upper is not None and self.work else [])]
        return not any(c in os.fspath(p) for p in paths for c in _SPECIAL)

    def options_string(self) -> str:
        """The option string for classic mount(2) (``lowerdir=a:b,upperdir=...``).

        Raises :class:`~nsprim.errors.ConfigError` when a path holds ``,``
        ``:`` or ``\\``, which that syntax cannot carry (the new API can).
        """
        if not self._classic_paths_ok():
            raise ConfigError("a layer path contains `,`, `:` or `\\`: use the new mount API", what="lower")
        parts = ["lowerdir=" + ":".join(os.fspath(p) for p in self.lower)]
        if self.upper is not None and self.work is not None:
            parts += [f"upperdir={self.upper}", f"workdir={self.work}"]
        parts += [k if v is None else f"{k}={v}" for k, v in self.options.pairs()]
        return ",".join(parts)

    def choose_api(self) -> Literal["classic", "new"]:
        """Which mount interface :meth:`mount` will use (see the module docs)."""
        if self.api != "auto":
            return self.api
        if self._classic_paths_ok() and len(self.options_string()) <= OPTIONS_LIMIT:
            return "classic"
        return "new"

    # ---- checks -----------------------------------------------------------------------

    def check(self) -> None:
        """Check the directories before mounting; raise ConfigError naming the bad path."""

        def need_dir(p: Path, role: str) -> os.stat_result:
            try:
                st = os.stat(p)
            except FileNotFoundError:
                raise ConfigError(f"overlay {role} `{p}`: No such file or directory", what=role) from None
            except OSError as exc:
                raise ConfigError(f"overlay {role} `{p}`: {exc.strerror}", what=role) from None
            if not os.path.isdir(p):
                raise ConfigError(f"overlay {role} `{p}`: Not a directory", what=role)
            return st

        need_dir(self.target, "target")
        for p in self.lower:
            need_dir(p, "lower dir")
        if self.upper is not None and self.work is not None:
            up = need_dir(self.upper, "upper dir")
            wk = need_dir(self.work, "work dir")
            if up.st_dev != wk.st_dev:
                raise ConfigError(
                    f"overlay upper dir `{self.upper}` and work dir `{self.work}` are on different file systems "
                    "(they must be on the same one)",
                    what="work",
                )
            if self.upper == self.work or self.upper in self.work.parents or self.work in self.upper.parents:
                raise ConfigError(
                    f"overlay upper dir `{self.upper}` and work dir `{self.work}` must be separate subtrees",
                    what="work",
                )
            if self.upper in self.lower:
                raise ConfigError(f"overlay upper dir `{self.upper}` is also a lower dir", what="upper")

    # ---- mounting -----------------------------------------------------------------------

    def mount(self) -> OverlayMount:
        """Mount the overlay on :attr:`target`; return ``self``.

        Raises :class:`~nsprim.errors.ConfigError` for bad directories,
        :class:`~nsprim.errors.SyscallError` when the kernel refuses (with
        the kernel's own reason as hint when it gives one), and
        :class:`~nsprim.errors.UnsupportedError` for a stack too deep for
        this kernel.  Nothing is left mounted on failure.
        """
        if self._mounted:
            raise ConfigError(f"overlay on `{self.target}` is already mounted", what="target")
        self.check()
        if self.choose_api() == "classic":
            self._mount_classic()
        else:
            self._mount_new()
        self._mounted = True
        return self

    def _mount_classic(self) -> None:
        data = self.options_string()
        if len(data) > OPTIONS_LIMIT:
            raise UnsupportedError(
                f"overlay on `{self.target}`: the options of {len(self.lower)} lower layers take {len(data)} bytes, "
                f"more than mount(2) takes ({OPTIONS_LIMIT}); use api='new' (Linux 6.8+)",
                feature="lowerdir+",
            )
        try:
            _sys.mount("overlay", self.target, "overlay", int(self.flags), data)
        except SyscallError as exc:
            reason = self._diagnose() if exc.errno == errno.EINVAL else None
            raise self._error(exc, reason) from None

    def _error(self, exc: SyscallError, reason: str | None) -> SyscallError:
        return SyscallError(
            exc.errno,
            "mount",
            os.fspath(self.target),
            detail=f"mount `overlay` on `{self.target}`",
            hint=reason or exc.hint,
        )

    def _diagnose(self) -> str | None:
        """Why the kernel refused: replay the parameters in a fs context and read its log."""
        with contextlib.suppress(SyscallError, UnsupportedError):
            fd = _sys.fsopen("overlay")
            try:
                self._configure(fd)
            except SyscallError:
                return "; ".join(_read_fs_log(fd)) or None
            finally:
                os.close(fd)
        return None

    def _configure(self, fd: int) -> None:
        for key, value in self.fs_params():
            if value is None:
                _sys.fsconfig_set_flag(fd, key)
            elif key == "lowerdir+" and not has_lowerdir_append():
                raise UnsupportedError(
                    f"overlay on `{self.target}`: this kernel ({os.uname().release}) cannot take lower layers one "
                    f"at a time (lowerdir+, Linux 6.8+), and {len(self.lower)} layers do not fit mount(2)'s "
                    f"{OPTIONS_LIMIT}-byte option string",
                    feature="lowerdir+",
                )
            else:
                _sys.fsconfig_set_string(fd, key, value)
        _sys.fsconfig_create(fd, fstype="overlay")

    def _mount_new(self) -> None:
        try:
            fd = _sys.fsopen("overlay")
        except SyscallError as exc:
            if exc.errno == errno.ENOSYS:
                raise UnsupportedError("this kernel lacks the new mount API (fsopen, Linux 5.2+)") from None
            raise
        try:
            try:
                self._configure(fd)
            except SyscallError as exc:
                raise self._error(exc, "; ".join(_read_fs_log(fd)) or None) from None
            attrs = 0
            for flag, name in _MOUNT_ATTRS:
                if self.flags & flag:
                    attrs |= getattr(C, name)
            mfd = _sys.fsmount(fd, C.FSMOUNT_CLOEXEC, attrs)
            try:
                _sys.move_mount(mfd, "", C.AT_FDCWD, self.target, C.MOVE_MOUNT_F_EMPTY_PATH)
            except SyscallError as exc:
                raise self._error(exc, None) from None
            finally:
                os.close(mfd)
        finally:
            os.close(fd)

    def unmount(self, *, detach: bool = False) -> None:
        """Unmount the overlay (``detach``: lazily, even if busy).  A no-op if not mounted."""
        if not self._mounted:
            return
        _sys.umount(self.target, C.MNT_DETACH if detach else 0)
        self._mounted = False

    def __enter__(self) -> OverlayMount:
        return self.mount()

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.unmount(detach=True)
