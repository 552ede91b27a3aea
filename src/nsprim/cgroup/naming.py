"""Validation of cgroup names and paths: nothing may escape the intended parent."""

from __future__ import annotations

import os
from pathlib import PurePosixPath

from nsprim.errors import ConfigError

__all__ = ["validate_name", "validate_path"]


def validate_name(name: str) -> str:
    """Check a group name: one path component, not ``.``/``..``, no ``/``, NUL or newline, at most 255 bytes."""
    if not isinstance(name, str) or not name:
        raise ConfigError(f"cgroup name: `{name!r}` must be a non-empty string", what="name")
    if "/" in name or "\0" in name or "\n" in name or name in (".", ".."):
        raise ConfigError(f"cgroup name: `{name}` must be a single path component (no '/', '..')", what="name")
    if len(os.fsencode(name)) > 255:
        raise ConfigError(f"cgroup name: `{name[:40]}...` is longer than 255 bytes", what="name")
    return name


def validate_path(path: str) -> PurePosixPath:
    """Normalise a cgroup path (relative to a mount point); ``.``/``..`` components raise :class:`ConfigError`."""
    if not isinstance(path, str) or "\0" in path:
        raise ConfigError(f"cgroup path: `{path!r}` is not a path", what="path")
    p = PurePosixPath("/" + path.lstrip("/"))
    if any(part in ("..", ".") for part in p.parts):
        raise ConfigError(f"cgroup path: `{path}` must not contain '.' or '..'", what="path")
    return p
