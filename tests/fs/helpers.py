"""Shared helpers for the file system tests: tree snapshots and builders."""

from __future__ import annotations

import hashlib
import os
import stat
from pathlib import Path
from typing import Any

__all__ = ["snapshot", "make_tree", "xattrs"]


def xattrs(path: Path) -> dict[str, bytes]:
    """The xattrs of *path* (not followed), without overlay's internal ones."""
    out = {}
    try:
        names = os.listxattr(path, follow_symlinks=False)
    except OSError:
        return {}
    for name in names:
        if name.startswith(("trusted.overlay.", "user.overlay.", "security.")):
            continue
        out[name] = os.getxattr(path, name, follow_symlinks=False)
    return out


def snapshot(root: Path, *, times: bool = False, with_xattrs: bool = True) -> dict[str, tuple[Any, ...]]:
    """Everything observable about the tree under *root*, keyed by relative path."""
    out: dict[str, tuple[Any, ...]] = {}
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames.sort()
        for name in sorted(dirnames + filenames):
            p = Path(dirpath) / name
            rel = str(p.relative_to(root))
            st = os.lstat(p)
            kind = stat.S_IFMT(st.st_mode)
            if stat.S_ISREG(kind):
                body: Any = hashlib.sha256(p.read_bytes()).hexdigest()
            elif stat.S_ISLNK(kind):
                body = os.readlink(p)
            elif stat.S_ISCHR(kind) or stat.S_ISBLK(kind):
                body = (os.major(st.st_rdev), os.minor(st.st_rdev))
            else:
                body = None
            entry: tuple[Any, ...] = (kind, stat.S_IMODE(st.st_mode), st.st_uid, st.st_gid, body)
            if with_xattrs:
                entry += (tuple(sorted(xattrs(p).items())),)
            if times and not stat.S_ISDIR(kind) and not stat.S_ISLNK(kind):
                entry += (int(st.st_mtime),)
            out[rel] = entry
    return out


def make_tree(root: Path, spec: dict[str, str | bytes | None]) -> Path:
    """Create files (str/bytes content) and directories (``None``) under *root*."""
    root.mkdir(parents=True, exist_ok=True)
    for rel, content in spec.items():
        p = root / rel
        if content is None:
            p.mkdir(parents=True, exist_ok=True)
        else:
            p.parent.mkdir(parents=True, exist_ok=True)
            p.write_bytes(content.encode() if isinstance(content, str) else content)
    return root
