"""A podman private to a test: its own storage (vfs), no network, the runtime under test."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

from ..tools import need_tool
from .conftest import runtime_command

__all__ = ["CONTAINERS_CONF", "IMAGE", "Podman"]

IMAGE = "localhost/nsprim-busybox:test"

# This machine lacks CAP_SYS_RESOURCE: podman's default ulimits are above the hard limits.
CONTAINERS_CONF = """\
[containers]
netns = "none"
default_ulimits = ["nofile=1024:1024", "nproc=4096:4096"]
[engine]
cgroup_manager = "cgroupfs"
events_logger = "file"
"""


class Podman:
    """``podman`` with private storage, the runtime under test and the test's cgroup parent."""

    def __init__(self, base: Path, cgroup_parent: str) -> None:
        self.base = base
        self.cgroup_parent = cgroup_parent
        self.exe = need_tool("podman", "podman")
        need_tool("conmon", "conmon")
        (base / "containers.conf").write_text(CONTAINERS_CONF)
        self.env = {**os.environ, "CONTAINERS_CONF": str(base / "containers.conf")}

    def argv(self, *args: str) -> list[str]:
        b = self.base
        return [
            self.exe, "--root", str(b / "root"), "--runroot", str(b / "runroot"), "--tmpdir", str(b / "tmp"),
            "--storage-driver", "vfs", "--runtime", runtime_command()[0], "--cgroup-manager", "cgroupfs", *args,
        ]  # fmt: skip

    def __call__(self, *args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            self.argv(*args), capture_output=True, text=True, env=self.env, timeout=timeout, stdin=subprocess.DEVNULL
        )

    def ok(self, *args: str) -> str:
        r = self(*args)
        assert r.returncode == 0, (args, r.stdout, r.stderr)
        return r.stdout

    def run(self, *args: str) -> list[str]:
        """``podman run --rm --cgroup-parent P ...``, as argv."""
        return ["run", "--rm", "--cgroup-parent", self.cgroup_parent, *args]
