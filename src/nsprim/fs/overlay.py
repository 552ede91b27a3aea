"""Overlay file systems: read-only lower layers under one writable upper dir.

An :class:`OverlayMount` describes a union of directories and mounts it::

    from nsprim.fs.overlay import OverlayMount, OverlayOptions

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
few dozen long paths; in it ``,`` separates options and ``:`` layers, so each
path is written with ``\\``, ``:`` and ``,`` escaped by a ``\\``
(:func:`escape_option`), which the kernel undoes.  The new mount API
(``fsopen("overlay")`` and one ``fsconfig("lowerdir+")`` per layer, Linux
6.8+) takes one layer per call, unescaped, of at most 255 bytes, and has no
bound on their number.  By default (``api="auto"``) the classic call is used
when the options fit and the new API otherwise; a kernel that has neither
room nor ``lowerdir+`` raises :class:`~nsprim.errors.UnsupportedError`, and a
path neither can carry a :class:`~nsprim.errors.ConfigError` naming it.
:meth:`OverlayMount.mount_step` gives the same mount as a plan step, for a
child to run (a container's root).

Mount only inside a private mount namespace (see :mod:`nsprim.fs.mount`).
"""

from __future__ import annotations

import contextlib
import errno
import os
import stat
from collections.abc import Sequence
from pathlib import Path
from types import TracebackType
from typing import Literal

from .. import _sys
from .._dataclass import dataclass
from .._paths import StrPath
from .._sys import C
from ..errors import ConfigError, SyscallError, UnsupportedError
from ..plan import Mount, Step
from .mount import MountFlags
from .steps import MountFs

__all__ = [
    "OverlayOptions",
    "OverlayMount",
    "MountApi",
    "OPTIONS_LIMIT",
    "VALUE_LIMIT",
    "escape_option",
    "has_lowerdir_append",
    "WHITEOUT_DEVICE",
    "OPAQUE_XATTR",
    "USER_OPAQUE_XATTR",
]

MountApi = Literal["auto", "classic", "new"]

#: The longest option string mount(2) accepts: one page, NUL included.
OPTIONS_LIMIT = 4095
#: The longest value one fsconfig(FSCONFIG_SET_STRING) call accepts (256 bytes, NUL included).
VALUE_LIMIT = 255
#: The device number of an overlay whiteout (a character device).
WHITEOUT_DEVICE = 0
#: The xattr that marks an upper directory opaque (``userxattr``: :data:`USER_OPAQUE_XATTR`).
OPAQUE_XATTR = "trusted.overlay.opaque"
USER_OPAQUE_XATTR = "user.overlay.opaque"

_SPECIAL = (",", ":", "\\", "\n")  # what an extra option's value may not hold
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


def escape_option(path: str) -> str:
    """*path* as overlayfs reads it back from an option: ``\\``, ``:`` and ``,`` escaped with ``\\``.

    The kernel splits mount(2)'s options at unescaped commas and ``lowerdir``
    at unescaped colons, then removes the escapes from every ``lowerdir``,
    ``upperdir`` and ``workdir`` path (``lowerdir+`` is taken as it is).

    >>> from nsprim.fs.overlay import escape_option
    >>> escape_option("/layers/x:/")
    '/layers/x\\\\:/'
    """
    return path.replace("\\", "\\\\").replace(":", "\\:").replace(",", "\\,")


def _dir_problem(p: Path) -> str | None:
    """Why *p* cannot be an overlay directory (the C library's words), or None."""
    try:
        _need_dir(p, "lower dir")
    except ConfigError as exc:
        return str(exc)
    return None


def _need_dir(p: Path, role: str) -> os.stat_result:
    """os.stat of the directory *p*, or a ConfigError naming it by its *role* ("lower dir")."""
    try:
        st = os.stat(p)
    except OSError as exc:
        raise ConfigError(f"overlay {role} `{p}`: {exc.strerror or 'cannot be opened'}", what=role) from None
    if not stat.S_ISDIR(st.st_mode):
        raise ConfigError(f"overlay {role} `{p}`: Not a directory", what=role)
    if role == "lower dir" and not os.access(p, os.R_OK | os.X_OK):
        raise ConfigError(f"overlay {role} `{p}`: Permission denied", what=role)
    return st


class _ParamError(Exception):
    """A file system context refused one parameter (which one, for the message)."""

    def __init__(self, error: SyscallError, param: tuple[str, str | None]) -> None:
        super().__init__(str(error))
        self.error = error
        self.param = param


