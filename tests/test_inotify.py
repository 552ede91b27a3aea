"""inotify through the C core: the _sys wrappers and the cgroup layer's FileChangeWaiter (no ctypes route)."""

from __future__ import annotations

import ast
import errno
import os
from pathlib import Path

import pytest

import nsprim
from nsprim import _sys
from nsprim._sys import C
from nsprim.cgroup.events import FileChangeWaiter
from nsprim.errors import SyscallError


def test_a_modification_wakes_the_watcher(tmp_path: Path) -> None:
    f = tmp_path / "memory.events"
    f.write_text("oom_kill 0\n")
    with FileChangeWaiter([f, tmp_path / "gone"]) as watcher:
        assert watcher.active
        assert not watcher.wait(0)
        f.write_text("oom_kill 1\n")
        assert watcher.wait(30)
        assert not watcher.wait(0)  # the event was consumed


def test_nothing_watchable_is_inactive(tmp_path: Path) -> None:
    with FileChangeWaiter([tmp_path / "gone"]) as watcher:
        assert not watcher.active and not watcher.wait(0)


def test_the_wrappers_raise_syscall_errors_naming_the_path(tmp_path: Path) -> None:
    fd = _sys.inotify_init1(C.IN_CLOEXEC | C.IN_NONBLOCK)
    try:
        assert os.get_inheritable(fd) is False
        assert _sys.inotify_add_watch(fd, tmp_path, C.IN_MODIFY) >= 1
        with pytest.raises(SyscallError) as info:
            _sys.inotify_add_watch(fd, tmp_path / "gone", C.IN_MODIFY)
        assert info.value.errno == errno.ENOENT and "gone" in str(info.value)
    finally:
        os.close(fd)
    with pytest.raises(SyscallError) as info:
        _sys.inotify_add_watch(fd, tmp_path, C.IN_MODIFY)
    assert info.value.errno == errno.EBADF


def test_no_module_reaches_c_through_ctypes() -> None:
    root = Path(nsprim.__file__).parent
    users = []
    for path in root.rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            names = [a.name for a in node.names] if isinstance(node, ast.Import) else []
            if isinstance(node, ast.ImportFrom) and node.module:
                names = [node.module]
            if any(n == "ctypes" or n.startswith("ctypes.") for n in names):
                users.append(str(path.relative_to(root)))
    assert users == []
