"""An image's configuration as a container: :func:`configured`.

``Entrypoint`` then ``Cmd`` (either replaced), ``Env`` over the container's
defaults, ``WorkingDir``, ``User`` and ``StopSignal``, as docker and podman
read them.  ``User`` is resolved before the container starts, in the image's
own ``/etc/passwd`` and ``/etc/group`` (:func:`resolve_user`): ``name``,
``uid``, ``name:group``, ``uid:gid`` and their mixtures, the user's primary
group from ``passwd`` unless a group is given, the groups ``/etc/group``
lists the user in as supplementary ones, and ``HOME`` from ``passwd`` unless
the image sets it.  A name the image does not have is an
:class:`~nsprim.errors.ImageError` naming it, as a ``StopSignal`` that is no
signal is.

The two files are read from the image's extracted layers, top first, as the
overlay would show them (a whiteout or an opaque directory hides what is
below), and never through a symbolic link: an image's ``/etc/passwd`` that is
a link is refused rather than followed out of the image.
"""

from __future__ import annotations

import os
import signal
import stat
from collections.abc import Sequence
from pathlib import Path

from .._dataclass import dataclass
from ..errors import ImageError
from .model import ImageConfig

TYPE_CHECKING = False  # (typing itself is not imported)
if TYPE_CHECKING:
    from ..container import Container

__all__ = ["configured", "resolve_user", "ImageUser", "parse_stop_signal", "read_image_file"]

_OPAQUE_XATTRS = ("trusted.overlay.opaque", "user.overlay.opaque")
_MAX_FILE = 4 << 20


@dataclass(frozen=True)
class ImageUser:
    """A ``User`` resolved in an image: ids, supplementary groups, and the home ``passwd`` gives (or ``""``)."""

    uid: int
    gid: int
    groups: tuple[int, ...] = ()
    home: str = ""


def configured(
    box: Container,
    config: ImageConfig,
    lower_dirs: Sequence[Path],
    command: Sequence[str] = (),
    *,
    entrypoint: Sequence[str] | None = None,
) -> Container:
    """*box* with what *config* says a container of the image runs (*lower_dirs*: its layers,
    top first, where ``User`` is looked up); *command* replaces ``Cmd``, *entrypoint* ``Entrypoint``."""
    settings = config.config
    argv = settings.argv(command, entrypoint)
    if not argv:
        raise ImageError("the image has no Entrypoint or Cmd: give a command", blob=None)
    env = {key: value for key, _, value in (item.partition("=") for item in settings.env)}
    box = box.command(*argv)
    if settings.working_dir:
        if not settings.working_dir.startswith("/"):
            raise ImageError(f'WorkingDir "{settings.working_dir}": not an absolute path', blob=None)
        box = box.cwd(settings.working_dir)
    user = resolve_user(settings.user, lower_dirs)
    box = box.user(user.uid, user.gid, user.groups)
    if user.home and "HOME" not in env:
        env["HOME"] = user.home
    box = box.env(env)
    if settings.stop_signal:
        box = box.stop_signal(parse_stop_signal(settings.stop_signal))
    return box


def parse_stop_signal(text: str) -> int:
    """The signal *text* names: ``SIGTERM``, ``TERM``, ``15``, ``SIGRTMIN+3``; ImageError if none."""
    name = text.strip().upper()
    if name.isdigit():
        number = int(name)
    else:
        name = name if name.startswith("SIG") else "SIG" + name
        base, plus, offset = name.partition("+")
        if base == "SIGRTMIN" and (not plus or offset.isdigit()):
            number = signal.SIGRTMIN + int(offset or 0)
        else:
            try:
                number = signal.Signals[name]
            except KeyError:
                number = 0
    if not 0 < number <= signal.SIGRTMAX:
        raise ImageError(f'StopSignal "{text}": not a signal', blob=None)
    return int(number)


