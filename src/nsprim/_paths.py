"""Path arguments: the one alias for them and the one way to hand them to C as bytes."""

from __future__ import annotations

import os

__all__ = ["StrPath", "PathArg", "to_bytes"]

StrPath = str | os.PathLike[str]
"""A path given as text or a path-like object (what the public API takes)."""

PathArg = str | bytes | os.PathLike[str]
"""A path as the system call wrappers take it: also raw bytes."""


def to_bytes(path: PathArg) -> bytes:
    """*path* as the bytes the kernel sees (undecodable bytes kept, as :func:`os.fsencode` does)."""
    return os.fsencode(path)
