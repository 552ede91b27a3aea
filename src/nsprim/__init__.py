"""nsprim: Linux kernel container primitives for Python.

Namespaces, cgroups, overlay file systems and the containers made of them,
as a typed, composable API over a small C core.  See https://nsprim.readthedocs.io
(or ``docs/``) for the concepts and the reference.
"""

from ._version import __version__
from .errors import (
    ConfigError,
    ExecutableNotFoundError,
    NamespaceError,
    NamespaceTypeError,
    NsprimError,
    ProcessLookupFailed,
    StepError,
    SyscallError,
    TimeoutExpired,
    UnsupportedError,
)
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
from .process import DEVNULL, PIPE, STDOUT, CompletedRun, Process, TimeOffsets, run, spawn, start

__all__ = [
    "__version__",
    # errors
    "NsprimError",
    "ConfigError",
    "SyscallError",
    "StepError",
    "ExecutableNotFoundError",
    "UnsupportedError",
    "NamespaceError",
    "NamespaceTypeError",
    "ProcessLookupFailed",
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
    "start",
    "run",
    "PIPE",
    "DEVNULL",
    "STDOUT",
]