def resolve_user(spec: str, lower_dirs: Sequence[Path]) -> ImageUser:
    """``User`` *spec* (``""`` is root) as ids, looked up in the image's ``/etc/passwd`` and ``/etc/group``."""
    user, sep, group = spec.partition(":")
    if sep and not group:
        raise ImageError(f'User "{spec}": an empty group', blob=None)
    passwd = _entries(read_image_file(lower_dirs, "etc/passwd"), 7)
    entry = None
    if not user or user.isdigit():
        uid = int(user or 0)
        entry = next((e for e in passwd if e[2] == str(uid)), None)
    else:
        entry = next((e for e in passwd if e[0] == user), None)
        if entry is None:
            raise ImageError(f'User "{spec}": no user `{user}` in the image\'s /etc/passwd', blob=None)
        uid = _id(entry[2], spec, "/etc/passwd")
    gid = _id(entry[3], spec, "/etc/passwd") if entry is not None else 0
    groups_file = _entries(read_image_file(lower_dirs, "etc/group"), 4)
    if group:
        if group.isdigit():
            gid = int(group)
        else:
            found = next((e for e in groups_file if e[0] == group), None)
            if found is None:
                raise ImageError(f'User "{spec}": no group `{group}` in the image\'s /etc/group', blob=None)
            gid = _id(found[2], spec, "/etc/group")
    name = entry[0] if entry is not None else None
    extra = sorted(
        {_id(e[2], spec, "/etc/group") for e in groups_file if name is not None and name in e[3].split(",")} - {gid}
    )
    return ImageUser(uid, gid, tuple(extra), entry[5] if entry is not None else "")


def _entries(data: bytes | None, fields: int) -> list[list[str]]:
    if data is None:
        return []
    rows = []
    for line in data.decode("utf-8", "replace").splitlines():
        parts = line.split(":")
        if len(parts) >= fields and not line.startswith("#"):
            rows.append(parts)
    return rows


def _id(text: str, spec: str, where: str) -> int:
    if not text.isdigit() or int(text) > 0xFFFFFFFE:
        raise ImageError(f'User "{spec}": the image\'s {where} has the id "{text}", not a number', blob=None)
    return int(text)


def read_image_file(lower_dirs: Sequence[Path], relative: str) -> bytes | None:
    """The file at *relative* (``etc/passwd``) as the overlay of *lower_dirs* (top first) shows it,
    ``None`` if it has none; a symbolic link on the way is an ImageError, never followed."""
    parts = relative.strip("/").split("/")
    for layer in lower_dirs:
        path = layer
        hidden_below = False
        for i, part in enumerate(parts):
            path = path / part
            try:
                st = os.lstat(path)
            except FileNotFoundError:
                break
            if stat.S_ISCHR(st.st_mode) and st.st_rdev == 0:  # a whiteout: deleted from here down
                return None
            if stat.S_ISLNK(st.st_mode):
                raise ImageError(f"read `/{relative}` of the image: `/{'/'.join(parts[: i + 1])}` is a symbolic link",
                                 blob=str(path))  # fmt: skip
            if i < len(parts) - 1:
                if not stat.S_ISDIR(st.st_mode):
                    return None
                hidden_below = hidden_below or _opaque(path)
                continue
            if not stat.S_ISREG(st.st_mode):
                return None
            return _read(path, relative)
        if hidden_below:
            return None
    return None


def _opaque(path: Path) -> bool:
    for name in _OPAQUE_XATTRS:
        try:
            if os.getxattr(path, name, follow_symlinks=False) == b"y":
                return True
        except OSError:
            continue
    return False


def _read(path: Path, relative: str) -> bytes:
    fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC | os.O_NONBLOCK)
    try:
        with os.fdopen(fd, "rb", closefd=False) as f:
            data = f.read(_MAX_FILE + 1)
    finally:
        os.close(fd)
    if len(data) > _MAX_FILE:
        raise ImageError(f"read `/{relative}` of the image: more than {_MAX_FILE} bytes", blob=str(path))
    return data
