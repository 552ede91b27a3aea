"""A bundle's ``config.json`` as the plan its container's init runs.

:func:`bundle_plan` checks the spec (:func:`~nsprim.oci.honour.check_spec`:
what nsprim cannot honour is refused by name) and turns it into plan steps,
in the order the runtime spec and runc give them::

    setsid, the wait for the id maps (a new user namespace), non-dumpable
    joining namespaces by path, unsharing the time namespace, / private
    the root bound onto itself, the spec's mounts in its order, devices
    prestart/createRuntime hooks (a sync step: the runtime runs them)
    entering the root (pivot_root, or move + chroot with --no-pivot)
    the root read-only, mount propagation, sysctls, masked and read-only paths
    hostname, domainname, oomScoreAdj, the terminal (console socket), rlimits
    WAIT_START (``create`` returns; ``start`` releases it)
    capabilities, groups, gid, uid, no_new_privs, seccomp, umask, chdir, exec

Descriptors the plan uses (the start socket, the console socket, the
namespaces to join) are the caller's, opened before the spawn; they are
placed above every descriptor the fd map places.
"""

from __future__ import annotations

import os
import resource
from collections.abc import Mapping
from pathlib import Path

from .._dataclass import dataclass
from .._sys import C
from ..errors import SpecError
from ..fs.steps import EnterRoot
from ..handoff import SendTerminal, WaitStart
from ..idmap import IdMap
from ..namespace import Namespace, NamespaceType
from ..plan import (
    Chdir,
    Exec,
    FdMap,
    FindExecutable,
    Mount,
    NoNewPrivs,
    SetDomainname,
    SetGid,
    SetGroups,
    SetHostname,
    SetRlimit,
    SetSid,
    SetUid,
    Step,
    Sync,
    Umask,
    WriteFile,
)
from ._codec import encode
from .honour import check_spec
from .mounts import device_steps, mount_steps, path_steps, propagation_steps, sysctl_steps
from .spec import LinuxIDMapping, LinuxNamespaceType, Process, Spec

TYPE_CHECKING = False  # (typing itself is not imported)
if TYPE_CHECKING:
    from .._paths import StrPath

__all__ = ["BundlePlan", "Handoff", "bundle_plan", "process_steps", "NAMESPACE_TYPES", "id_map", "rlimit_number"]

#: config.json's namespace types as nsprim's.
NAMESPACE_TYPES: Mapping[LinuxNamespaceType, NamespaceType] = {
    LinuxNamespaceType.PID: NamespaceType.PID,
    LinuxNamespaceType.NETWORK: NamespaceType.NET,
    LinuxNamespaceType.MOUNT: NamespaceType.MNT,
    LinuxNamespaceType.IPC: NamespaceType.IPC,
    LinuxNamespaceType.UTS: NamespaceType.UTS,
    LinuxNamespaceType.USER: NamespaceType.USER,
    LinuxNamespaceType.CGROUP: NamespaceType.CGROUP,
    LinuxNamespaceType.TIME: NamespaceType.TIME,
}
_PROPAGATION = {
    "private": C.MS_PRIVATE, "rprivate": C.MS_PRIVATE | C.MS_REC, "slave": C.MS_SLAVE,
    "rslave": C.MS_SLAVE | C.MS_REC, "shared": C.MS_SHARED, "rshared": C.MS_SHARED | C.MS_REC,
    "unbindable": C.MS_UNBINDABLE, "runbindable": C.MS_UNBINDABLE | C.MS_REC,
}  # fmt: skip
_U64_MAX = (1 << 64) - 1


@dataclass(frozen=True)
class Handoff:
    """The descriptors a bundle's plan hands its init, all the caller's (and closed by it)."""

    listen_fd: int = -1  #: the listening start socket (:class:`~nsprim.handoff.WaitStart`), or -1: no wait
    console_fd: int = -1  #: the engine's console socket, connected, for ``process.terminal``
    preserve_fds: int = 0  #: fds 3 .. 3+N-1 passed on as they are
    no_pivot: bool = False  #: enter the root with move + chroot instead of pivot_root


@dataclass(frozen=True)
class BundlePlan:
    """What starting a bundle's container takes."""

    steps: tuple[Step, ...]
    clone_flags: int
    pidns_fd: int  #: a pid namespace to join (entered around the clone), or -1
    uid_map: IdMap | None
    gid_map: IdMap | None
    hooks_sync: bool  #: the plan waits at a sync step after the id maps for the runtime's hooks
    rootfs: Path
    joined: tuple[Namespace, ...]  #: open namespaces to join: the caller closes them after the spawn


def id_map(ranges: tuple[LinuxIDMapping, ...]) -> IdMap:
    """``uidMappings``/``gidMappings`` as an :class:`~nsprim.idmap.IdMap`."""
    return IdMap.of((r.container_id, r.host_id, r.size) for r in ranges)


