"""How lightweight is a container, here?  The measured cost of each primitive on this host.

:func:`measure` (or :func:`cost`, as ``nsprim.cost(quick=True)``) times each
namespace type alone, a cgroup's create+limit+attach+delete per controller,
overlay mounts by number of lower layers, ``pivot_root`` with ``/proc`` and
``/dev``, the seccomp filter and the capability drop against a bare
fork+exec+wait, then whole default containers cold and warm; it measures the
kernel memory of sleeping containers with and without a network namespace
(from a memory cgroup holding them, cross-checked with ``/proc/meminfo``), the
asynchronous teardown of network namespaces, and the page cache that
containers of one image share.  :mod:`nsprim.costs.report` turns the
:class:`~nsprim.costs.model.CostReport` into a table and a verdict;
``nsprim cost`` prints them.

    >>> report = nsprim.cost(quick=True)          # doctest: +SKIP
    >>> print(nsprim.costs.report.verdict(report))  # doctest: +SKIP
"""

from __future__ import annotations

from .model import (
    SCHEMA_VERSION,
    Busy,
    Cost,
    CostReport,
    Holder,
    KernelMemory,
    Kind,
    LivePoint,
    MemoryMethod,
    Mode,
    NetTeardown,
    OverlayLayers,
    PageCacheSharing,
    Spread,
)
from .run import cost, measure

__all__ = [
    "SCHEMA_VERSION",
    "Busy",
    "Cost",
    "CostReport",
    "Holder",
    "KernelMemory",
    "Kind",
    "LivePoint",
    "MemoryMethod",
    "Mode",
    "NetTeardown",
    "OverlayLayers",
    "PageCacheSharing",
    "Spread",
    "cost",
    "measure",
]
