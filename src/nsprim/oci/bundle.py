"""Bundles both ways: a container's configuration as ``config.json``
(:func:`spec_of`, :func:`write_bundle`), and any bundle run from Python
(:class:`Bundle`).

:func:`spec_of` starts from what ``runc spec`` writes (the same mounts, masked
and read-only paths and device rules) and sets what the
:class:`~nsprim.container.ContainerConfig` says: the process (arguments,
environment, working directory, ids, umask, rlimits), the security policy
(capabilities, ``no_new_privs``, the seccomp profile), the namespaces (new and
joined), id maps, host name, root, binds and tmpfs mounts, and the cgroup
limits.  What config.json cannot say is refused by name
(:class:`~nsprim.errors.SpecError`): a root over the host's ``/`` or over
layers (an engine makes that one directory), a veth link, a pseudo-terminal,
an init, the ``/proc`` view, automatic id maps, a compiled seccomp program.
How a container is run (``name``, ``detach``, ``auto_remove``) is not part of
its bundle and is left to the runtime that runs it.
"""

from __future__ import annotations

import os
import secrets
import tempfile
from collections.abc import Sequence
from pathlib import Path

from ..container import ContainerConfig
from ..errors import SpecError
from .generate import default_spec
from .spec import (
    LinuxBlockIO,
    LinuxCapabilities,
    LinuxCPU,
    LinuxHugepageLimit,
    LinuxIDMapping,
    LinuxMemory,
    LinuxNamespace,
    LinuxPids,
    LinuxResources,
    LinuxThrottleDevice,
    Mount,
    POSIXRlimit,
    Root,
    Spec,
    User,
)

TYPE_CHECKING = False  # (typing itself is not imported)
if TYPE_CHECKING:
    from ..cgroup import Resources
    from ..idmap import IdMap
    from ..security import SecurityPolicy

__all__ = ["Bundle", "spec_of", "write_bundle"]


def _refuse(field: str, why: str) -> SpecError:
    return SpecError(f"{field}: {why}", field=field)


def spec_of(config: ContainerConfig) -> Spec:
    """The ``config.json`` of *config* (see the module's documentation)."""
    from ..container.config import Network, RootKind
    from ..namespace import NamespaceType
    from .convert import NAMESPACE_TYPES

    cfg = config.resolve_user()
    for name, why in (
        ("veth", "a veth link is the engine's network, not config.json's"),
        ("tty", "a pseudo-terminal is made by the engine (process.terminal with --console-socket)"),
        ("init", "an init (a reaping pid 1) is the engine's (podman run --init), not config.json's"),
        ("proc_view", "the generated /proc view is nsprim's own"),
        ("auto_id_maps", "pick the id maps first (user_namespace(uid_map, gid_map))"),
    ):
        if getattr(cfg, name):
            raise _refuse(name, why)
    if cfg.network is Network.VETH:
        raise _refuse("network", "a veth link is the engine's network, not config.json's")
    root = cfg.root
    if root is None or root.kind is not RootKind.DIRECTORY or root.path is None:
        kind = "none" if root is None else root.kind.value
        raise _refuse("root", f"a {kind} root has no config.json form: give the root as a directory (rootfs(path))")
    spec = default_spec(args=cfg.argv, terminal=False)
    linux = spec.linux
    process = spec.process
    assert linux is not None and process is not None
    ours = {NAMESPACE_TYPES[k]: k for k in NAMESPACE_TYPES}
    kinds = set(cfg.namespaces) | ({NamespaceType.NET} if cfg.network is Network.NONE else set())
    if cfg.network is Network.HOST:
        kinds.discard(NamespaceType.NET)
    joined = {t: path for t, path in cfg.join}
    namespaces = [
        LinuxNamespace(type=ours[t], path=joined.get(t, "")) for t in NamespaceType if t in kinds | set(joined)
    ]
    security = cfg.security
    if security is None:
        from ..container.build import default_security

        security = default_security()
    process = process.replace(
        args=cfg.argv,
        env=tuple(f"{k}={v}" for k, v in cfg.env),
        cwd=cfg.cwd,
        user=User(uid=cfg.uid, gid=cfg.gid, umask=cfg.umask, additional_gids=cfg.groups),
        rlimits=_rlimits(cfg.rlimits, security),
        **_security(security),
    )
    mounts = [m for m in spec.mounts if cfg.mount_proc or m.destination != "/proc"]
    for m in cfg.mounts:
        mounts.append(_mount(m))
    linux = linux.replace(
        namespaces=tuple(namespaces),
        uid_mappings=_id_mappings(cfg.uid_map),
        gid_mappings=_id_mappings(cfg.gid_map),
        readonly_paths=(*linux.readonly_paths, *cfg.readonly_paths),
        resources=_resources(cfg.resources, linux.resources),
        cgroups_path=f"{cfg.cgroup_parent.rstrip('/')}/{cfg.name or 'nsprim'}" if cfg.cgroup_parent else "",
        seccomp=_seccomp(security),
    )
    return spec.replace(
        process=process,
        root=Root(path=os.path.abspath(root.path), readonly=not root.writable),
        hostname=cfg.hostname or "",
        mounts=tuple(mounts),
        linux=linux,
    )


