"""A container-aware ``/proc`` without FUSE: generated files bound over a few kernel files.

``free``, ``top``, the JVM and Go runtimes and ``os.cpu_count()`` read
``/proc/meminfo``, ``/proc/cpuinfo`` and ``/sys/devices/system/cpu/online``
and see the *host's* memory and CPUs, not the container's limits.  LXCFS
fixes that with a FUSE file system; nsprim writes the container's figures
into small regular files on the host instead (``/run/nsprim-procview/<id>/``),
and the container's setup bind-mounts them, read-only, over the kernel's
files inside its root (after ``/proc`` and ``/sys`` are mounted, before
``pivot_root``).  The memory figures change while the container runs:
:meth:`ProcView.refresh` rewrites the files *in place* (same inode, so the
bind mounts see the new text), by hand
(:meth:`~nsprim.container.RunningContainer.refresh_proc_view`) or from a
daemon thread every second.

What it cannot fix: ``sysinfo(2)`` (``totalram``, used by some ``free``
builds and by runtimes) and ``sched_getaffinity(2)`` (``nproc``) come from
the kernel, not from files; ``/proc/vmstat``, ``/proc/stat``,
``/proc/loadavg``, ``/proc/uptime`` and ``/proc/swaps`` stay the host's.
"""

from __future__ import annotations

import contextlib
import errno
import math
import os
from collections.abc import Sequence
from pathlib import Path

from .._sys import C, watcher
from ..cgroup import CGroup
from ..cgroup.host import Controller
from ..cgroup.limits import ancestors
from ..cgroup.meminfo import meminfo_view
from ..cgroup.units import format_cpuset, parse_cpuset
from ..errors import NsprimError, SyscallError
from ..fs.steps import MountInRoot
from ..plan import Mount, Step

TYPE_CHECKING = False  # threading and shutil are imported by a view's methods: most containers have none
if TYPE_CHECKING:
    import threading

__all__ = ["ProcView", "VIEW_FILES", "view_directory", "cpu_view", "cpuinfo_view", "online_view"]

#: file name in the view directory -> the path it covers inside the container
VIEW_FILES: tuple[tuple[str, str], ...] = (
    ("meminfo", "/proc/meminfo"),
    ("cpuinfo", "/proc/cpuinfo"),
    ("cpu-online", "/sys/devices/system/cpu/online"),
)
_RO = C.MS_RDONLY | C.MS_NOSUID | C.MS_NODEV | C.MS_NOEXEC


def _read(path: str | Path) -> str | None:
    try:
        with open(path) as f:
            return f.read()
    except OSError:
        return None


def _cpu_quota(group: CGroup) -> float | None:
    """The smallest CPU bandwidth (in CPUs) of *group* and its ancestors, or None."""
    located = group.locate(Controller.CPU)
    if located is None:
        return None
    version, d = located
    mount = next((h.mount_point for h, gd in group.directories.items() if gd == d), d)
    best: float | None = None
    for a in ancestors(d, mount):
        if version == 2:
            text = _read(a / "cpu.max")
            if text is None:
                continue
            q, _, p = text.strip().partition(" ")
            if q == "max":
                continue
            quota, period = int(q), int(p or "100000")
        else:
            q1, p1 = _read(a / "cpu.cfs_quota_us"), _read(a / "cpu.cfs_period_us")
            if q1 is None or p1 is None:
                continue
            quota, period = int(q1), int(p1)
        if quota < 0 or period <= 0:
            continue
        best = quota / period if best is None else min(best, quota / period)
    return best


def cpu_view(group: CGroup | None) -> tuple[int, ...]:
    """The CPUs the container is shown: its cpuset (within this process' affinity,
    which it inherits), cut to the first ``ceil(quota)`` when a CPU bandwidth
    limit allows fewer."""
    cpus = set(os.sched_getaffinity(0))
    online = _read("/sys/devices/system/cpu/online")
    if online and online.strip():
        cpus &= set(parse_cpuset(online.strip()))
    if group is not None:
        located = group.locate(Controller.CPUSET)
        if located is not None:
            version, d = located
            names = (
                ("cpuset.cpus.effective", "cpuset.cpus") if version == 2 else ("cpuset.effective_cpus", "cpuset.cpus")
            )
            for name in names:
                text = _read(d / name)
                if text is not None and text.strip():
                    cpus &= set(parse_cpuset(text.strip()))
                    break
    chosen = sorted(cpus) or [0]
    quota = _cpu_quota(group) if group is not None else None
    if quota is not None:
        chosen = chosen[: max(1, math.ceil(quota))]
    return tuple(chosen)


def cpuinfo_view(cpus: Sequence[int], host_text: str | None = None) -> str:
    """``/proc/cpuinfo`` with only the blocks of *cpus* (``siblings``/``cpu cores`` adjusted)."""
    text = host_text if host_text is not None else (_read("/proc/cpuinfo") or "")
    wanted, count = set(cpus), len(cpus)
    blocks = [b for b in text.split("\n\n") if b.strip()]
    out: list[str] = []
    for block in blocks:
        lines = block.splitlines()
        number = next((ln.partition(":")[2].strip() for ln in lines if ln.startswith("processor")), None)
        if number is not None and number.isdigit() and int(number) not in wanted:
            continue
        fixed = []
        for ln in lines:
            key, sep, _ = ln.partition(":")
            if sep and key.strip() in ("siblings", "cpu cores"):
                ln = f"{key}: {count}"
            fixed.append(ln)
        out.append("\n".join(fixed))
    return "".join(b + "\n\n" for b in out)


