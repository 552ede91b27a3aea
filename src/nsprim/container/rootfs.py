"""The container's root file system as plan steps.

In the child's new mount namespace (``/`` already recursively private):
mount the root under the container's state directory, add ``/proc``, a
minimal ``/dev``, ``/sys``, the requested bind and tmpfs mounts, mask the
kernel files containers must not read, make others read-only, and
``pivot_root`` into it, detaching the old root.
"""

from __future__ import annotations

from pathlib import Path

from .._sys import C
from ..plan import Mask, Mkdir, Mount, PivotRoot, Step, Symlink, WriteFile
from .config import BindMount, ContainerConfig, TmpfsMount

__all__ = ["root_steps", "MASKED_PATHS", "READONLY_PATHS", "DEVICES"]

# Docker's defaults (moby oci/defaults.go): kernel interfaces a container must
# not read (masked) or change (read-only).
MASKED_PATHS = (
    "/proc/asound",
    "/proc/acpi",
    "/proc/kcore",
    "/proc/keys",
    "/proc/latency_stats",
    "/proc/timer_list",
    "/proc/timer_stats",
    "/proc/sched_debug",
    "/proc/scsi",
    "/sys/firmware",
    "/sys/devices/virtual/powercap",
)
READONLY_PATHS = ("/proc/bus", "/proc/fs", "/proc/irq", "/proc/sys", "/proc/sysrq-trigger")
DEVICES = ("null", "zero", "full", "random", "urandom", "tty")

_NOSUID_NODEV_NOEXEC = C.MS_NOSUID | C.MS_NODEV | C.MS_NOEXEC


def _inside(root: Path, path: Path | str) -> Path:
    return root / str(path).lstrip("/")


def _dev_steps(root: Path) -> list[Step]:
    dev = root / "dev"
    steps: list[Step] = [
        Mkdir(dev),
        Mount("tmpfs", dev, "tmpfs", C.MS_NOSUID | C.MS_STRICTATIME, "mode=755,size=65536k"),
    ]
    # Bind the host's nodes rather than mknod: works in a user namespace too.
    for name in DEVICES:
        steps.append(WriteFile(dev / name, b"", create=True))
        steps.append(Mount(f"/dev/{name}", dev / name, None, C.MS_BIND))
    steps += [
        Mkdir(dev / "pts"),
        Mount("devpts", dev / "pts", "devpts", C.MS_NOSUID | C.MS_NOEXEC, "newinstance,ptmxmode=0666,mode=0620"),
        Symlink("pts/ptmx", dev / "ptmx"),
        Mkdir(dev / "shm", 0o1777),
        Mount("shm", dev / "shm", "tmpfs", _NOSUID_NODEV_NOEXEC, "mode=1777,size=65536k"),
        Mkdir(dev / "mqueue"),
        Symlink("/proc/self/fd", dev / "fd"),
        Symlink("/proc/self/fd/0", dev / "stdin"),
        Symlink("/proc/self/fd/1", dev / "stdout"),
        Symlink("/proc/self/fd/2", dev / "stderr"),
    ]
    return steps


def _root_mount(cfg: ContainerConfig, state: Path, root: Path, *, userns: bool) -> list[Step]:
    spec = cfg.root
    assert spec is not None
    steps: list[Step] = [Mkdir(root, 0o755)]
    if spec.kind == "directory" or (spec.kind == "host" and userns):
        # In a user namespace the host's / has locked submounts, which overlay
        # refuses as a lower layer ("failed to clone lowerpath"): bind it
        # read-only instead.
        source = spec.path if spec.kind == "directory" else Path("/")
        assert source is not None
        steps.append(Mount(source, root, None, C.MS_BIND | C.MS_REC))
        if not spec.writable:
            steps.append(Mount(None, root, None, C.MS_REMOUNT | C.MS_BIND | C.MS_RDONLY))
        return steps
    # host and overlay: an overlay whose upper and work dirs live on a tmpfs
    # (or on the given upper's file system).
    scratch = state / "scratch"
    steps += [Mkdir(scratch, 0o700), Mount("tmpfs", scratch, "tmpfs", C.MS_NOSUID | C.MS_NODEV, "mode=700")]
    if spec.kind == "host":
        lower = "/"
        upper, work = scratch / "upper", scratch / "work"
    else:
        lower = ":".join(str(p) for p in spec.layers)
        if spec.upper is not None:
            upper, work = spec.upper, spec.upper.parent / f".{spec.upper.name}.work"
            steps.append(Mkdir(work, 0o700))
        else:
            upper, work = scratch / "upper", scratch / "work"
    if upper.is_relative_to(scratch):
        steps += [Mkdir(upper, 0o755), Mkdir(work, 0o700)]
    data = f"lowerdir={lower},upperdir={upper},workdir={work}"
    if userns:
        data += ",userxattr"  # trusted.* xattrs are out of reach in a user namespace
    steps.append(Mount("overlay", root, "overlay", 0, data))
    return steps


