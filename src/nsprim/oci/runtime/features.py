"""``nsprim-runtime features``: the runtime spec's Features structure (``features.md``).

It says what this runtime accepts in ``config.json``, and, unlike runc's,
it is computed on the host it runs on: namespaces are those the kernel has
(``/proc/self/ns``), capabilities stop at the kernel's last one, seccomp is
enabled where the kernel filters, and ``supportedFlags`` are the filter flags
this kernel's release has.  Everything listed is something nsprim honours;
everything else in a spec is refused by name when the container is created
(AppArmor and SELinux labels, Intel RDT, memory policies, net devices,
id-mapped mounts, the systemd cgroup manager).
"""

from __future__ import annotations

import os

__all__ = ["SPEC_VERSION_MIN", "SPEC_VERSION_MAX", "HOOKS", "features", "cmd_features"]

#: The oldest and newest runtime-spec versions accepted as ``ociVersion``.
SPEC_VERSION_MIN = "1.0.0"
SPEC_VERSION_MAX = "1.3.0"

#: The hook kinds, in the order of the lifecycle.
HOOKS = ("prestart", "createRuntime", "createContainer", "startContainer", "poststart", "poststop")

# config.json's namespace types and their /proc/PID/ns names.
_NAMESPACES = {
    "cgroup": "cgroup",
    "ipc": "ipc",
    "mount": "mnt",
    "network": "net",
    "pid": "pid",
    "time": "time",
    "user": "user",
    "uts": "uts",
}
# The runtime spec's seccomp actions (defs-linux.json), tried one by one against nsprim's parser.
_SECCOMP_ACTIONS = (
    "SCMP_ACT_ALLOW",
    "SCMP_ACT_ERRNO",
    "SCMP_ACT_KILL",
    "SCMP_ACT_KILL_PROCESS",
    "SCMP_ACT_KILL_THREAD",
    "SCMP_ACT_LOG",
    "SCMP_ACT_NOTIFY",
    "SCMP_ACT_TRACE",
    "SCMP_ACT_TRAP",
)


def _namespaces() -> list[str]:
    return sorted(kind for kind, proc in _NAMESPACES.items() if os.path.exists(f"/proc/self/ns/{proc}"))


def _capabilities() -> list[str]:
    from ...security.capabilities import Capability, last_cap

    top = last_cap()
    return [f"CAP_{cap.name}" for cap in sorted(Capability) if cap <= top]


def _seccomp_enabled() -> bool:
    try:
        with open("/proc/self/status") as f:
            return any(line.startswith("Seccomp_filters:") for line in f)
    except OSError:
        return False


# The kernel release that first took each filter flag (seccomp(2)).
_FLAG_SINCE = {
    "SECCOMP_FILTER_FLAG_TSYNC": (3, 17),
    "SECCOMP_FILTER_FLAG_LOG": (4, 14),
    "SECCOMP_FILTER_FLAG_SPEC_ALLOW": (4, 17),
    "SECCOMP_FILTER_FLAG_WAIT_KILLABLE_RECV": (5, 19),
}


def _seccomp() -> dict[str, object]:
    from ...errors import NsprimError
    from ...security.seccomp.arch import ARCHES
    from ...security.seccomp.parse import FILTER_FLAGS
    from ...security.seccomp.profile import Action, Op, kernel_version

    actions = []
    for name in _SECCOMP_ACTIONS:
        try:
            Action.parse(name, None)
        except NsprimError:
            continue  # SCMP_ACT_NOTIFY: nsprim runs no seccomp agent
        actions.append(name)
    enabled = _seccomp_enabled()
    known = sorted(FILTER_FLAGS)
    # WAIT_KILLABLE_RECV only means something for a filter with a listener (SCMP_ACT_NOTIFY), refused above.
    usable = [n for n in known if n != "SECCOMP_FILTER_FLAG_WAIT_KILLABLE_RECV"]
    kernel = kernel_version()
    supported = [n for n in usable if enabled and kernel >= _FLAG_SINCE.get(n, (99, 0))]
    return {
        "enabled": enabled,
        "actions": actions,
        "operators": sorted(op.value for op in Op),
        "archs": sorted(arch.scmp_name for arch in ARCHES.values()),
        "knownFlags": known,
        "supportedFlags": supported,
    }


def features() -> dict[str, object]:
    """The Features structure for this host."""
    from ... import __version__
    from .mount_options import MOUNT_OPTIONS

    return {
        "ociVersionMin": SPEC_VERSION_MIN,
        "ociVersionMax": SPEC_VERSION_MAX,
        "hooks": list(HOOKS),
        "mountOptions": list(MOUNT_OPTIONS),
        "linux": {
            "namespaces": _namespaces(),
            "capabilities": _capabilities(),
            "cgroup": {"v1": True, "v2": True, "systemd": False, "systemdUser": False, "rdma": False},
            "seccomp": _seccomp(),
            "apparmor": {"enabled": False},
            "selinux": {"enabled": False},
            "intelRdt": {"enabled": False, "schemata": False, "monitoring": False},
            "memoryPolicy": {"modes": [], "flags": []},
            "mountExtensions": {"idmap": {"enabled": False}},
            "netDevices": {"enabled": False},
        },
        "annotations": {"io.github.nsprim.version": __version__},
        "potentiallyUnsafeConfigAnnotations": [],
    }


def cmd_features(g: object, opts: dict[str, object], args: list[str]) -> int:
    """``features``: print the Features structure (runc's layout: 4-space indent)."""
    from .jsonio import dumps

    print(dumps(features(), indent=4))
    return 0