def _mount_attrs(flags: MountFlags) -> int:
    attrs = 0
    for flag, name in _MOUNT_ATTRS:
        if flags & flag:
            attrs |= getattr(C, name)
    return attrs


@dataclass(frozen=True)
class OverlayClassicMount(Mount):
    """An overlay mounted with mount(2) in a child: a :class:`~nsprim.plan.Mount` that knows its
    lower layers, so that a failure names the one that is missing."""

    layers: tuple[Path, ...] = ()  # the lower dirs, top first

    def describe_failure(self, part: int, err: int = 0) -> str:
        """The mount, and the first lower layer that is no directory now, if the error was about one."""
        if err in (errno.ENOENT, errno.ENOTDIR, errno.EACCES, errno.ELOOP):
            for p in self.layers:
                if _dir_problem(p) is not None:
                    return f"mount `overlay` on `{os.fspath(self.target)}`: lower dir `{p}`"
        return self.describe()


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
        for role, p in self._paths():
            if "\0" in os.fspath(p):
                raise ConfigError(f"overlay {role} `{os.fspath(p)!r}`: no path the kernel takes holds a NUL", what=role)
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

    def _paths(self) -> list[tuple[str, Path]]:
        """Every directory with its role ("lower dir"...), as messages name it."""
        out = [("target", self.target), *(("lower dir", p) for p in self.lower)]
        if self.upper is not None and self.work is not None:
            out += [("upper dir", self.upper), ("work dir", self.work)]
        return out

    def fs_params(self) -> list[tuple[str, str | None]]:
        """The parameters for the new mount API, one ``lowerdir+`` per layer (top first).

        ``lowerdir+`` takes a path as it is; ``upperdir`` and ``workdir`` are
        unescaped by the kernel, so they are escaped (:func:`escape_option`).
        """
        out: list[tuple[str, str | None]] = [("source", "overlay")]
        out += [("lowerdir+", os.fspath(p)) for p in self.lower]
        if self.upper is not None and self.work is not None:
            out += [
                ("upperdir", escape_option(os.fspath(self.upper))),
                ("workdir", escape_option(os.fspath(self.work))),
            ]
        out += self.options.pairs()
        return out

    def options_string(self) -> str:
        """The option string for classic mount(2) (``lowerdir=a:b,upperdir=...``), every path escaped.

        A layer named ``x:/`` stays one layer (``x\\:/``), never ``x`` and the host's ``/``.
        """
        parts = ["lowerdir=" + ":".join(escape_option(os.fspath(p)) for p in self.lower)]
        if self.upper is not None and self.work is not None:
            parts += [
                f"upperdir={escape_option(os.fspath(self.upper))}",
                f"workdir={escape_option(os.fspath(self.work))}",
            ]
        parts += [k if v is None else f"{k}={v}" for k, v in self.options.pairs()]
        return ",".join(parts)

    def choose_api(self) -> Literal["classic", "new"]:
        """Which mount interface :meth:`mount` will use (see the module docs)."""
        if self.api != "auto":
            return self.api
        if len(self.options_string()) <= OPTIONS_LIMIT:
            return "classic"
        return "new"

    def _check_expressible(self) -> Literal["classic", "new"]:
        """The interface to use, once every path fits it (else ConfigError naming the path)."""
        api = self.choose_api()
        if api == "new":
            for role, p in self._paths()[1:]:
                value = os.fspath(p) if role == "lower dir" else escape_option(os.fspath(p))
                size = len(os.fsencode(value))
                if size > VALUE_LIMIT:
                    why = (
                        f"; the options of its {len(self.lower)} lower layers take {len(self.options_string())} "
                        f"bytes, more than mount(2) takes ({OPTIONS_LIMIT})"
                        if self.api == "auto"
                        else ""
                    )
                    raise ConfigError(
                        f"overlay {role} `{p}`: {size} bytes, more than the new mount API takes for one path "
                        f"({VALUE_LIMIT}){why}: use shorter paths (a symlink farm, say)",
                        what=role,
                    )
        return api

    def mount_step(self) -> Step:
        """The plan step that mounts this overlay in a child, by the interface :meth:`choose_api` says.

        Checks the paths' syntax (as :meth:`mount` does) but not the
        directories: in a child they may be made by earlier steps.  A
        container's root is mounted this way.
        """
        if self._check_expressible() == "classic":
            data = self.options_string()
            if len(data) > OPTIONS_LIMIT:
                raise self._too_long(data)
            return OverlayClassicMount("overlay", self.target, "overlay", int(self.flags), data, layers=self.lower)
        if not has_lowerdir_append():
            raise self._no_append()
        return MountFs("overlay", tuple(self.fs_params()), self.target, _mount_attrs(self.flags))

    def _too_long(self, data: str) -> UnsupportedError:
        return UnsupportedError(
            f"overlay on `{self.target}`: the options of {len(self.lower)} lower layers take {len(data)} bytes, "
            f"more than mount(2) takes ({OPTIONS_LIMIT}); use api='new' (Linux 6.8+)",
            feature="lowerdir+",
        )

    def _no_append(self) -> UnsupportedError:
        return UnsupportedError(
            f"overlay on `{self.target}`: this kernel ({os.uname().release}) cannot take lower layers one "
            f"at a time (lowerdir+, Linux 6.8+), and {len(self.lower)} layers do not fit mount(2)'s "
            f"{OPTIONS_LIMIT}-byte option string",
            feature="lowerdir+",
        )

    # ---- checks -----------------------------------------------------------------------

    def check_lower(self) -> None:
        """Check that every lower layer is a directory; raise ConfigError naming the first that is not.

        Also what :meth:`check` does first; alone, for overlays whose other
        directories are made later, by a child's earlier steps.
        """
        self._check_expressible()
        for p in self.lower:
            _need_dir(p, "lower dir")

    def check(self) -> None:
        """Check the directories before mounting; raise ConfigError naming the bad path."""
        self.check_lower()
        _need_dir(self.target, "target")
        if self.upper is not None and self.work is not None:
            up = _need_dir(self.upper, "upper dir")
            wk = _need_dir(self.work, "work dir")
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
        :class:`~nsprim.errors.SyscallError` when the kernel refuses (naming
        the lower layer when it was one, with the kernel's own reason as hint
        when it gives one), and :class:`~nsprim.errors.UnsupportedError` for
        a stack too deep for this kernel.  Nothing is left mounted on failure.
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
            raise self._too_long(data)
        try:
            _sys.mount("overlay", self.target, "overlay", int(self.flags), data)
        except SyscallError as exc:
            reason = self._diagnose() if exc.errno == errno.EINVAL else None
            raise self._error(exc, reason) from None

    def _error(
        self, exc: SyscallError, reason: str | None, param: tuple[str, str | None] | None = None
    ) -> SyscallError:
        detail = f"mount `overlay` on `{self.target}`"
        if param is not None and param[0] == "lowerdir+":
            detail += f": lower dir `{param[1]}`"
        elif param is None and exc.errno in (errno.ENOENT, errno.ENOTDIR, errno.EACCES, errno.ELOOP):
            # Checked before the call, and gone since: say which.
            gone = next((p for p in self.lower if _dir_problem(p) is not None), None)
            detail += f": lower dir `{gone}`" if gone is not None else ""
        return SyscallError(exc.errno, "mount", os.fspath(self.target), detail=detail, hint=reason or exc.hint)

    def _diagnose(self) -> str | None:
        """Why the kernel refused: replay the parameters in a fs context and read its log."""
        with contextlib.suppress(SyscallError, UnsupportedError, _ParamError):
            fd = _sys.fsopen("overlay")
            try:
                self._configure(fd)
            except (SyscallError, _ParamError):
                return "; ".join(_read_fs_log(fd)) or None
            finally:
                os.close(fd)
        return None

    def _configure(self, fd: int) -> None:
        for key, value in self.fs_params():
            try:
                if value is None:
                    _sys.fsconfig_set_flag(fd, key)
                elif key == "lowerdir+" and not has_lowerdir_append():
                    raise self._no_append()
                else:
                    _sys.fsconfig_set_string(fd, key, value)
            except SyscallError as exc:
                raise _ParamError(exc, (key, value)) from None
        _sys.fsconfig_create(fd, fstype="overlay")

    def _mount_new(self) -> None:
        self._check_expressible()
        try:
            fd = _sys.fsopen("overlay")
        except SyscallError as exc:
            if exc.errno == errno.ENOSYS:
                raise UnsupportedError("this kernel lacks the new mount API (fsopen, Linux 5.2+)") from None
            raise
        try:
            try:
                self._configure(fd)
            except _ParamError as failed:
                raise self._error(failed.error, "; ".join(_read_fs_log(fd)) or None, failed.param) from None
            except SyscallError as exc:
                raise self._error(exc, "; ".join(_read_fs_log(fd)) or None) from None
            mfd = _sys.fsmount(fd, C.FSMOUNT_CLOEXEC, _mount_attrs(self.flags))
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