def write_bundle(config: ContainerConfig, directory: str | os.PathLike[str]) -> Path:
    """Write *config*'s ``config.json`` into *directory* (made if missing); return the directory.

    The root file system stays where it is (``root.path`` is absolute): the
    bundle is the one file, which runc, crun and nsprim-runtime run alike."""
    target = Path(directory)
    target.mkdir(parents=True, exist_ok=True)
    text = spec_of(config).dumps()
    temporary = target / f".config.json.{secrets.token_hex(4)}"
    temporary.write_text(text)
    os.replace(temporary, target / "config.json")
    return target


def _id_mappings(ids: IdMap | None) -> tuple[LinuxIDMapping, ...]:
    if ids is None:
        return ()
    return tuple(LinuxIDMapping(container_id=r.inside, host_id=r.outside, size=r.count) for r in ids.ranges)


def _mount(m: object) -> Mount:
    from ..fs.mount import MountFlags
    from ..fs.rootfs import Bind, Tmpfs

    if isinstance(m, Bind):
        options = ["rbind" if m.recursive else "bind", "ro" if m.readonly else "rw"]
        options += [name for name, on in (("nosuid", m.nosuid), ("nodev", m.nodev), ("noexec", m.noexec)) if on]
        return Mount(destination=m.target, type="bind", source=os.fspath(m.source), options=tuple(options))
    assert isinstance(m, Tmpfs)
    options = [f"mode={m.mode:o}"] + ([f"size={m.size}"] if m.size is not None else [])
    for flag, name in ((MountFlags.NOSUID, "nosuid"), (MountFlags.NODEV, "nodev"), (MountFlags.NOEXEC, "noexec"),
                       (MountFlags.RDONLY, "ro")):  # fmt: skip
        if m.flags & flag:
            options.append(name)
    if m.options:
        options += m.options.split(",")
    return Mount(destination=m.target, type="tmpfs", source="tmpfs", options=tuple(options))


def _rlimits(own: Sequence[object], security: SecurityPolicy) -> tuple[POSIXRlimit, ...]:
    import resource

    names = {getattr(resource, n): n for n in dir(resource) if n.startswith("RLIMIT_")}
    out: list[POSIXRlimit] = []
    limits = [(r.resource, r.soft, r.hard) for r in own] + list(security.rlimits)  # type: ignore[attr-defined]
    for number, soft, hard in limits:
        unlimited = resource.RLIM_INFINITY % (1 << 64)
        out.append(
            POSIXRlimit(type=names[number], soft=unlimited if soft < 0 else soft, hard=unlimited if hard < 0 else hard)
        )
    return tuple(out) or (POSIXRlimit(type="RLIMIT_NOFILE", hard=1024, soft=1024),)


def _security(policy: SecurityPolicy) -> dict[str, object]:
    if policy.dumpable:
        raise _refuse("security.dumpable", "a dumpable process has no config.json form")
    if policy.seccomp_flags:
        raise _refuse("security.seccomp_flags", "give the flags in the seccomp profile instead")
    sets = {k: tuple(v) for k, v in policy.caps.to_oci().items()}
    caps = LinuxCapabilities(
        bounding=sets["bounding"],
        effective=sets["effective"],
        inheritable=sets["inheritable"],
        permitted=sets["permitted"],
        ambient=sets["ambient"],
    )
    return {"capabilities": caps, "no_new_privileges": policy.no_new_privs}


