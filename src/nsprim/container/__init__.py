"""Containers: namespaces, a cgroup and a root file system chained into one managed process.

>>> from nsprim.container import Container
>>> r = Container(["sh", "-c", "echo $$"]).host_root().run(capture_output=True)
>>> r.stdout
b'1\\n'
"""

from .._lazy import lazy_names
from ..fs.rootfs import Bind, Tmpfs
from .builder import Container
from .config import ContainerConfig, Network, Rlimit, RootKind, RootSpec, Veth
from .registry import ContainerStatus, DetachedContainer, find, list_containers
from .running import ContainerResult, RunningContainer

TYPE_CHECKING = False
if TYPE_CHECKING:
    from .warm import WarmContainer

# The warm pool (and threading with it) is loaded on the first use of its name: `nsprim run` needs none.
__getattr__, __dir__ = lazy_names(__name__, {"WarmContainer": "warm"})

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
