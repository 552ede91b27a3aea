"""A container's configuration, turned into the plan its child runs.

The plan has two parts.  The *prefix* is what changes from one container
to the next: joining its own cgroup and placing its standard streams.  The
*body* — namespaces, the root file system, security, exec — depends only on
the configuration and the host, so it is built and encoded for C once per
configuration and reused: starting the hundredth container of a template
costs no Python plan work beyond its prefix.
"""

from __future__ import annotations

import functools
import os
from collections import OrderedDict
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from .. import _sys
from .._dataclass import dataclass, replace
from .._sys import C
from ..cgroup import CGroup
from ..cgroup.host import cached_host_info
from ..lowlevel import ParentAction
from ..namespace import Namespace, NamespaceType
from ..plan import (
    Chdir,
    Exec,
    FdMap,
    Init,
    InterfaceUp,
    KeepFd,
    Mount,
    Plan,
    SetHostname,
    SetNs,
    SetRlimit,
    SetSid,
    Step,
    Sync,
    Umask,
    WriteFile,
)
from ..spawning import credential_steps, id_map_writer, join_namespaces, namespace_steps
from .config import ContainerConfig, Network, Veth
from .procview import ProcView
from .rootfs import OwnGroupBind, root_steps
from .terminal import TERMINAL_FD, OpenTerminal
from .userns import attach_idmapped, id_maps, idmapped_mounts

if TYPE_CHECKING:
    from ..security import SecurityPolicy
    from .veth import VethLink

__all__ = ["ChildPlan", "build_plan", "default_security"]


@dataclass(frozen=True)
class ChildPlan:
    """Everything :func:`nsprim.lowlevel.start` needs for one container."""

    prefix: Plan
    body: Plan
    clone_flags: int
    cgroup_fd: int  # -1, or an O_PATH descriptor of the cgroup v2 directory (the caller closes it)
    pidns_fd: int  # -1, or the pid namespace the parent thread enters around the clone
    actions: tuple[ParentAction, ...]

    @property
    def steps(self) -> tuple[Step, ...]:
        """All steps, in the order the child runs them."""
        return (*self.prefix.steps, *self.body.steps)


def prepare_plan(cfg: ContainerConfig, state: Path) -> Plan:
    """The first part of *cfg*'s root, made ahead of time by a child cloned into a new mount
    namespace (and joined to the container's network namespace, for ``/sys``), which
    leaves that namespace to its parent (:class:`~nsprim.plan.KeepFd`) and exits."""
    steps = root_steps(cfg, state, userns=False, part="prepare")
    # The namespace, and the directory that is the child's root in it (the caller's root, copied
    # by clone): a process that joins the namespace must be put there again (chrooted callers).
    root = KeepFd("/", slot=1, flags=os.O_PATH | os.O_DIRECTORY)
    return Plan((*steps, KeepFd("/proc/thread-self/ns/mnt", slot=0), root))


def default_security() -> SecurityPolicy:
    """Docker's defaults, less CAP_MKNOD (as podman does).

    With no device cgroup, CAP_MKNOD would let the container make and open
    host devices; without it, ``/dev`` keeps the nodes the setup made.
    """
    from ..security import Capabilities, SecurityPolicy

    return SecurityPolicy(caps=Capabilities.docker_default().drop("MKNOD"))


@functools.lru_cache(maxsize=4)
def _default_security_compiled(state: Path) -> SecurityPolicy:
    """:func:`default_security` with its seccomp program already compiled: kept by content in
    the state directory's ``seccomp`` (:class:`~nsprim.security.seccomp.cache.ProgramCache`),
    as building and compiling Docker's profile costs more than the rest of a plan."""
    from ..security import Capabilities, SecurityPolicy
    from ..security.seccomp.cache import ProgramCache

    caps = Capabilities.docker_default().drop("MKNOD")
    cache = ProgramCache(state / "seccomp")
    key = cache.key(f"docker-default, bounding {caps.bounding.mask:#x}")
    hit = cache.get(key)
    if hit is None:
        policy = default_security()
        program = policy.program()
        assert program is not None
        flags = getattr(policy.seccomp, "flags", 0)
        cache.put(key, program, flags)
    else:
        program, flags = hit
    return SecurityPolicy(caps=caps, seccomp=program, seccomp_flags=flags)


