"""User namespace id maps (``/proc/<pid>/uid_map`` and ``gid_map``).

An :class:`IdMap` is a validated list of ranges ``inside outside count``:
ids ``inside .. inside+count-1`` in the namespace are ids
``outside .. outside+count-1`` in the parent namespace.

    >>> m = IdMap.single(0, 1000)
    >>> m.render()
    '0 1000 1\\n'
    >>> IdMap.parse("0 100000 65536").to_outside(42)
    100042
"""

from __future__ import annotations

import errno
import itertools
import os
from collections.abc import Iterable
from pathlib import Path
from typing import Final

from ._dataclass import dataclass
from .errors import ConfigError, SyscallError

__all__ = ["IdRange", "IdMap", "MAX_ID", "MAX_RANGES", "write_id_maps", "subordinate_ranges"]

MAX_ID: Final = 2**32 - 1  # (uid_t)-1 is never a valid id
MAX_RANGES: Final = 340  # the kernel's limit on lines in one map (Linux 4.15+)


@dataclass(frozen=True, order=True)
class IdRange:
    """One line of an id map."""

    inside: int
    outside: int
    count: int

    def __post_init__(self) -> None:
        for name in ("inside", "outside", "count"):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool):
                raise ConfigError(f"id map {name} must be an integer, not {value!r}", what=name)
        if self.count < 1:
            raise ConfigError(f"id map count must be at least 1, not {self.count}", what="count")
        for name in ("inside", "outside"):
            start = getattr(self, name)
            if start < 0:
                raise ConfigError(f"id map {name} id must not be negative: {start}", what=name)
            if start + self.count > MAX_ID:
                raise ConfigError(
                    f"id map range {name} {start}+{self.count} passes the largest id {MAX_ID - 1}", what=name
                )

    @property
    def inside_end(self) -> int:
        """One past the last inside id."""
        return self.inside + self.count

    @property
    def outside_end(self) -> int:
        """One past the last outside id."""
        return self.outside + self.count


def _overlaps(a: list[tuple[int, int]]) -> tuple[int, int] | None:
    spans = sorted(a)
    for (s1, e1), (s2, _e2) in itertools.pairwise(spans):
        if s2 < e1:
            return (s1, e1)
    return None


@dataclass(frozen=True)
class IdMap:
    """A validated id map: up to 340 ranges, none overlapping inside or outside."""

    ranges: tuple[IdRange, ...]

    def __post_init__(self) -> None:
        if not self.ranges:
            raise ConfigError("an id map needs at least one range", what="ranges")
        if len(self.ranges) > MAX_RANGES:
            raise ConfigError(f"an id map has at most {MAX_RANGES} ranges, not {len(self.ranges)}", what="ranges")
        for side in ("inside", "outside"):
            spans = [(getattr(r, side), getattr(r, side) + r.count) for r in self.ranges]
            clash = _overlaps(spans)
            if clash is not None:
                raise ConfigError(
                    f"id map ranges overlap on the {side} side near ids {clash[0]}..{clash[1] - 1}", what="ranges"
                )

    @classmethod
    def single(cls, inside: int, outside: int, count: int = 1) -> IdMap:
        """A map of one range (the only kind an unprivileged process may write itself)."""
        return cls((IdRange(inside, outside, count),))

    @classmethod
    def of(cls, ranges: Iterable[tuple[int, int, int] | IdRange]) -> IdMap:
        """Build from ``(inside, outside, count)`` tuples."""
        return cls(tuple(r if isinstance(r, IdRange) else IdRange(*r) for r in ranges))

    @classmethod
    def identity(cls) -> IdMap:
        """Every id maps to itself (the initial user namespace's map)."""
        return cls.single(0, 0, MAX_ID)

    @classmethod
    def parse(cls, text: str) -> IdMap:
        """Parse the ``/proc/<pid>/uid_map`` format (whitespace-separated triples)."""
        ranges = []
        for lineno, line in enumerate(text.splitlines(), 1):
            fields = line.split()
            if not fields:
                continue
            if len(fields) != 3:
                raise ConfigError(f"id map line {lineno} `{line.strip()}`: expected `inside outside count`")
            try:
                inside, outside, count = (int(f, 10) for f in fields)
            except ValueError:
                raise ConfigError(f"id map line {lineno} `{line.strip()}`: not three integers") from None
            ranges.append(IdRange(inside, outside, count))
        return cls(tuple(ranges))

    @classmethod
    def read(cls, pid: int | str, kind: str = "uid") -> IdMap:
        """Read the ``uid`` or ``gid`` map of process *pid*."""
        if kind not in ("uid", "gid"):
            raise ConfigError(f"id map kind must be `uid` or `gid`, not `{kind}`", what="kind")
        path = Path(f"/proc/{pid}/{kind}_map")
        try:
            return cls.parse(path.read_text())
        except OSError as exc:
            raise SyscallError(exc.errno or 0, "read", path) from None

    def render(self) -> str:
        """The text the kernel expects in ``uid_map``/``gid_map``."""
        return "".join(f"{r.inside} {r.outside} {r.count}\n" for r in self.ranges)

    def to_outside(self, inside: int) -> int | None:
        """The parent-namespace id of *inside*, or ``None`` if unmapped."""
        for r in self.ranges:
            if r.inside <= inside < r.inside_end:
                return r.outside + (inside - r.inside)
        return None

    def to_inside(self, outside: int) -> int | None:
        """The namespace id of parent id *outside*, or ``None`` if unmapped."""
        for r in self.ranges:
            if r.outside <= outside < r.outside_end:
                return r.inside + (outside - r.outside)
        return None

    @property
    def is_single(self) -> bool:
        """Whether the map is one range of one id."""
        return len(self.ranges) == 1 and self.ranges[0].count == 1

    def summary(self, first: int = 3) -> str:
        """The map in one line: its *first* ranges, then how many more (a map has up to 340).

        >>> IdMap.of([(i, 1000 + i, 1) for i in range(5)]).summary()
        '0->1000+1, 1->1001+1, 2->1002+1 ... and 2 more'
        """
        shown = ", ".join(f"{r.inside}->{r.outside}+{r.count}" for r in self.ranges[:first])
        rest = len(self.ranges) - first
        return f"{shown} ... and {rest} more" if rest > 0 else shown

    def __str__(self) -> str:
        return self.summary()


