"""Real OCI bundles for the runtime's tests: a busybox-static root file system and a
config.json from :func:`nsprim.oci.default_spec`, with the container's cgroup under
the test run's group."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path
from typing import Any

from nsprim.oci import default_spec

from ..tools import static_busybox

APPLETS = (
    "sh",
    "true",
    "false",
    "echo",
    "cat",
    "ls",
    "sleep",
    "id",
    "hostname",
    "grep",
    "test",
    "readlink",
    "stat",
    "cut",
)


def make_rootfs(path: Path) -> Path:
    """A root file system with a static busybox and its applets in /bin."""
    (path / "bin").mkdir(parents=True)
    for d in ("proc", "sys", "dev", "tmp", "etc"):
        (path / d).mkdir()
    shutil.copy2(static_busybox(), path / "bin/busybox")
    for name in APPLETS:
        os.symlink("busybox", path / "bin" / name)
    (path / "bin/noexec").write_text("not a program\n")
    (path / "bin/noexec").chmod(0o644)
    return path


def make_bundle(path: Path, container_id: str, *args: str, **changes: Any) -> Path:
    """A bundle at *path* running *args*; *changes* replace top-level keys of config.json
    (``linux=...`` merges into ``linux``)."""
    path.mkdir(parents=True, exist_ok=True)
    if not (path / "rootfs").exists():
        make_rootfs(path / "rootfs")
    write_config(path, container_id, *args, **changes)
    return path


def config(container_id: str, *args: str, **changes: Any) -> dict[str, Any]:
    """The config.json object of a bundle (see :func:`make_bundle`)."""
    doc = default_spec(args=args or ("true",), terminal=False).to_dict()
    linux = doc["linux"]
    assert isinstance(linux, dict)
    parent = os.environ.get("NSPRIM_CGROUP_PARENT", "/nsprim-test-oci")
    linux["cgroupsPath"] = f"{parent}/{container_id}"
    linux.update(changes.pop("linux", {}))
    doc.update(changes)
    return doc


def write_config(path: Path, container_id: str, *args: str, **changes: Any) -> None:
    (path / "config.json").write_text(json.dumps(config(container_id, *args, **changes), indent=1))
