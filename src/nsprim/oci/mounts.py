"""config.json's ``mounts``, devices and paths as plan steps, in the spec's order.

Each mount is resolved inside the container's root by the C core
(:class:`~nsprim.fs.steps.MountInRoot`): a symlink in the image cannot aim a
mount at the host.  Bind sources are host paths (relative ones from the
bundle).  Propagation options apply after the root is entered, as do the
masked and read-only paths (after the sysctls, which write under
``/proc/sys``).  A ``cgroup`` mount is the container's cgroups as Docker
shows them: ``cgroup2`` on a pure v2 host, else a tmpfs with a v1 hierarchy
per directory (and the unified one), read-only.
"""

from __future__ import annotations

import os
import stat
from collections.abc import Mapping
from pathlib import Path, PurePosixPath

from .._sys import C
from ..cgroup.host import Hierarchy
from ..errors import SpecError
from ..fs.steps import DEFAULT_DEVICES, DEV_STDIO_LINKS, CreateInRoot, MountInRoot
from ..plan import Mount, Step, WriteFile
from .runtime.mount_options import MS, parse_mount_options
from .spec import LinuxDevice, Spec

__all__ = ["mount_steps", "device_steps", "path_steps", "propagation_steps", "sysctl_steps", "DEFAULT_DEVICES"]

_BIND_FLAGS = MS["RDONLY"] | MS["NOSUID"] | MS["NODEV"] | MS["NOEXEC"] | MS["NOATIME"] | MS["NODIRATIME"]
_RO_KERNEL = C.MS_NOSUID | C.MS_NODEV | C.MS_NOEXEC | C.MS_RDONLY


def _destination(path: str, field: str) -> str:
    if not path.startswith("/"):
        raise SpecError(f'{field}: "{path}" is not an absolute path', field=field)
    parts = PurePosixPath(path).parts
    if ".." in parts:
        raise SpecError(f'{field}: "{path}" contains ..', field=field)
    return str(PurePosixPath(*parts))


def _cgroup_steps(root: Path, target: str, flags: int, own: Mapping[str, Path] | None) -> list[Step]:
    """The ``cgroup`` mount: in a cgroup namespace each hierarchy mounted anew (its root is the
    container's group); without one, the container's own groups bound (*own*: by mount point), so
    that what it reads under ``/sys/fs/cgroup`` is its own limits, not the host's root."""
    from ..cgroup.host import cached_host_info

    every = [h for h in cached_host_info().hierarchies if h.version == 2 or h.controllers]
    ro = flags & C.MS_RDONLY
    base = C.MS_NOSUID | C.MS_NODEV | C.MS_NOEXEC | ro

    def hierarchy(h: Hierarchy, sub: str) -> Step:
        mine = own.get(str(h.mount_point)) if own is not None else None
        if mine is not None:
            return MountInRoot(root, mine, sub, flags=C.MS_BIND, remount_flags=base, create="dir")
        if h.version == 2:
            return MountInRoot(root, "cgroup2", sub, fstype="cgroup2", flags=base, create="dir")
        options = ",".join(sorted(c.v1_name for c in h.controllers))
        return MountInRoot(root, "cgroup", sub, fstype="cgroup", flags=base, data=options, create="dir")

    if len(every) == 1 and every[0].version == 2:
        return [hierarchy(every[0], target)]
    steps: list[Step] = [
        MountInRoot(root, "tmpfs", target, fstype="tmpfs", flags=C.MS_NOSUID | C.MS_NODEV | C.MS_NOEXEC,
                    data="mode=755", create="dir"),
    ]  # fmt: skip
    steps += [hierarchy(h, f"{target}/{h.mount_point.name}") for h in every]
    if ro:  # the tmpfs too, onto itself with what is mounted on it
        steps.append(
            MountInRoot(root, target, target, flags=C.MS_BIND | C.MS_REC, remount_flags=_RO_KERNEL, source_in_root=True)
        )
    return steps


