"""Parsers for ``/proc/<pid>/mountinfo`` and ``/proc/<pid>/cgroup``.

Pure functions on text, so they can be tested without a kernel; the readers
that feed them live in :mod:`nsprim.cgroup.host`.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Final

from nsprim.errors import ConfigError

__all__ = ["MountEntry", "CgroupEntry", "parse_mountinfo", "parse_proc_cgroup", "unescape_mount_field"]


@dataclass(frozen=True)
class MountEntry:
    """One line of ``/proc/<pid>/mountinfo`` (only the fields cgroup code needs).

    ``root`` is the path inside the file system that is mounted (for a cgroup
    mount: the cgroup that appears as the mount point), ``super_options`` the
    per-superblock options (for cgroup v1: the controllers of the hierarchy).
    """

    mount_id: int
    parent_id: int
    device: str
    root: str
    mount_point: str
    options: tuple[str, ...]
    fs_type: str
    source: str
    super_options: tuple[str, ...]


@dataclass(frozen=True)
class CgroupEntry:
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


_ESCAPE_RE: Final = re.compile(r"\\([0-7]{3})")


def unescape_mount_field(field: str) -> str:
    r"""Undo the kernel's octal escaping of space, tab, newline and backslash (``\040`` -> ``" "``)."""
    return _ESCAPE_RE.sub(lambda m: chr(int(m.group(1), 8)), field)


def parse_mountinfo(text: str) -> list[MountEntry]:
    """Parse the text of a mountinfo file; malformed lines raise :class:`ConfigError`."""
    entries: list[MountEntry] = []
    for lineno, line in enumerate(text.split("\n"), 1):
        if not line.strip():
            continue
        fields = line.split(" ")
        try:
            sep = fields.index("-", 6)
            mount_id, parent_id = int(fields[0]), int(fields[1])
            device, root, mount_point, options = fields[2], fields[3], fields[4], fields[5]
            fs_type, source = fields[sep + 1], fields[sep + 2]
            super_options = fields[sep + 3] if len(fields) > sep + 3 else ""
        except (ValueError, IndexError) as exc:
            raise ConfigError(f"mountinfo line {lineno} is malformed: `{line}`", what="mountinfo") from exc
        entries.append(
            MountEntry(
                mount_id=mount_id,
                parent_id=parent_id,
                device=device,
                root=unescape_mount_field(root),
                mount_point=unescape_mount_field(mount_point),
                options=tuple(options.split(",")),
                fs_type=unescape_mount_field(fs_type),
                source=unescape_mount_field(source),
                super_options=tuple(o for o in super_options.split(",") if o),
            )
        )
    return entries


def parse_proc_cgroup(text: str) -> list[CgroupEntry]:
    """Parse the text of ``/proc/<pid>/cgroup``; malformed lines raise :class:`ConfigError`.

    The path may itself contain ``:``; only the first two are separators.
    A trailing ``" (deleted)"`` (a removed cgroup) is kept as part of the path.
    """
    entries: list[CgroupEntry] = []
    for lineno, line in enumerate(text.split("\n"), 1):
        if not line:
            continue
        parts = line.split(":", 2)
        if len(parts) != 3 or not parts[0].isdigit() or not parts[2].startswith("/"):
            raise ConfigError(f"/proc/<pid>/cgroup line {lineno} is malformed: `{line}`", what="cgroup")
        controllers = tuple(c for c in parts[1].split(",") if c)
        entries.append(CgroupEntry(int(parts[0]), controllers, parts[2]))
    return entries
