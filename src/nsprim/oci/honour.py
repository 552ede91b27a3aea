"""What of a ``config.json`` nsprim honours: everything else is refused by name.

:func:`check_spec` runs before any system call that changes anything: a
field nsprim cannot enforce is a :class:`~nsprim.errors.SpecError` naming it
(``process.apparmorProfile: AppArmor is not supported on this runtime``),
never a setting dropped in silence.  It also checks what the spec demands of
a runtime (a ``hostname`` needs a new UTS namespace, id mappings a new user
namespace, a namespace type named twice is an error) and what keeps the
host safe (the root is inside the bundle unless absolute).
"""

from __future__ import annotations

import os
from pathlib import Path, PurePosixPath

from ..errors import SpecError
from .spec import Linux, LinuxNamespaceType, Process, Spec

__all__ = ["check_spec", "check_process", "rootfs_path", "SYSCTL_NAMESPACES"]

#: Which namespace a sysctl belongs to, by prefix (the kernel's namespaced sysctls; others are refused).
SYSCTL_NAMESPACES: tuple[tuple[str, LinuxNamespaceType], ...] = (
    ("net.", LinuxNamespaceType.NETWORK),
    ("kernel.shm", LinuxNamespaceType.IPC),
    ("kernel.msg", LinuxNamespaceType.IPC),
    ("kernel.sem", LinuxNamespaceType.IPC),
    ("fs.mqueue.", LinuxNamespaceType.IPC),
    ("kernel.hostname", LinuxNamespaceType.UTS),
    ("kernel.domainname", LinuxNamespaceType.UTS),
)


def _refuse(field: str, reason: str) -> SpecError:
    return SpecError(f"{field}: {reason}", field=field)


def rootfs_path(spec: Spec, bundle: Path) -> Path:
    """The root file system's host path: ``root.path`` as it is when absolute, else under
    *bundle*, which it must not leave (``..``)."""
    if spec.root is None or not spec.root.path:
        raise _refuse("root.path", "missing (the container's root file system)")
    raw = spec.root.path
    if "\0" in raw:
        raise _refuse("root.path", "contains a NUL byte")
    if os.path.isabs(raw):
        path = Path(os.path.normpath(raw))
    else:
        rel = PurePosixPath(os.path.normpath(raw))
        if rel.parts and rel.parts[0] == "..":
            raise _refuse("root.path", f'"{raw}" leaves the bundle `{bundle}` (a relative root stays inside it)')
        path = bundle / rel
    if not path.is_dir():
        raise _refuse("root.path", f"`{path}`: not a directory")
    return path


def check_process(process: Process, where: str = "process") -> None:
    """What nsprim cannot do with a process (``create``'s, or ``exec --process``'s)."""
    if not process.args:
        raise _refuse(f"{where}.args", "missing (the program to run)")
    if process.command_line:
        raise _refuse(f"{where}.commandLine", "a Windows field")
    if process.user.username:
        raise _refuse(f"{where}.user.username", "a Windows field (give uid and gid)")
    if not process.cwd.startswith("/"):
        raise _refuse(f"{where}.cwd", f'"{process.cwd}" is not an absolute path')
    for i, item in enumerate(process.env):
        if "=" not in item:
            raise _refuse(f"{where}.env[{i}]", f'"{item}" is not NAME=VALUE')
    if process.apparmor_profile:
        raise _refuse(f"{where}.apparmorProfile", "AppArmor is not supported by nsprim-runtime")
    if process.selinux_label:
        raise _refuse(f"{where}.selinuxLabel", "SELinux is not supported by nsprim-runtime")
    for name, value in (
        ("scheduler", process.scheduler),
        ("ioPriority", process.io_priority),
        ("execCPUAffinity", process.exec_cpu_affinity),
    ):
        if value is not None:
            raise _refuse(f"{where}.{name}", "not supported by nsprim-runtime yet")
    if process.extra:
        key = sorted(process.extra)[0]
        raise _refuse(f"{where}.{key}", "unknown field (nsprim-runtime refuses what it does not know)")