def root_steps(cfg: ContainerConfig, state: Path | None, *, userns: bool) -> list[Step]:
    """The steps that build and enter the root file system (none without a root)."""
    steps: list[Step] = []
    if cfg.root is None or state is None:
        # No new root: the host's view, private to the container's mount namespace.
        for m in cfg.mounts:
            steps += _mount_steps(Path("/"), m)
        return steps
    root = state / "root"
    steps += _root_mount(cfg, state, root, userns=userns)
    if cfg.mount_proc:
        steps += [Mkdir(root / "proc"), Mount("proc", root / "proc", "proc", _NOSUID_NODEV_NOEXEC)]
    steps += _dev_steps(root)
    steps.append(Mkdir(root / "sys"))
    if userns:
        steps.append(Mount("/sys", root / "sys", None, C.MS_BIND | C.MS_REC))
    else:
        steps.append(Mount("sysfs", root / "sys", "sysfs", _NOSUID_NODEV_NOEXEC | C.MS_RDONLY))
    steps += _cgroup_fs_steps(root, userns=userns)
    for m in cfg.mounts:
        steps += _mount_steps(root, m)
    if cfg.mount_proc:
        for p in MASKED_PATHS:
            steps.append(Mask(_inside(root, p)))
        for p in (*READONLY_PATHS, *cfg.readonly_paths):
            inside = _inside(root, p)
            steps.append(Mount(inside, inside, None, C.MS_BIND | C.MS_REC, optional=True))
            steps.append(Mount(None, inside, None, C.MS_REMOUNT | C.MS_BIND | C.MS_RDONLY, optional=True))
    steps.append(PivotRoot(root))
    return steps


def _mount_steps(root: Path, m: BindMount | TmpfsMount) -> list[Step]:
    target = _inside(root, m.target)
    if isinstance(m, TmpfsMount):
        opts = f"mode={m.mode:o}" + (f",size={m.size}" if m.size is not None else "")
        return [Mkdir(target), Mount("tmpfs", target, "tmpfs", C.MS_NOSUID | C.MS_NODEV, opts)]
    steps: list[Step] = []
    if m.source.is_dir():
        steps.append(Mkdir(target))
    else:
        steps.append(WriteFile(target, b"", create=True))
    flags = C.MS_BIND | (C.MS_REC if m.recursive else 0)
    steps.append(Mount(m.source, target, None, flags))
    extra = (C.MS_RDONLY if m.readonly else 0) | (C.MS_NOSUID if m.nosuid else 0) | (C.MS_NODEV if m.nodev else 0)
    extra |= C.MS_NOEXEC if m.noexec else 0
    if extra:
        steps.append(Mount(None, target, None, C.MS_REMOUNT | C.MS_BIND | extra))
    return steps


def _cgroup_fs_steps(root: Path, *, userns: bool) -> list[Step]:
    """Read-only cgroup file systems at ``/sys/fs/cgroup``, as Docker gives them.

    Mounted after the container joined its cgroup namespace, they show the
    container's own group as their root, so tools (and :func:`nsprim.cgroup.limits`)
    inside see its limits.
    """
    from ..cgroup.host import hierarchies

    base = root / "sys/fs/cgroup"
    ro = _NOSUID_NODEV_NOEXEC | C.MS_RDONLY
    found = [h for h in hierarchies() if h.version == 2 or h.controllers]
    if len(found) == 1 and found[0].version == 2:
        return [Mount("cgroup2", base, "cgroup2", ro, optional=True)]
    if userns:
        return []  # cgroup v1 cannot be mounted from a user namespace
    steps: list[Step] = [Mount("tmpfs", base, "tmpfs", _NOSUID_NODEV_NOEXEC, "mode=755", optional=True)]
    for h in found:
        name = h.mount_point.name
        steps.append(Mkdir(base / name))
        if h.version == 2:
            steps.append(Mount("cgroup2", base / name, "cgroup2", ro))
        else:
            options = ",".join(sorted(c.v1_name for c in h.controllers))
            steps.append(Mount("cgroup", base / name, "cgroup", ro, options))
    steps.append(Mount(None, base, None, C.MS_REMOUNT | C.MS_BIND | ro))
    return steps
