"""nsprim: Linux kernel container primitives for Python.

Namespaces, cgroups, overlay file systems and the containers made of them,
as a typed, composable API over a small C core.  See https://nsprim.readthedocs.io
(or ``docs/``) for the concepts and the reference.
"""

from __future__ import annotations

from ._version import __version__

# typing is not imported at run time either: `import nsprim` runs first in every
# program that uses any part of nsprim, nsprim-runtime's short-lived calls included.
TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

    from .call import SandboxExecutor, sandboxed
    from .cgroup import CGroup, Resources
    from .cgroup.limits import limits  # the function (nsprim.cgroup.limits is also a module)
    from .container import Container
    from .costs import cost
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
    from .fs.layers import ContainerRoot, Image, Layer, LayerStore, apply_layer, extract_layer
    from .fs.layers.commit import commit  # the function (nsprim.fs.layers.commit is also a module)
    from .fs.mount import MountFlags
    from .fs.mountinfo import MountInfo, mountinfo
    from .fs.overlay import OverlayMount, OverlayOptions
    from .fs.rootfs import Bind, RootFS, Tmpfs
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
    from .security import SecurityPolicy
    from .spawning import run, spawn

# Every name loads from its module on first use, so that importing one part of
# nsprim (nsprim.errors, nsprim.oci) does not import the others.
_LAZY = {
    "CgroupUnavailableError": "errors",
    "ChildDiedError": "errors",
    "ConfigError": "errors",
    "ExecutableNotFoundError": "errors",
    "NamespaceError": "errors",
    "NamespaceTypeError": "errors",
    "NoSuchProcessError": "errors",
    "NsprimError": "errors",
    "StepError": "errors",
    "SyscallError": "errors",
    "TimeoutExpired": "errors",
    "UnsafeTarEntryError": "errors",
    "UnsupportedError": "errors",
    "ProcessLookupFailed": "errors",
    "UnsafeTarEntry": "errors",
    "IdMap": "idmap",
    "IdRange": "idmap",
    "Namespace": "namespace",
    "NamespaceId": "namespace",
    "NamespaceType": "namespace",
    "namespace_ids": "namespace",
    "persist": "namespace",
    "shares_namespace": "namespace",
    "unpersist": "namespace",
    "unshare": "namespace",
    "Plan": "plan",
    "DEVNULL": "process",
    "PIPE": "process",
    "STDOUT": "process",
    "CompletedRun": "process",
    "Process": "process",
    "TimeOffsets": "process",
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
    "cost": "costs",
    "SecurityPolicy": "security",
    "sandboxed": "call",
    "SandboxExecutor": "call",
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
    import importlib

    module = _LAZY.get(name)
    if module is None:
        if name.startswith("_"):
            raise AttributeError(f"module 'nsprim' has no attribute {name!r}")
        # A submodule, as `nsprim.process` was once `import nsprim` imported it.
        try:
            return importlib.import_module(f".{name}", __name__)
        except ModuleNotFoundError as exc:
            if exc.name != f"{__name__}.{name}":
                raise
            raise AttributeError(f"module 'nsprim' has no attribute {name!r}") from None
    value = getattr(importlib.import_module(f".{module}", __name__), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted({*globals(), *_LAZY})


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
    "cost",
    "sandboxed",
    "SandboxExecutor",
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
