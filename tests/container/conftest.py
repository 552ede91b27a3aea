"""Fixtures shared by the container tests."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from ..tools import static_busybox

BUSYBOX = shutil.which("busybox") or "/bin/busybox"
APPLETS = (
    "sh", "ls", "cat", "echo", "hostname", "id", "sleep", "mount", "mknod", "touch", "ps", "wc", "grep", "head",
)  # fmt: skip

#: What a container's /dev holds: the nodes, devpts, shm and the fd links.
MINIMAL_DEV = frozenset(
    {"fd", "full", "null", "ptmx", "pts", "random", "shm", "stderr", "stdin", "stdout", "tty", "urandom", "zero"}
)


@pytest.fixture(scope="session")
def rootfs(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A minimal root file system: a static busybox and nothing of the host."""
    static_busybox()
    root = tmp_path_factory.mktemp("rootfs")
    root.chmod(0o755)
    for d in ("bin", "etc", "proc", "dev", "sys", "tmp", "root", "mnt"):
        (root / d).mkdir()
    shutil.copy2(BUSYBOX, root / "bin/busybox")
    for applet in APPLETS:
        (root / "bin" / applet).symlink_to("busybox")
    (root / "etc/passwd").write_text("root:x:0:0:root:/root:/bin/sh\nguest:x:405:100:guest:/tmp:/bin/sh\n")
    (root / "etc/group").write_text("root:x:0:\nusers:x:100:\n")
    (root / "marker").write_text("inside\n")
    return root


@pytest.fixture(scope="session")
def busybox_root(rootfs: Path) -> Path:
    """The same root, under the name the escape tests use."""
    return rootfs