def online_view(cpus: Sequence[int]) -> str:
    """``/sys/devices/system/cpu/online`` for *cpus* (``0-1,3``)."""
    return format_cpuset(tuple(cpus)) + "\n"


def view_directory(state: Path, container_id: str) -> Path:
    """Where the files of container *container_id* go: beside *state*, not in it (see :class:`ProcView`)."""
    return state.parent / f"{state.name}-procview" / container_id


def _write_in_place(path: Path, text: str) -> None:
    """Replace the contents of *path* keeping its inode (a bind mount shows the inode, not the name)."""
    data = text.encode()
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_CLOEXEC, 0o444)
    try:
        os.pwrite(fd, data, 0)  # one write: a reader sees old or new text, not an empty file
        os.ftruncate(fd, len(data))
    finally:
        os.close(fd)


class ProcView:
    """The generated files of one container, their bind-mount steps, and their refresher.

    Lifecycle (driven by :mod:`nsprim.container.running`): :meth:`create`
    before the clone; :meth:`steps` in the child's plan; :meth:`refresh` (or
    :meth:`start_refresher`) while it runs; :meth:`remove` on every exit path.

    *directory* must not be under the container's state directory: the child
    covers that with a tmpfs of its own before it mounts (and a descriptor
    will not do, a bind source must be a mount of the child's namespace), so
    :func:`view_directory` puts it next to it (``/run/nsprim-procview/<id>``).
    """

    def __init__(self, directory: Path, cgroup: CGroup | None, *, watch: bool = True) -> None:
        self.directory = directory
        self.cgroup = cgroup
        self.watch = watch
        self.cpus: tuple[int, ...] = ()
        import threading

        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._watched = False
        self._created = False

    # ---- host side ----------------------------------------------------------------

    def create(self) -> None:
        """Make the directory (registered with the cleanup watcher), write the files, open them."""
        self.directory.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        if self.watch:  # before the mkdir: a kill right after it leaves nothing behind
            watcher.watch_tree(self.directory)
            self._watched = True
        try:
            self.directory.mkdir(mode=0o755)  # per container: an existing one is an error (and not ours)
        except BaseException:
            if self._watched:
                self._watched = False
                watcher.forget_tree(self.directory)
            raise
        self._created = True
        self.refresh(cpus=True)

    def refresh(self, *, cpus: bool = False) -> None:
        """Write the memory figures again (and, with *cpus*, work the CPUs out again and
        rewrite the CPU files: after an update of the cpuset or quota), in place."""
        with self._lock:
            mem = meminfo_view(self.cgroup) if self.cgroup is not None else (_read("/proc/meminfo") or "")
            _write_in_place(self.directory / "meminfo", mem)
            if cpus:
                self.cpus = cpu_view(self.cgroup)
                _write_in_place(self.directory / "cpuinfo", cpuinfo_view(self.cpus))
                _write_in_place(self.directory / "cpu-online", online_view(self.cpus))

    def start_refresher(self, interval: float = 1.0) -> None:
        """Refresh every *interval* seconds from a daemon thread until :meth:`stop_refresher`."""
        if self._thread is not None:
            return

        def loop() -> None:
            while not self._stop.wait(interval):
                try:
                    self.refresh()
                except (NsprimError, OSError):
                    return  # the group or the directory is gone: the container is ending
                except Exception:  # a bug: say so once, do not kill the process' stderr with a loop
                    import logging

                    logging.getLogger("nsprim.container").exception(
                        "refreshing the /proc view in %s failed; no more refreshes", self.directory
                    )
                    return

        import threading

        self._thread = threading.Thread(target=loop, name=f"nsprim-procview-{self.directory.name}", daemon=True)
        self._thread.start()

    def stop_refresher(self) -> None:
        """Stop the refresher thread (if any) and wait for it."""
        self._stop.set()
        import threading

        if self._thread is not None and self._thread is not threading.current_thread():
            self._thread.join(timeout=5.0)
        self._thread = None

    def remove(self) -> None:
        """Stop refreshing, close, delete the directory and forget it in the watcher."""
        self.stop_refresher()
        if not self._created:
            return
        self._created = False
        import shutil

        try:
            shutil.rmtree(self.directory)
        except FileNotFoundError:
            pass
        except OSError as exc:
            raise SyscallError(exc.errno or errno.EIO, "rmdir", self.directory, detail="remove the /proc view") from exc
        if self._watched:
            self._watched = False
            with contextlib.suppress(NsprimError, OSError):
                watcher.forget_tree(self.directory)

    # ---- the child's steps --------------------------------------------------------------

    def _source(self, name: str) -> str:
        # A path, not a descriptor: a bind source must be a mount of the child's own namespace.
        return str(self.directory / name)

    def steps(self, root: Path | None) -> list[Step]:
        """Read-only bind mounts of the files over their targets: inside *root* (resolved
        there, symlinks refused), or in the container's own view of the host's (``None``)."""
        if not self._created:
            raise NsprimError("the /proc view is not created (or already removed)")
        steps: list[Step] = []
        for name, target in VIEW_FILES:
            if root is not None:
                steps.append(
                    MountInRoot(
                        root,
                        source=self._source(name),
                        target=target,
                        flags=C.MS_BIND,
                        remount_flags=_RO,
                        follow_symlinks=False,
                        optional=True,
                    )
                )
            else:
                steps.append(Mount(self._source(name), target, None, C.MS_BIND, optional=True))
                steps.append(Mount(None, target, None, C.MS_REMOUNT | C.MS_BIND | _RO, optional=True))
        return steps
