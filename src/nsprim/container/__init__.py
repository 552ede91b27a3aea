"""Containers: namespaces, a cgroup and a root file system chained into one managed process.

>>> from nsprim.container import Container
>>> r = Container(["sh", "-c", "echo $$"]).host_root().run(capture_output=True)
>>> r.stdout
b'1\\n'
"""

from .config import BindMount, Container, ContainerConfig, Network, Rlimit, RootSpec, TmpfsMount, Veth
from .running import ContainerResult, RunningContainer

__all__ = [
    "Container",
    "ContainerConfig",
    "ContainerResult",
    "RunningContainer",
    "Network",
    "Veth",
    "BindMount",
    "TmpfsMount",
    "RootSpec",
    "Rlimit",
]
