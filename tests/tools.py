"""The external tools the tests use, found without relying on tools a fresh machine lacks.

A test that needs a tool calls :func:`need_tool` (or :func:`static_busybox`).
Without the tool the test is skipped with a :class:`MissingTool` outcome;
under ``CI=true`` the top-level conftest turns that skip into a failure, so a
tool that ``scripts/quickstart.sh`` forgot to install shows up red.
"""

from __future__ import annotations

import os
import shutil
import struct
from functools import cache
from pathlib import Path

import pytest

__all__ = ["MissingTool", "in_ci", "is_static_elf", "missing", "need_tool", "static_busybox"]


class MissingTool(pytest.skip.Exception):  # type: ignore[misc,name-defined]
    """A test was skipped because a tool or library is not installed."""


def in_ci() -> bool:
    return os.environ.get("CI", "").lower() in ("1", "true", "yes")


def missing(what: str, package: str) -> MissingTool:
    return MissingTool(f"missing tool: {what} (Debian package `{package}`, installed by scripts/quickstart.sh test)")


def need_tool(name: str, package: str) -> str:
    """The path of command *name*, or skip (fail under CI) naming its Debian *package*."""
    path = shutil.which(name)
    if path is None:
        raise missing(name, package)
    return path


def is_static_elf(path: str | os.PathLike[str]) -> bool:
    """Whether *path* is an ELF executable without a program interpreter (statically linked).

    Read from the ELF header and program headers themselves: ``file(1)`` is
    not on a fresh machine.
    """
    try:
        with open(path, "rb") as f:
            ident = f.read(16)
            if ident[:4] != b"\x7fELF" or ident[4] not in (1, 2) or ident[5] not in (1, 2):
                return False
            wide, order = ident[4] == 2, "<" if ident[5] == 1 else ">"
            header = f.read(48 if wide else 36)
            if wide:
                phoff, phentsize, phnum = struct.unpack(order + "16xQ14xHH", header[:42])
            else:
                phoff, phentsize, phnum = struct.unpack(order + "12xI10xHH", header[:30])
            for i in range(phnum):
                f.seek(phoff + i * phentsize)
                (p_type,) = struct.unpack(order + "I", f.read(4))
                if p_type == 3:  # PT_INTERP: a dynamic loader is named
                    return False
            return phnum > 0
    except OSError:
        return False


@cache
def _static_busybox() -> str | None:
    for candidate in (shutil.which("busybox"), "/bin/busybox", "/usr/bin/busybox"):
        if candidate and Path(candidate).exists() and is_static_elf(candidate):
            return candidate
    return None


def static_busybox() -> str:
    """The path of a statically linked busybox, or skip (fail under CI)."""
    path = _static_busybox()
    if path is None:
        raise missing("a static busybox", "busybox-static")
    return path
