"""The layers of a layer store that a mounted overlay stacks, in any mount namespace: :func:`layers_in_use`.

A container's root is an overlay in the container's own mount namespace, so
the host's mount table does not show it; each process' ``/proc/PID/mountinfo``
shows the mounts of its namespace, an overlay's ``lowerdir=`` among its
options.  Reading every namespace's table once (by its ``ns/mnt`` inode) is
how an image store's ``gc`` keeps the layers running containers stand on.
Processes that end or hide meanwhile are skipped: what they stacked is no
longer stacked, or not by anyone this user may see.
"""

from __future__ import annotations

import os
from pathlib import Path

from ..errors import NsprimError
from ..fs.mountinfo import mountinfo

__all__ = ["layers_in_use"]


def layers_in_use(layers: Path) -> set[str]:
    """The names (``sha256:<hex>``) of the directories ``layers/<hex>/diff`` some mounted overlay
    has as a lower dir."""
    prefix = os.fspath(layers).rstrip("/") + "/"
    found: set[str] = set()
    seen: set[str] = set()
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit():
            continue
        try:
            namespace = os.readlink(f"/proc/{entry.name}/ns/mnt")
            if namespace in seen:
                continue
            mounts = mountinfo(entry.name)
        except (OSError, NsprimError):
            continue
        seen.add(namespace)
        for mount in mounts:
            if mount.fstype != "overlay":
                continue
            for option in mount.super_options:
                key, _, value = option.partition("=")
                if key != "lowerdir":
                    continue
                for lower in value.split(":"):
                    lower = lower.replace("\\:", ":")
                    if lower.startswith(prefix) and lower.endswith("/diff"):
                        found.add("sha256:" + lower[len(prefix) :].removesuffix("/diff"))
    return found