def _seccomp(policy: SecurityPolicy) -> object:
    from ..security.seccomp.parse import profile_to_dict
    from ..security.seccomp.profile import Profile
    from ._codec import decode
    from .spec import LinuxSeccomp

    if policy.seccomp is None:
        return None
    if not isinstance(policy.seccomp, Profile):
        raise _refuse("security.seccomp", "a compiled program has no config.json form: give the Profile")
    return decode(LinuxSeccomp, profile_to_dict(policy.seccomp), "linux.seccomp")


def _resources(res: Resources | None, base: LinuxResources | None) -> LinuxResources | None:
    devices = base.devices if base is not None else ()
    if res is None:
        return LinuxResources(devices=devices) if devices else None

    def limit(value: object) -> int | None:
        return None if value is None else (-1 if value == "max" else int(value))  # type: ignore[call-overload]

    memory = None
    if res.memory is not None:
        m = res.memory
        for name in ("high", "min", "oom_group"):
            if getattr(m, name) is not None:
                raise _refuse(
                    f"resources.memory.{name}", "config.json has no such limit (only in linux.resources.unified)"
                )
        top, swap = limit(m.max), limit(m.swap)
        total = None if swap is None else (-1 if swap < 0 or top is None or top < 0 else top + swap)
        memory = LinuxMemory(limit=top, swap=total, reservation=limit(m.low))
    cpu = None
    if res.cpu is not None or res.cpuset is not None:
        c, s = res.cpu, res.cpuset
        quota = limit(c.quota) if c is not None else None
        cpu = LinuxCPU(
            shares=c.effective_shares if c is not None else None,
            quota=quota,
            period=c.period if c is not None and quota is not None else None,
            idle=None if c is None or c.idle is None else int(c.idle),
            cpus=(s.cpus or "") if s is not None else "",
            mems=(s.mems or "") if s is not None else "",
        )
    pids = None if res.pids is None else LinuxPids(limit=limit(res.pids.max))
    block_io = None
    if res.io is not None:
        from ..cgroup.v1 import io_weight_to_blkio

        def throttle(key: str) -> tuple[LinuxThrottleDevice, ...]:
            return tuple(
                LinuxThrottleDevice(major=d.major, minor=d.minor, rate=int(getattr(d, key)))
                for d in res.io.limits  # type: ignore[union-attr]
                if getattr(d, key) not in (None, "max")
            )

        block_io = LinuxBlockIO(
            weight=None if res.io.weight is None else io_weight_to_blkio(res.io.weight),
            throttle_read_bps_device=throttle("rbps"),
            throttle_write_bps_device=throttle("wbps"),
            throttle_read_iops_device=throttle("riops"),
            throttle_write_iops_device=throttle("wiops"),
        )
    hugepages = tuple(LinuxHugepageLimit(page_size=h.page_size, limit=limit(h.max) or 0) for h in res.hugetlb)
    return LinuxResources(
        devices=devices, memory=memory, cpu=cpu, pids=pids, block_io=block_io, hugepage_limits=hugepages
    )


class Bundle:
    """An OCI bundle on disk, run from Python as ``nsprim-runtime run`` runs it.

    >>> Bundle("/srv/bundles/web").run()  # doctest: +SKIP
    0

    The container's standard streams are this process's; its state lives in a
    private directory for as long as it runs, and everything it made (cgroup,
    state) is removed when it ends.
    """

    def __init__(self, directory: str | os.PathLike[str]) -> None:
        self.directory = Path(directory).absolute()
        self.spec: Spec = Spec.load(self.directory / "config.json")

    def run(self, container_id: str | None = None) -> int:
        """Create, start and wait for the container; return its exit status (128+N for signal N)."""
        from .runtime.cli import Globals
        from .runtime.commands import delete_container
        from .runtime.lifecycle import create_container, start_created
        from .runtime.log import Log

        cid = container_id or f"nsprim-{secrets.token_hex(6)}"
        with tempfile.TemporaryDirectory(prefix="nsprim-bundle-") as state:
            g = Globals(state, Log(None, "text", False), False, "auto", None)
            created = create_container(g, {"bundle": str(self.directory)}, cid)
            try:
                start_created(g, created)
                created.locked.close()
                status = created.proc.wait()
            finally:
                delete_container(g, cid, force=True)  # and, if the wait was interrupted, its processes
        return status if status >= 0 else 128 - status
