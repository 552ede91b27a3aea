"""PNG plots of a :class:`~nsprim.costs.model.CostReport` (``nsprim cost --plot DIR``).

matplotlib is an optional extra (``pip install 'nsprim[plot]'``), imported
only here and only when plotting; without it :func:`check_plotting` raises
an :class:`~nsprim.errors.UnsupportedError` saying how to get it.
"""

from __future__ import annotations

import importlib
import os
from pathlib import Path
from types import ModuleType

from ..errors import UnsupportedError
from .model import CostReport, Kind

__all__ = ["check_plotting", "write_plots", "PLOTS"]

#: The files :func:`write_plots` writes, and what each shows.
PLOTS = {
    "costs.png": "what each primitive adds to a bare fork+exec+wait (ms, median and p90)",
    "overlay.png": "overlay mount time against the number of lower layers",
    "live.png": "start latency and kernel memory against the number of live containers",
}


def _pyplot() -> ModuleType:
    try:
        matplotlib = importlib.import_module("matplotlib")
    except ImportError:
        raise UnsupportedError(
            "plot: matplotlib is not installed: install the extra with `pip install 'nsprim[plot]'`",
            feature="matplotlib",
        ) from None
    matplotlib.use("Agg")  # files only: no display needed
    return importlib.import_module("matplotlib.pyplot")


def check_plotting() -> None:
    """Raise :class:`~nsprim.errors.UnsupportedError` unless matplotlib can be imported."""
    _pyplot()


def write_plots(report: CostReport, directory: str | os.PathLike[str]) -> list[Path]:
    """Write :data:`PLOTS` (those *report* has figures for) into *directory*; return their paths."""
    plt = _pyplot()
    out = Path(directory)
    out.mkdir(parents=True, exist_ok=True)
    written: list[Path] = []

    rows = [c for c in report.costs if c.kind is not Kind.BASELINE]
    fig, ax = plt.subplots(figsize=(9, 0.32 * len(rows) + 1.5))
    names = [c.name for c in rows]
    added = [c.added_ms for c in rows]
    spread = [max(0.0, c.time.p90_ms - c.time.median_ms) for c in rows]
    ax.barh(names, added, xerr=[[0.0] * len(rows), spread], color="#4c72b0")
    ax.axvline(0, color="black", linewidth=0.8)
    ax.invert_yaxis()
    ax.set_xlabel(
        f"ms added to a bare fork+exec+wait ({report.baseline.time.median_ms:.2f} ms); bar: median, line: p90"
    )
    ax.set_title(f"What each primitive costs here (kernel {report.kernel}, {report.cgroup_mode} cgroups)")
    fig.tight_layout()
    written.append(_save(plt, fig, out / "costs.png"))

    if report.overlay:
        fig, ax = plt.subplots(figsize=(6, 4))
        layers = [o.layers for o in report.overlay]
        ax.plot(layers, [o.mount.median_ms for o in report.overlay], "o-", label="mount (median)")
        ax.plot(layers, [o.mount.p90_ms for o in report.overlay], "o:", label="mount (p90)")
        ax.plot(layers, [o.umount.median_ms for o in report.overlay], "s-", label="umount (median)")
        ax.set_xscale("log")
        ax.set_xlabel("lower layers")
        ax.set_ylabel("ms")
        ax.set_title("Overlay mount time against layers")
        ax.legend()
        fig.tight_layout()
        written.append(_save(plt, fig, out / "overlay.png"))

    if any(m.live for m in report.memory):
        fig, (lat, mem) = plt.subplots(1, 2, figsize=(10, 4))
        for m in report.memory:
            live = [p.live for p in m.live]
            lat.plot(live, [p.start_ms for p in m.live], "o-", label=m.label)
            mem.plot(live, [p.kernel_bytes / (1 << 20) for p in m.live], "o-", label=m.label)
        lat.set_xlabel("containers already alive")
        lat.set_ylabel("start latency of the next (ms)")
        mem.set_xlabel("containers already alive")
        mem.set_ylabel(f"kernel memory (MiB, {report.memory[0].method.value})")
        lat.legend(fontsize="small")
        mem.legend(fontsize="small")
        fig.suptitle("Start latency and kernel memory against live containers")
        fig.tight_layout()
        written.append(_save(plt, fig, out / "live.png"))
    return written


def _save(plt: ModuleType, fig: object, path: Path) -> Path:
    fig.savefig(path, dpi=110)  # type: ignore[attr-defined]
    plt.close(fig)
    return path
