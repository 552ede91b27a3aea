"""Example specs, as ``runc spec`` writes them: the starting point of a bundle."""

from __future__ import annotations

import os

from .spec import (
    SPEC_VERSION,
    Linux,
    LinuxCapabilities,
    LinuxDeviceCgroup,
    LinuxIDMapping,
    LinuxNamespace,
    LinuxNamespaceType,
    LinuxResources,
    Mount,
    POSIXRlimit,
    Process,
    Root,
    Spec,
    User,
)

__all__ = ["DEFAULT_MASKED_PATHS", "DEFAULT_READONLY_PATHS", "default_spec"]

#: Paths of /proc and /sys hidden from containers: what `runc spec` writes (nsprim.fs.rootfs hides powercap too).
DEFAULT_MASKED_PATHS = (
    "/proc/acpi",
    "/proc/asound",
    "/proc/kcore",
    "/proc/keys",
    "/proc/latency_stats",
    "/proc/timer_list",
    "/proc/timer_stats",
    "/proc/sched_debug",
    "/sys/firmware",
    "/proc/scsi",
)

#: Paths of /proc made read-only in containers.
DEFAULT_READONLY_PATHS = ("/proc/bus", "/proc/fs", "/proc/irq", "/proc/sys", "/proc/sysrq-trigger")

_CAPS = ("CAP_AUDIT_WRITE", "CAP_KILL", "CAP_NET_BIND_SERVICE")
_ENV = ("PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin", "TERM=xterm")


def _mounts(rootless: bool) -> tuple[Mount, ...]:
    devpts = ["nosuid", "noexec", "newinstance", "ptmxmode=0666", "mode=0620"]
    if not rootless:
        devpts.append("gid=5")  # the tty group exists only where the host's ids are mapped
    sys_mount = (
        # A new sysfs needs a network namespace of our own, which a rootless container lacks.
        Mount(destination="/sys", type="none", source="/sys", options=("rbind", "nosuid", "noexec", "nodev", "ro"))
        if rootless
        else Mount(destination="/sys", type="sysfs", source="sysfs", options=("nosuid", "noexec", "nodev", "ro"))
    )
    return (
        Mount(destination="/proc", type="proc", source="proc"),
        Mount(
            destination="/dev",
            type="tmpfs",
            source="tmpfs",
            options=("nosuid", "strictatime", "mode=755", "size=65536k"),
        ),
        Mount(destination="/dev/pts", type="devpts", source="devpts", options=tuple(devpts)),
        Mount(
            destination="/dev/shm",
            type="tmpfs",
            source="shm",
            options=("nosuid", "noexec", "nodev", "mode=1777", "size=65536k"),
        ),
        Mount(destination="/dev/mqueue", type="mqueue", source="mqueue", options=("nosuid", "noexec", "nodev")),
        sys_mount,
        Mount(
            destination="/sys/fs/cgroup",
            type="cgroup",
            source="cgroup",
            options=("nosuid", "noexec", "nodev", "relatime", "ro"),
        ),
    )


def default_spec(*, rootless: bool = False, args: tuple[str, ...] = ("sh",), terminal: bool = True) -> Spec:
    """The spec ``nsprim-runtime spec`` writes: what ``runc spec`` writes, for this runtime.

    *rootless* gives the container a user namespace that maps root inside to
    the calling user (``runc spec --rootless``), no network namespace of its
    own, the host's ``/sys`` bound instead of a new sysfs, and no device cgroup.
    """
    kinds = [LinuxNamespaceType.PID, LinuxNamespaceType.IPC, LinuxNamespaceType.UTS, LinuxNamespaceType.MOUNT]
    if rootless:
        kinds.append(LinuxNamespaceType.USER)
    else:
        kinds.insert(1, LinuxNamespaceType.NETWORK)
    caps = LinuxCapabilities(bounding=_CAPS, effective=_CAPS, permitted=_CAPS, ambient=_CAPS)
    linux = Linux(
        namespaces=tuple(LinuxNamespace(type=k) for k in kinds),
        masked_paths=DEFAULT_MASKED_PATHS,
        readonly_paths=DEFAULT_READONLY_PATHS,
    )
    if rootless:
        linux = linux.replace(
            uid_mappings=(LinuxIDMapping(container_id=0, host_id=os.getuid(), size=1),),
            gid_mappings=(LinuxIDMapping(container_id=0, host_id=os.getgid(), size=1),),
        )
    else:
        linux = linux.replace(
            resources=LinuxResources(devices=(LinuxDeviceCgroup(allow=False, access="rwm"),)),
        )
    return Spec(
        oci_version=SPEC_VERSION,
        process=Process(
            terminal=terminal,
            user=User(uid=0, gid=0),
            args=args,
            env=_ENV,
            cwd="/",
            capabilities=caps,
            rlimits=(POSIXRlimit(type="RLIMIT_NOFILE", hard=1024, soft=1024),),
            no_new_privileges=True,
        ),
        root=Root(path="rootfs", readonly=True),
        hostname="nsprim",
        mounts=_mounts(rootless),
        linux=linux,
    )
