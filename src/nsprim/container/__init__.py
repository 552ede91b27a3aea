"""Containers: namespaces, a cgroup and a root file system chained into one managed process.

>>> from nsprim.container import Container
>>> r = Container(["sh", "-c", "echo $$"]).host_root().run(capture_output=True)
>>> r.stdout
b'1\\n'
"""

from ..fs.rootfs import Bind, Tmpfs
from .builder import Container
from .config import ContainerConfig, Network, Rlimit, RootKind, RootSpec, Veth
from .registry import ContainerStatus, DetachedContainer, find, list_containers
from .running import ContainerResult, RunningContainer
from .warm import WarmContainer

__all__ = [
    "Container",
    "ContainerConfig",
    "ContainerResult",
    "RunningContainer",
    "WarmContainer",
    "DetachedContainer",
    "ContainerStatus",
    "find",
    "list_containers",
    "Network",
    "RootKind",
    "Veth",
    "Bind",
    "Tmpfs",
    "RootSpec",
    "Rlimit",
]
