"""The mount table: ``/proc/<pid>/mountinfo`` parsed into :class:`MountInfo` records.

The one parser of the package (the cgroup layer reads its hierarchies with it too)::

    >>> from nsprim.fs.mountinfo import mountinfo
    >>> root = next(m for m in mountinfo() if m.mount_point == "/")
    >>> root.fstype  # doctest: +SKIP
    'ext4'
"""

from __future__ import annotations

import os

from .._dataclass import dataclass
from .._paths import StrPath
from ..errors import ConfigError
from .mount import Propagation

__all__ = ["MountInfo", "mountinfo", "parse_mountinfo", "find_mount", "is_mount_point", "unescape"]


def unescape(field: str) -> str:
    r"""Undo the kernel's octal escapes (``\040`` for a space, ``\134`` for a backslash)."""
    if "\\" not in field:
        return field
    out = []
    i = 0
    while i < len(field):
        code = field[i + 1 : i + 4]
        if field[i] == "\\" and len(code) == 3 and all(c in "01234567" for c in code):
            out.append(chr(int(code, 8)))
            i += 4
        else:
            out.append(field[i])
            i += 1
    return "".join(out)


@dataclass(frozen=True)
class MountInfo:
    """One line of ``/proc/<pid>/mountinfo`` (see proc(5)), unescaped.

    ``options`` are the per-mount options (``rw,nosuid``), ``super_options``
    the file system's (``lowerdir=...``); ``optional`` the propagation tags
    (``shared:1``, ``master:2``).
    """

    mount_id: int
    parent_id: int
    major: int
    minor: int
    root: str
    mount_point: str
    options: tuple[str, ...]
    optional: tuple[str, ...]
    fstype: str
    source: str
    super_options: tuple[str, ...]

    @property
    def readonly(self) -> bool:
        """Whether the mount itself is read-only."""
        return "ro" in self.options

    @property
    def propagation(self) -> Propagation:
        """The mount's propagation type, from the optional fields."""
        tags = {t.split(":", 1)[0] for t in self.optional}
        if "shared" in tags:
            return Propagation.SHARED
        if "master" in tags:
            return Propagation.SLAVE
        if "unbindable" in tags:
            return Propagation.UNBINDABLE
        return Propagation.PRIVATE

    def super_option(self, name: str) -> str | None:
        """The value of one file system option (``"lowerdir"``), ``""`` for a flag, else ``None``."""
        for opt in self.super_options:
            key, sep, value = opt.partition("=")
            if key == name:
                return value if sep else ""
        return None


def parse_mountinfo(text: str) -> list[MountInfo]:
    r"""Parse the text of a mountinfo file; a malformed line raises :class:`~nsprim.errors.ConfigError`.

    Lines end at ``\n`` only: the kernel escapes newlines in names but not
    other control characters (a vertical tab or form feed is a name's own).
    """
    out = []
    for lineno, line in enumerate(text.split("\n"), 1):
        if not line.strip():
            continue
        fields = line.split(" ")
        try:
            sep = fields.index("-", 6)
            major, minor = fields[2].split(":")
            out.append(
                MountInfo(
                    mount_id=int(fields[0]),
                    parent_id=int(fields[1]),
                    major=int(major),
                    minor=int(minor),
                    root=unescape(fields[3]),
                    mount_point=unescape(fields[4]),
                    options=tuple(fields[5].split(",")),
                    optional=tuple(fields[6:sep]),
                    fstype=unescape(fields[sep + 1]),
                    source=unescape(fields[sep + 2]),
                    super_options=tuple(unescape(o) for o in fields[sep + 3].split(","))
                    if len(fields) > sep + 3
                    else (),
                )
            )
        except (ValueError, IndexError) as exc:
            raise ConfigError(f"mountinfo line {lineno} is malformed: `{line}`", what="mountinfo") from exc
    return out


def mountinfo(pid: int | str = "self") -> list[MountInfo]:
    """The mount table of process *pid* (default: the caller), in kernel order."""
    with open(f"/proc/{pid}/mountinfo", encoding="utf-8", errors="surrogateescape") as f:
        return parse_mountinfo(f.read())


def find_mount(path: StrPath, pid: int | str = "self") -> MountInfo | None:
    """The topmost mount whose mount point is exactly *path*, if any."""
    target = os.path.normpath(os.fspath(path))
    found = None
    for m in mountinfo(pid):
        if m.mount_point == target:
            found = m
    return found


def is_mount_point(path: StrPath) -> bool:
    """Whether *path* is the mount point of some mount in the caller's namespace."""
    return find_mount(os.path.realpath(os.fspath(path))) is not None