def rlimit_number(name: str, field: str) -> int:
    """``RLIMIT_NOFILE`` and its kin, by name."""
    number = getattr(resource, name, None) if name.startswith("RLIMIT_") else None
    if not isinstance(number, int):
        raise SpecError(f'{field}: unknown rlimit "{name}"', field=field)
    return number


def _caps(process: Process) -> object:
    from ..security import Capabilities

    if process.capabilities is None:
        return Capabilities.none()
    return Capabilities.from_oci(encode(process.capabilities))


def _seccomp(spec: Spec, cache_dir: StrPath | None) -> tuple[object | None, int]:
    linux = spec.linux
    if linux is None or linux.seccomp is None:
        return None, 0
    from ..security.seccomp.cache import ProgramCache

    cache = ProgramCache(cache_dir) if cache_dir is not None else None
    document = encode(linux.seccomp)
    key = ""
    if cache is not None:
        key = cache.key(document)
        hit = cache.get(key)
        if hit is not None:
            return hit
    from ..security.seccomp.parse import parse_profile
    from ..security.steps import SecurityPolicy

    profile = parse_profile(document, strict=False)
    program = SecurityPolicy(seccomp=profile).program()
    if cache is not None and program is not None:
        cache.put(key, program, profile.flags)
    return program, profile.flags


def _early_lookup(step: Step) -> list[Step]:
    """A missing program is ``create``'s error, as runc's and crun's (engines map it to exit status
    127), where the lookup from ``/`` as root sees what the payload will: an absolute file, or a
    PATH of absolute directories (a relative one is the process's ``cwd``'s, known only later)."""
    assert isinstance(step, Exec)
    file = os.fspath(step.file)
    search = step.searched()
    if "/" in file and not file.startswith("/"):
        return []
    if search is not None and not all(d.startswith("/") for d in search.split(":")):
        return []
    return [FindExecutable(step.file, step.argv, step.env, step.search_path, step.search_owner)]


def process_steps(
    process: Process, spec: Spec, *, where: str = "process", seccomp_cache: StrPath | None = None
) -> list[Step]:
    """From the user switch to the exec: capabilities, ids, no_new_privs, seccomp, umask, cwd.

    *seccomp_cache*: the directory of a :class:`~nsprim.security.seccomp.cache.ProgramCache`, where
    compiled seccomp programs are kept by content (compiled here when missing).
    """
    from ..security.steps import CapsPhase, LoadSeccomp, SetCapabilities

    caps = _caps(process)
    program, flags = _seccomp(spec, seccomp_cache)
    user = process.user
    steps: list[Step] = [SetCapabilities(caps, CapsPhase.BOUNDING | CapsPhase.KEEP)]  # type: ignore[arg-type]
    if program is not None and not process.no_new_privileges:
        steps.append(LoadSeccomp(program, flags))  # type: ignore[arg-type]
    steps.append(SetGroups(tuple(user.additional_gids)))
    steps += [SetGid(user.gid), SetUid(user.uid)]
    steps.append(SetCapabilities(caps, CapsPhase.SETS | CapsPhase.CLAMP))  # type: ignore[arg-type]
    if process.no_new_privileges:
        steps.append(NoNewPrivs())
        if program is not None:
            steps.append(LoadSeccomp(program, flags))  # type: ignore[arg-type]
    steps.append(Umask(user.umask if user.umask is not None else 0o022))
    steps.append(Chdir(process.cwd))
    env = dict(item.split("=", 1) for item in process.env)
    search = env.get("PATH", "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin")
    steps.append(Exec(process.args[0], process.args, env, search, search_owner="the container's PATH"))
    return steps


def _rlimits(process: Process) -> list[Step]:
    out: list[Step] = []
    for i, lim in enumerate(process.rlimits):
        number = rlimit_number(lim.type, f"process.rlimits[{i}].type")
        soft = -1 if lim.soft >= _U64_MAX else lim.soft
        hard = -1 if lim.hard >= _U64_MAX else lim.hard
        out.append(SetRlimit(number, soft, hard))
    return out


def _open_joined(spec: Spec) -> list[Namespace]:
    assert spec.linux is not None
    joined: list[Namespace] = []
    try:
        for i, ns in enumerate(spec.linux.namespaces):
            if ns.path:
                try:
                    joined.append(Namespace.from_path(ns.path, NAMESPACE_TYPES[ns.type]))
                except Exception as exc:
                    field = f"linux.namespaces[{i}].path"
                    raise SpecError(f"{field}: {exc}", field=field) from None
    except BaseException:
        for ns_open in joined:
            ns_open.close()
        raise
    return joined