def _namespaces(linux: Linux) -> None:
    seen: dict[LinuxNamespaceType, str] = {}
    for i, ns in enumerate(linux.namespaces):
        field = f"linux.namespaces[{i}]"
        if ns.type in seen:
            other = seen[ns.type]
            what = f'paths "{other}" and "{ns.path}"' if other or ns.path else "twice"
            raise _refuse(f"{field}.type", f'namespace type "{ns.type.value}" named twice ({what} conflict)')
        seen[ns.type] = ns.path
        if ns.path and not os.path.isabs(ns.path):
            raise _refuse(f"{field}.path", f'"{ns.path}" is not an absolute path')
        if ns.path and not os.path.exists(ns.path):
            raise _refuse(f"{field}.path", f"`{ns.path}`: No such file or directory")
        if ns.extra:
            raise _refuse(f"{field}.{sorted(ns.extra)[0]}", "unknown field")
    user = seen.get(LinuxNamespaceType.USER)
    new_user = user == ""
    if new_user and not (linux.uid_mappings and linux.gid_mappings):
        raise _refuse("linux.uidMappings", "a new user namespace needs uidMappings and gidMappings")
    if (linux.uid_mappings or linux.gid_mappings) and not new_user:
        raise _refuse("linux.uidMappings", "id mappings need a new user namespace (linux.namespaces)")
    if linux.time_offsets and seen.get(LinuxNamespaceType.TIME) != "":
        raise _refuse("linux.timeOffsets", "time offsets need a new time namespace")
    for clock in linux.time_offsets:
        if clock not in ("monotonic", "boottime"):
            raise _refuse(f"linux.timeOffsets.{clock}", "only monotonic and boottime have offsets")
    if LinuxNamespaceType.MOUNT not in seen or seen[LinuxNamespaceType.MOUNT]:
        raise _refuse("linux.namespaces", "nsprim-runtime needs a new mount namespace (type mount, no path)")


def _new(linux: Linux, kind: LinuxNamespaceType) -> bool:
    ns = linux.namespace(kind)
    return ns is not None and not ns.path


def check_spec(spec: Spec, bundle: Path) -> Path:
    """Refuse what nsprim cannot honour in *spec*; return the root file system's path."""
    if spec.process is None:
        raise _refuse("process", "missing (the container's process)")
    check_process(spec.process)
    linux = spec.linux
    if linux is None:
        raise _refuse("linux", "missing (nsprim-runtime runs Linux containers)")
    root = rootfs_path(spec, bundle)
    _namespaces(linux)
    if spec.hostname and not _new(linux, LinuxNamespaceType.UTS):
        raise _refuse("hostname", "setting it needs a new uts namespace")
    if spec.domainname and not _new(linux, LinuxNamespaceType.UTS):
        raise _refuse("domainname", "setting it needs a new uts namespace")
    for key in sorted(linux.sysctl):
        owner = next((ns for prefix, ns in SYSCTL_NAMESPACES if key.startswith(prefix)), None)
        field = f"linux.sysctl.{key}"
        if owner is None:
            raise _refuse(field, "not a namespaced sysctl (it would change the host)")
        if not _new(linux, owner):
            raise _refuse(field, f"needs a new {owner.value} namespace")
        if "/" in key or ".." in key or "\0" in key or "\0" in linux.sysctl[key]:
            raise _refuse(field, "not a sysctl name")
    for name, value in (
        ("netDevices", linux.net_devices),
        ("intelRdt", linux.intel_rdt),
        ("memoryPolicy", linux.memory_policy),
        ("personality", linux.personality),
        ("mountLabel", linux.mount_label),
    ):
        if value:
            raise _refuse(f"linux.{name}", "not supported by nsprim-runtime")
    if linux.extra:
        raise _refuse(f"linux.{sorted(linux.extra)[0]}", "unknown field (nsprim-runtime refuses what it does not know)")
    if linux.seccomp is not None:
        if linux.seccomp.listener_path:
            raise _refuse("linux.seccomp.listenerPath", "nsprim-runtime runs no seccomp agent")
        for i, rule in enumerate(linux.seccomp.syscalls):
            if rule.action.value == "SCMP_ACT_NOTIFY":
                raise _refuse(f"linux.seccomp.syscalls[{i}].action", "SCMP_ACT_NOTIFY needs a seccomp agent")
    if linux.rootfs_propagation and linux.rootfs_propagation not in (
        "private", "rprivate", "slave", "rslave", "shared", "rshared", "unbindable", "runbindable",
    ):  # fmt: skip
        raise _refuse("linux.rootfsPropagation", f'"{linux.rootfs_propagation}" is not a propagation')
    for i, dev in enumerate(linux.devices):
        field = f"linux.devices[{i}]"
        if dev.type not in ("c", "u", "b", "p"):
            raise _refuse(f"{field}.type", f'"{dev.type}": one of c, u, b, p')
        if not dev.path.startswith("/dev/") or ".." in PurePosixPath(dev.path).parts:
            raise _refuse(f"{field}.path", f'"{dev.path}" is not a path under /dev')
        if (dev.uid or 0) != 0 or (dev.gid or 0) != 0:
            raise _refuse(f"{field}.uid", "device nodes are made owned by root only")
    for i, path in enumerate((*linux.masked_paths, *linux.readonly_paths)):
        if not path.startswith("/") or ".." in PurePosixPath(path).parts:
            kind = "maskedPaths" if i < len(linux.masked_paths) else "readonlyPaths"
            j = i if i < len(linux.masked_paths) else i - len(linux.masked_paths)
            raise _refuse(f"linux.{kind}[{j}]", f'"{path}" is not an absolute path without ..')
    if spec.extra:
        raise _refuse(sorted(spec.extra)[0], "unknown field (nsprim-runtime refuses what it does not know)")
    return root
