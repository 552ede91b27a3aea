"""The parser for ``/proc/<pid>/cgroup``: where a process sits in each hierarchy.

A pure function on text, so it can be tested without a kernel; the reader
that feeds it lives in :mod:`nsprim.cgroup.host`, and the mount table it is
matched against is :mod:`nsprim.fs.mountinfo`'s.
"""

from __future__ import annotations

import warnings

from nsprim.errors import ConfigError
from nsprim.fs import mountinfo

from .._dataclass import dataclass

__all__ = ["CGroupMembership", "parse_proc_cgroup"]


@dataclass(frozen=True)
class CGroupMembership:
    """One line of ``/proc/<pid>/cgroup``: ``hierarchy_id:controllers:path``.

    For cgroup v2 ``hierarchy_id`` is 0 and ``controllers`` empty.  ``path``
    is relative to the cgroup namespace root of the reader.
    """

    hierarchy_id: int
    controllers: tuple[str, ...]
    path: str

    @property
    def is_unified(self) -> bool:
        """True for the cgroup v2 line (``0::/path``)."""
        return self.hierarchy_id == 0 and not self.controllers


def parse_proc_cgroup(text: str) -> list[CGroupMembership]:
    """Parse the text of ``/proc/<pid>/cgroup``; malformed lines raise :class:`ConfigError`.

    The path may itself contain ``:``; only the first two are separators.
    A trailing ``" (deleted)"`` (a removed cgroup) is kept as part of the path.
    """
    entries: list[CGroupMembership] = []
    for lineno, line in enumerate(text.split("\n"), 1):
        if not line:
            continue
        parts = line.split(":", 2)
        if len(parts) != 3 or not parts[0].isdigit() or not parts[2].startswith("/"):
            raise ConfigError(f"/proc/<pid>/cgroup line {lineno} is malformed: `{line}`", what="cgroup")
        controllers = tuple(c for c in parts[1].split(",") if c)
        entries.append(CGroupMembership(int(parts[0]), controllers, parts[2]))
    return entries


TYPE_CHECKING = False  # (typing itself is not imported)
if TYPE_CHECKING:  # the deprecated names, for type checkers (at run time: __getattr__ below)
    CgroupEntry = CGroupMembership
    MountEntry = mountinfo.MountInfo
    parse_mountinfo = mountinfo.parse_mountinfo
    unescape_mount_field = mountinfo.unescape


def deprecated_name(module: str, name: str) -> object:
    """The object an old name of the cgroup layer stood for, with a :class:`DeprecationWarning`."""
    moved: dict[str, tuple[object, str]] = {
        "CgroupEntry": (CGroupMembership, "nsprim.cgroup.CGroupMembership"),
        "MountEntry": (mountinfo.MountInfo, "nsprim.fs.mountinfo.MountInfo"),
        "parse_mountinfo": (mountinfo.parse_mountinfo, "nsprim.fs.mountinfo.parse_mountinfo"),
        "unescape_mount_field": (mountinfo.unescape, "nsprim.fs.mountinfo.unescape"),
    }
    if name not in moved:
        raise AttributeError(f"module {module!r} has no attribute {name!r}")
    obj, new = moved[name]
    warnings.warn(f"{module}.{name} is deprecated: use {new}", DeprecationWarning, stacklevel=3)
    return obj


def __getattr__(name: str) -> object:
    return deprecated_name(__name__, name)