def bundle_plan(
    spec: Spec,
    bundle: Path,
    handoff: Handoff,
    *,
    hooks: bool = False,
    cgroup_dirs: Mapping[str, Path] | None = None,
    seccomp_cache: StrPath | None = None,
) -> BundlePlan:
    """Check *spec* and build its init's plan (see the module's documentation).

    *hooks*: the plan stops at a sync step before entering the root, for the
    runtime to run the ``prestart`` and ``createRuntime`` hooks.  *cgroup_dirs*:
    the container's groups by hierarchy mount point, bound by a ``cgroup`` mount
    when the container has no cgroup namespace.  *seccomp_cache*: as for :func:`process_steps`.
    """
    from ..spawning import namespace_steps

    rootfs = check_spec(spec, bundle)
    assert spec.process is not None and spec.linux is not None
    process, linux = spec.process, spec.linux
    if process.terminal and handoff.console_fd < 0 and handoff.listen_fd >= 0:
        raise SpecError("process.terminal: a terminal needs --console-socket", field="process.terminal")
    if handoff.preserve_fds < 0 or handoff.preserve_fds > 1000:
        raise SpecError(f"--preserve-fds {handoff.preserve_fds}: 0 to 1000", field="preserve-fds")
    create = {NAMESPACE_TYPES[ns.type] for ns in linux.namespaces if not ns.path}
    userns = NamespaceType.USER in create
    uid_map = id_map(linux.uid_mappings) if userns else None
    gid_map = id_map(linux.gid_mappings) if userns else None
    offsets = None
    if linux.time_offsets:
        from ..process import TimeOffsets

        mono, boot = linux.time_offsets.get("monotonic"), linux.time_offsets.get("boottime")
        offsets = TimeOffsets(
            mono.secs + mono.nanosecs / 1e9 if mono else 0.0, boot.secs + boot.nanosecs / 1e9 if boot else 0.0
        )
    joined = _open_joined(spec)
    try:
        ns = namespace_steps(
            create, joined, uid_map=uid_map, gid_map=gid_map, deny_setgroups=os.geteuid() != 0,
            become_root=True, time_offsets=offsets, private_root=False,
        )  # fmt: skip
        pairs = [(0, 0), (1, 1), (2, 2), *((fd, fd) for fd in range(3, 3 + handoff.preserve_fds))]
        kept = tuple(fd for fd in (handoff.listen_fd, handoff.console_fd) if fd >= 0) + tuple(n.fd for n in joined)
        steps: list[Step] = [SetSid(), FdMap(tuple(pairs), close_others=True, kept=kept), *ns.maps]
        from ..security.steps import SetDumpable

        steps.append(SetDumpable(False))
        steps += ns.enter
        propagation = linux.rootfs_propagation
        first = C.MS_REC | (C.MS_SLAVE if propagation in ("slave", "rslave") else C.MS_PRIVATE)
        steps.append(Mount(None, "/", None, first))
        steps.append(Mount(rootfs, rootfs, None, C.MS_BIND | C.MS_REC))
        mounts, has_dev = mount_steps(spec, rootfs, bundle, cgroup_dirs)
        steps += mounts
        steps += device_steps(spec, rootfs, has_dev=has_dev, userns=userns, terminal=process.terminal)
        if hooks:
            steps.append(Sync("the runtime runs the prestart and createRuntime hooks"))
        steps.append(EnterRoot(rootfs, "chroot" if handoff.no_pivot else "auto"))
        if spec.root is not None and spec.root.readonly:
            steps.append(Mount(None, "/", None, C.MS_REMOUNT | C.MS_BIND | C.MS_RDONLY))
        if propagation:
            steps.append(Mount(None, "/", None, _PROPAGATION[propagation]))
        steps += propagation_steps(spec)
        steps += sysctl_steps(spec)
        steps += path_steps(spec)
        if spec.hostname:
            steps.append(SetHostname(spec.hostname))
        if spec.domainname:
            steps.append(SetDomainname(spec.domainname))
        if process.oom_score_adj is not None:
            steps.append(WriteFile("/proc/self/oom_score_adj", str(process.oom_score_adj).encode()))
        if process.terminal and handoff.console_fd >= 0:
            size = (process.console_size.height, process.console_size.width) if process.console_size else None
            steps.append(SendTerminal(handoff.console_fd, size, uid=process.user.uid, gid=process.user.gid))
        steps += _rlimits(process)
        tail = process_steps(process, spec, seccomp_cache=seccomp_cache)
        if handoff.listen_fd >= 0:
            steps += _early_lookup(tail[-1])
            steps.append(WaitStart(handoff.listen_fd))
        steps += tail
    except BaseException:
        for n in joined:
            n.close()
        raise
    return BundlePlan(tuple(steps), ns.clone_flags, ns.pidns_fd, uid_map, gid_map, hooks, rootfs, tuple(joined))