def _body(
    cfg: ContainerConfig,
    state: Path | None,
    hierarchies: tuple[Path, ...],
    joined: Sequence[Namespace],
    proc_view: ProcView | None,
    cgroup_by_write: bool,
    for_exec: bool,
    prepared: bool = False,
) -> tuple[Plan, int, tuple[Path, ...]]:
    """The configuration-dependent part of the plan, the clone flags, and the mount points of the
    v1 hierarchies whose :class:`~nsprim.container.rootfs.OwnGroupBind` it has (see :func:`build_plan`).

    *prepared*: the child joins a mount namespace in which the first part of
    the root is already made (:func:`prepare_plan`), instead of a new one.
    """
    create = set(cfg.namespaces)
    uid_map, gid_map = id_maps(cfg)
    # As root of a new user namespace from its maps on: host root's 0 is unmapped under a
    # subordinate range, and what the setup makes there (the tmpfs of the root's mount points)
    # would have an owner with no id in it (EOVERFLOW).
    ns = namespace_steps(
        create,
        joined,
        uid_map=uid_map,
        gid_map=gid_map,
        deny_setgroups=os.geteuid() != 0,
        become_root=True,
        unshare_cgroup=cgroup_by_write,  # after joining the group, so that it is the namespace's root
        private_root=cfg.root is None,  # (RootFS starts with this itself)
    )
    # Out of the caller's session first: a payload sharing it could push keystrokes
    # into the caller's terminal (TIOCSTI), as runc and crun also prevent.
    steps: list[Step] = [SetSid(), *ns.maps]
    clone_flags = ns.clone_flags
    if cfg.network is Network.VETH and NamespaceType.NET in create:
        steps.append(Sync("the parent links the veth pair"))
    if cfg.security is not None:
        security: SecurityPolicy | None = cfg.security
    else:
        security = default_security() if state is None else _default_security_compiled(state)
    if security is not None:
        security = replace(security, umask=cfg.umask)  # the container's umask wins
        # Non-dumpable from here on (nothing of the container may ptrace the
        # setup or open its /proc/<pid>/exe), but only after the parent wrote
        # the id maps: a rootless parent cannot write a non-dumpable child's.
        steps += security.prologue()
    steps += ns.enter
    if NamespaceType.MNT in create:
        userns = NamespaceType.USER in create
        part: Literal["all", "finish"] = "finish" if prepared else "all"
        idmapped = idmapped_mounts(cfg, state, uid_map, gid_map) if not prepared else ()
        steps += root_steps(
            cfg, state, userns=userns, proc_view=proc_view, hierarchies=hierarchies, part=part, idmapped=idmapped
        )
        if prepared:
            clone_flags &= ~NamespaceType.MNT.flag
    if cfg.hostname is not None:
        steps.append(SetHostname(cfg.hostname))
    if cfg.network in (Network.NONE, Network.VETH) and NamespaceType.NET in create:
        steps.append(InterfaceUp("lo"))
    if cfg.init and NamespaceType.PID in create and not for_exec:
        steps.append(Init())
    if cfg.tty:  # after the root (its devpts) and the init (the payload's terminal), as root still
        steps.append(OpenTerminal(TERMINAL_FD, uid=cfg.uid, gid=cfg.gid))
    for lim in cfg.rlimits:
        steps.append(SetRlimit(lim.resource, lim.soft, lim.hard))
    if security is not None:
        # setgroups is denied to a rootless container (the kernel's rule for an
        # unprivileged id map): leave the groups alone there unless asked.
        groups = cfg.groups if (cfg.groups or os.geteuid() == 0) else None
        # The user switch interleaves with the capability changes, and seccomp
        # comes last when no_new_privs allows it: the policy orders them.
        steps += security.epilogue(uid=cfg.uid, gid=cfg.gid, groups=groups)
    else:
        if cfg.umask is not None:
            steps.append(Umask(cfg.umask))
        steps += credential_steps(cfg.uid, cfg.gid, cfg.groups if (cfg.groups or os.geteuid() == 0) else None)
    # chdir as the user the payload runs as, as runc does.
    steps.append(Chdir(cfg.cwd))
    env = dict(cfg.env)
    search = env.get("PATH", "/usr/bin:/bin")
    steps.append(Exec(cfg.argv[0], list(cfg.argv), env, search, search_owner="the container's PATH"))
    own = tuple(Path(s.source) for s in steps if isinstance(s, OwnGroupBind) and s.source is not None)
    return Plan(tuple(steps)), clone_flags, own


_BODY_CACHE: OrderedDict[tuple[Any, ...], tuple[Plan, int, tuple[Path, ...]]] = OrderedDict()
_BODY_CACHE_SIZE = 64


def _cached_body(
    key: tuple[Any, ...], make: Callable[[], tuple[Plan, int, tuple[Path, ...]]]
) -> tuple[Plan, int, tuple[Path, ...]]:
    try:
        hit = _BODY_CACHE.get(key)
    except TypeError:  # an unhashable part (a custom policy): no caching
        return make()
    if hit is None:
        hit = _BODY_CACHE[key] = make()
        if len(_BODY_CACHE) > _BODY_CACHE_SIZE:
            _BODY_CACHE.popitem(last=False)
    else:
        _BODY_CACHE.move_to_end(key)
    return hit