def mount_steps(
    spec: Spec, root: Path, bundle: Path, cgroup_dirs: Mapping[str, Path] | None = None
) -> tuple[list[Step], bool]:
    """The steps of the spec's mounts, in its order, and whether one of them is ``/dev``.

    *cgroup_dirs* are the container's groups by hierarchy mount point: a ``cgroup``
    mount without a cgroup namespace binds them."""
    steps: list[Step] = []
    has_dev = False
    for i, m in enumerate(spec.mounts):
        where = f"mounts[{i}]"
        target = _destination(m.destination, f"{where}.destination")
        if m.uid_mappings or m.gid_mappings:
            raise SpecError(
                f"{where}.uidMappings: id-mapped mounts are not supported yet", field=f"{where}.uidMappings"
            )
        if m.extra:
            key = sorted(m.extra)[0]
            raise SpecError(f"{where}.{key}: unknown field", field=f"{where}.{key}")
        opts = parse_mount_options(m.options, f"{where}.options")
        bind = opts.is_bind or m.type == "bind"
        flags = opts.flags & ~(MS["BIND"] | MS["REC"] | MS["REMOUNT"])
        if opts.flags & MS["REMOUNT"]:
            raise SpecError(f'{where}.options: "remount" makes no sense for a new mount', field=f"{where}.options")
        if target == "/dev":
            has_dev = True
        if bind:
            if not m.source:
                raise SpecError(f"{where}.source: a bind mount needs a source", field=f"{where}.source")
            source = Path(m.source) if os.path.isabs(m.source) else bundle / m.source
            if not os.path.lexists(source):
                raise SpecError(f"{where}.source: `{source}`: No such file or directory", field=f"{where}.source")
            rec = bool(opts.flags & MS["REC"])
            remount = (flags & _BIND_FLAGS) | (
                (C.MS_RDONLY if opts.recursive_attrs & 1 else 0)
                | (C.MS_NOSUID if opts.recursive_attrs & 2 else 0)
                | (C.MS_NODEV if opts.recursive_attrs & 4 else 0)
                | (C.MS_NOEXEC if opts.recursive_attrs & 8 else 0)
            )
            if opts.recursive_attrs and not rec:
                raise SpecError(f"{where}.options: rro, rnosuid... need rbind", field=f"{where}.options")
            if opts.data:
                raise SpecError(
                    f'{where}.options: "{opts.data[0]}": a bind mount takes no file system options',
                    field=f"{where}.options",
                )
            steps.append(
                MountInRoot(root, source, target, flags=C.MS_BIND | (C.MS_REC if rec else 0),
                            remount_flags=remount, create="auto")
            )  # fmt: skip
            continue
        if not m.type:
            raise SpecError(f"{where}.type: missing (the file system to mount)", field=f"{where}.type")
        if m.type == "cgroup":
            in_namespace = spec.linux is not None and any(n.type == "cgroup" for n in spec.linux.namespaces)
            steps += _cgroup_steps(root, target, flags, None if in_namespace else cgroup_dirs)
            continue
        data = ",".join(opts.data) or None
        if opts.copy_up and m.type != "tmpfs":
            raise SpecError(f'{where}.options: "tmpcopyup" is for tmpfs, not {m.type}', field=f"{where}.options")
        # a read-only copy-up is filled first, then made read-only
        ro_later = flags & C.MS_RDONLY if opts.copy_up else 0
        steps.append(
            MountInRoot(root, m.source or m.type, target, fstype=m.type, flags=flags & ~ro_later, data=data,
                        create="dir", remount_flags=ro_later, copy_up=opts.copy_up)
        )  # fmt: skip
    return steps, has_dev


def propagation_steps(spec: Spec) -> list[Step]:
    """The mounts' propagation options, applied once the root is entered."""
    steps: list[Step] = []
    for i, m in enumerate(spec.mounts):
        for flag in parse_mount_options(m.options, f"mounts[{i}].options").propagation:
            steps.append(Mount(None, _destination(m.destination, f"mounts[{i}].destination"), None, flag))
    return steps


def _device_type(dev: LinuxDevice) -> int:
    return {"c": stat.S_IFCHR, "u": stat.S_IFCHR, "b": stat.S_IFBLK, "p": stat.S_IFIFO}[dev.type]


def device_steps(spec: Spec, root: Path, *, has_dev: bool, userns: bool, terminal: bool) -> list[Step]:
    """The default devices (with a ``/dev`` mount), its links, and ``linux.devices``.

    In a user namespace, where ``mknod`` is refused, the host's node of the
    same path is bound instead (checked: the same type and numbers).
    """
    wanted: list[tuple[str, int, int, int]] = []  # path, type, device, mode
    if has_dev:
        wanted += [(f"/dev/{n}", stat.S_IFCHR, os.makedev(a, b), 0o666) for n, a, b in DEFAULT_DEVICES]
    linux = spec.linux
    for dev in linux.devices if linux is not None else ():
        mode = dev.file_mode if dev.file_mode is not None else 0o666
        wanted = [w for w in wanted if w[0] != dev.path]
        wanted.append((dev.path, _device_type(dev), os.makedev(dev.major, dev.minor), mode & 0o7777))
    steps: list[Step] = []
    for path, kind, device, mode in wanted:
        if userns and kind != stat.S_IFIFO:
            try:
                st = os.stat(path)
            except OSError:
                st = None
            if st is None or stat.S_IFMT(st.st_mode) != kind or st.st_rdev != device:
                field = "linux.devices"
                raise SpecError(
                    f"{field}: `{path}` cannot be made in a user namespace, and the host's `{path}` is not that device",
                    field=field,
                )
            steps.append(MountInRoot(root, path, path, flags=C.MS_BIND, create="file", follow_symlinks=False))
        else:
            steps.append(CreateInRoot(root, path, kind | mode, device, exist_ok=True, follow_symlinks=False))
    if has_dev:
        for name, link in DEV_STDIO_LINKS:
            steps.append(
                CreateInRoot(root, f"/dev/{name}", stat.S_IFLNK | 0o777, link_target=link, exist_ok=True,
                             follow_symlinks=False)
            )  # fmt: skip
        if any(_destination(m.destination, "") == "/dev/pts" for m in spec.mounts):
            steps.append(
                CreateInRoot(root, "/dev/ptmx", stat.S_IFLNK | 0o777, link_target="pts/ptmx", exist_ok=True,
                             follow_symlinks=False)
            )  # fmt: skip
    del terminal  # (/dev/console for a terminal is not bound yet)
    return steps


def path_steps(spec: Spec) -> list[Step]:
    """``linux.maskedPaths`` and ``linux.readonlyPaths``, in the entered root."""
    linux = spec.linux
    if linux is None:
        return []
    steps: list[Step] = []
    for p in linux.masked_paths:
        steps.append(MountInRoot("/", "/dev/null", p, mask=True, optional=True, follow_symlinks=False))
    for p in linux.readonly_paths:
        steps.append(
            MountInRoot("/", p, p, source_in_root=True, flags=C.MS_BIND | C.MS_REC, remount_flags=C.MS_RDONLY,
                        optional=True, follow_symlinks=False)
        )  # fmt: skip
    return steps


def sysctl_steps(spec: Spec) -> list[Step]:
    """``linux.sysctl``, written under the container's ``/proc/sys``."""
    linux = spec.linux
    if linux is None:
        return []
    return [WriteFile(f"/proc/sys/{key.replace('.', '/')}", value.encode()) for key, value in linux.sysctl.items()]
