"""nsprim: Linux kernel container primitives for Python.

Namespaces, cgroups, overlay file systems and the containers made of them,
as a typed, composable API over a small C core.  See https://nsprim.readthedocs.io
(or ``docs/``) for the concepts and the reference.
"""

import importlib
from typing import TYPE_CHECKING, Any

from ._version import __version__
from .errors import (
    CgroupUnavailableError,
    ChildDiedError,
    ConfigError,
    ExecutableNotFoundError,
    NamespaceError,
    NamespaceTypeError,
    NoSuchProcessError,
    NsprimError,
    StepError,
    SyscallError,
    TimeoutExpired,
    UnsafeTarEntryError,
    UnsupportedError,
)
from .errors import ProcessLookupFailed as ProcessLookupFailed  # deprecated aliases, kept for one release
from .errors import UnsafeTarEntry as UnsafeTarEntry
from .idmap import IdMap, IdRange
from .namespace import (
    Namespace,
    NamespaceId,
    NamespaceType,
    namespace_ids,
    persist,
    shares_namespace,
    unpersist,
    unshare,
)
from .plan import Plan
from .process import DEVNULL, PIPE, STDOUT, CompletedRun, Process, TimeOffsets

if TYPE_CHECKING:
    from .cgroup import CGroup, Resources
    from .cgroup.limits import limits  # the function (nsprim.cgroup.limits is also a module)
    from .container import Container
    from .fs.layers import ContainerRoot, Image, Layer, LayerStore, apply_layer, extract_layer
    from .fs.layers.commit import commit  # the function (nsprim.fs.layers.commit is also a module)
    from .fs.mount import MountFlags
    from .fs.mountinfo import MountInfo, mountinfo
    from .fs.overlay import OverlayMount, OverlayOptions
    from .fs.rootfs import Bind, RootFS, Tmpfs
    from .security import SecurityPolicy
    from .spawning import run, spawn

# Process creation and the other primitives load on first use, so that `import nsprim`
# stays cheap: a program pays for what it calls.
_LAZY = {
    "spawn": "spawning",
    "run": "spawning",
    "CGroup": "cgroup",
    "Resources": "cgroup",
    "limits": "cgroup",
    "ContainerRoot": "fs.layers",
    "Image": "fs.layers",
    "Layer": "fs.layers",
    "LayerStore": "fs.layers",
    "apply_layer": "fs.layers",
    "commit": "fs.layers",
    "extract_layer": "fs.layers",
    "MountFlags": "fs.mount",
    "MountInfo": "fs.mountinfo",
    "mountinfo": "fs.mountinfo",
    "OverlayMount": "fs.overlay",
    "OverlayOptions": "fs.overlay",
    "Bind": "fs.rootfs",
    "RootFS": "fs.rootfs",
    "Tmpfs": "fs.rootfs",
    "Container": "container",
    "SecurityPolicy": "security",
}


def __getattr__(name: str) -> Any:
    if name == "start":
        import warnings

        warnings.warn(
            "nsprim.start moved to nsprim.lowlevel.start; the old name goes in the next release",
            DeprecationWarning,
            stacklevel=2,
        )
        from .lowlevel import start

        return start
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'nsprim' has no attribute {name!r}")
    value = getattr(importlib.import_module(f".{module}", __name__), name)
    globals()[name] = value
    return value


__all__ = [
    "__version__",
    # errors
    "NsprimError",
    "ConfigError",
    "SyscallError",
    "StepError",
    "ExecutableNotFoundError",
    "ChildDiedError",
    "UnsupportedError",
    "CgroupUnavailableError",
    "NamespaceError",
    "NamespaceTypeError",
    "NoSuchProcessError",
    "TimeoutExpired",
    # namespaces
    "NamespaceType",
    "NamespaceId",
    "Namespace",
    "namespace_ids",
    "shares_namespace",
    "unshare",
    "persist",
    "unpersist",
    # user namespaces
    "IdMap",
    "IdRange",
    # processes
    "Plan",
    "Process",
    "CompletedRun",
    "TimeOffsets",
    "spawn",
    "run",
    "PIPE",
    "DEVNULL",
    "STDOUT",
    # containers
    "Container",
    "SecurityPolicy",
    # cgroups
    "CGroup",
    "Resources",
    "limits",
    # mounts, overlay, layers, root file systems
    "MountFlags",
    "MountInfo",
    "mountinfo",
    "OverlayMount",
    "OverlayOptions",
    "LayerStore",
    "Image",
    "Layer",
    "ContainerRoot",
    "commit",
    "extract_layer",
    "apply_layer",
    "UnsafeTarEntryError",
    "RootFS",
    "Bind",
    "Tmpfs",
]