def subordinate_ranges(user: str, kind: str = "uid") -> list[tuple[int, int]]:
    """The ``(start, count)`` ranges ``/etc/subuid`` (or subgid) grants *user*."""
    path = Path(f"/etc/sub{kind}")
    out = []
    try:
        text = path.read_text()
    except FileNotFoundError:
        return []
    uid = None
    try:
        import pwd

        uid = str(pwd.getpwnam(user).pw_uid)
    except KeyError:
        pass
    for line in text.splitlines():
        parts = line.strip().split(":")
        if len(parts) == 3 and parts[0] in (user, uid):
            try:
                out.append((int(parts[1]), int(parts[2])))
            except ValueError:
                continue
    return out


def write_id_maps(pid: int, uid_map: IdMap | None, gid_map: IdMap | None, *, deny_setgroups: bool) -> None:
    """Write *pid*'s id maps from the parent user namespace.

    As root (CAP_SETUID/CAP_SETGID), maps are written directly.  An
    unprivileged caller may write a single mapping of its own ids (with
    setgroups denied for the gid map); for ranges it uses the setuid helpers
    ``newuidmap``/``newgidmap`` when they are installed.
    """
    # An unprivileged direct gid mapping is only allowed with setgroups denied.
    unprivileged_gid_write = gid_map is not None and os.geteuid() != 0 and not _needs_helper(gid_map, "gid")
    if deny_setgroups or unprivileged_gid_write:
        _write(Path(f"/proc/{pid}/setgroups"), "deny\n")
    for kind, idmap in (("uid", uid_map), ("gid", gid_map)):
        if idmap is None:
            continue
        if _needs_helper(idmap, kind):
            _run_helper(pid, kind, idmap)
        else:
            _write(Path(f"/proc/{pid}/{kind}_map"), idmap.render(), shown=idmap.summary())


def _needs_helper(idmap: IdMap, kind: str) -> bool:
    if os.geteuid() == 0:
        return False
    own = os.geteuid() if kind == "uid" else os.getegid()
    return not (idmap.is_single and idmap.ranges[0].outside == own)


def _run_helper(pid: int, kind: str, idmap: IdMap) -> None:
    import shutil
    import subprocess

    tool = f"new{kind}map"
    exe = shutil.which(tool)
    if exe is None:
        hint = f"an unprivileged user needs `{tool}` (package uidmap) to map ranges"
        raise SyscallError(errno.EPERM, "write", f"/proc/{pid}/{kind}_map", hint=hint)
    args = [exe, str(pid)]
    for r in idmap.ranges:
        args += [str(r.inside), str(r.outside), str(r.count)]
    proc = subprocess.run(args, capture_output=True, text=True, check=False)
    if proc.returncode != 0:
        raise SyscallError(
            errno.EPERM,
            tool,
            f"/proc/{pid}/{kind}_map",
            detail=f"{tool} for pid {pid}",
            hint=proc.stderr.strip() or None,
        )


def _write(path: Path, text: str, *, shown: str | None = None) -> None:
    """Write *text* to *path* in one call; an error shows *shown* for it (a map's summary)."""
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CLOEXEC)
    except OSError as exc:
        raise SyscallError(exc.errno or 0, "open", path) from None
    try:
        os.write(fd, text.encode())
    except OSError as exc:
        what = shown if shown is not None else text.strip()
        raise SyscallError(exc.errno or 0, "write", path, detail=f"write `{what}` to `{path}`") from None
    finally:
        os.close(fd)
