"""Containers: namespaces, a cgroup and a root file system chained into one managed process.

>>> from nsprim.container import Container
>>> r = Container(["sh", "-c", "echo $$"]).host_root().run(capture_output=True)
>>> r.stdout
b'1\\n'
"""

from .._lazy import lazy_names, names_of
from ..fs.rootfs import Bind, Tmpfs
from .builder import Container
from .config import ContainerConfig, Network, Rlimit, RootKind, RootSpec, Veth
from .running import ContainerResult, RunningContainer

TYPE_CHECKING = False
if TYPE_CHECKING:
    from .registry import ContainerStatus, DetachedContainer, find, list_containers
    from .warm import WarmContainer

# The warm pool (threading with it) and the registry of detached containers load on the first use
# of their names: a container run in the foreground needs neither.
__getattr__, __dir__ = lazy_names(
    __name__,
    {
        "WarmContainer": "warm",
        **names_of("registry", ["ContainerStatus", "DetachedContainer", "find", "list_containers"]),
    },
)

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