def build_plan(
    cfg: ContainerConfig,
    *,
    cgroup: CGroup | None,
    state: Path | None,
    stdio: Sequence[tuple[int, int]],
    joined: Sequence[Namespace] = (),
    proc_view: ProcView | None = None,
    for_exec: bool = False,
    netns_fd: int = -1,
    mntns_fd: int = -1,
    mntns_root_fd: int = -1,
    veth: VethLink | None = None,
    clone_into_cgroup: bool = True,
) -> ChildPlan:
    """The child's plan, clone flags, cgroup descriptor and parent actions for *cfg*.

    The child is placed into a cgroup v2 group at clone time
    (``CLONE_INTO_CGROUP``, with a vfork-like clone3 where the plan allows)
    and joins v1 groups by writing ``0`` to their ``tasks`` first thing.
    *netns_fd*, a fresh network namespace made ahead of time, is joined
    first instead of creating one at clone time (the plan body is the same);
    *mntns_fd*, a mount namespace made by :func:`prepare_plan` in that network
    namespace, is joined instead of a new one (the root put back at
    *mntns_root_fd*), and the body only finishes the root.  *veth* links a
    ``network("veth")`` container to the host (its owner removes it at the end).
    Without *clone_into_cgroup* every group is joined by a write (a child forked by a
    zygote, which ``os.fork`` cannot place in a group at birth).
    """
    dirs = cgroup.directories if cgroup is not None else {}
    v2 = [d for h, d in dirs.items() if h.version == 2]
    # The v2 group is entered at birth (clone3 CLONE_INTO_CGROUP): writing to
    # its cgroup.procs would take the kernel's global threadgroup lock for
    # writing, whose first taker after a quiet spell waits out an RCU grace
    # period (tens of milliseconds measured here).  v1 groups are joined by
    # writing 0 to `tasks`, which moves the (single) thread without that lock.
    into_cgroup = clone_into_cgroup and len(v2) == 1 and _sys.have_clone3()
    written = [(h, d) for h, d in dirs.items() if h.version == 1 or not into_cgroup]
    cgroup_by_write = bool(written)
    prefix: list[Step] = [
        WriteFile(d / ("tasks" if h.version == 1 else "cgroup.procs"), b"0")
        for h, d in sorted(written, key=lambda hd: hd[0].version)
    ]
    if netns_fd >= 0:
        prefix.insert(0, SetNs(netns_fd, NamespaceType.NET.flag))
    # The standard streams first: the descriptors differ for every container.
    prefix.append(FdMap(tuple(stdio)))
    prepared = mntns_fd >= 0
    if prepared:  # after the cgroup joins: their paths are the host's
        prefix.append(SetNs(mntns_fd, NamespaceType.MNT.flag, root_fd=mntns_root_fd))
    hierarchies = tuple(h.mount_point for h in dirs)
    args = (cfg, state, hierarchies, tuple(joined), proc_view, cgroup_by_write, for_exec, prepared)
    if joined or proc_view is not None or for_exec:
        body, flags, own = _body(*args)  # descriptors or paths of this container only
    else:
        key = (cfg, state, hierarchies, cgroup_by_write, prepared, os.geteuid(), id(cached_host_info()))
        body, flags, own = _cached_body(key, lambda: _body(*args))
    if own:
        # The container's own v1 groups over their hierarchies' mount points, for the body's binds
        # (OwnGroupBind), in its mount namespace made private first: nothing propagates to the host.
        prefix.append(Mount(None, "/", None, C.MS_REC | C.MS_PRIVATE))
        by_mount_point = {h.mount_point: d for h, d in dirs.items() if h.version == 1}
        prefix += [Mount(by_mount_point[mount_point], mount_point, None, C.MS_BIND) for mount_point in own]
    if netns_fd >= 0:
        flags &= ~NamespaceType.NET.flag
    actions: list[ParentAction] = []
    uid_map, gid_map = id_maps(cfg)
    if uid_map is not None or gid_map is not None:
        um, gm, at = uid_map, gid_map, state
        idmapped = idmapped_mounts(cfg, state, uid_map, gid_map) if not prepared else ()

        def attach(pid: int) -> None:  # the child's state tmpfs with the maps, before it goes on
            if idmapped and at is not None:
                attach_idmapped(pid, at, idmapped, um, gm)

        actions.append(id_map_writer(uid_map, gid_map, deny_setgroups=os.geteuid() != 0, then=attach))
    if cfg.network is Network.VETH and NamespaceType.NET in cfg.namespaces:
        if veth is None:  # (a caller that removes no pair: the kernel does, with the namespace)
            from .host import state_dir
            from .veth import VethLink

            veth = VethLink(cfg.veth or Veth(), state_dir())
        actions.append(veth.link)
    cgroup_fd = -1
    if into_cgroup:
        cgroup_fd = os.open(v2[0], os.O_PATH | os.O_DIRECTORY | os.O_CLOEXEC)
    pidns_fd = join_namespaces(joined)[1]
    return ChildPlan(Plan(tuple(prefix)), body, flags, cgroup_fd, pidns_fd, tuple(actions))
