"""The container's configuration: an immutable value with a fluent builder.

Every builder method returns a new :class:`Container`; the original is never
changed, so a base template can be shared and varied::

    base = Container().host_root().memory("256M").network("none")
    job_a = base.command("python3", "-c", "print(1)")
    job_b = base.command("sh", "-c", "echo 2").pids(64)
"""

from __future__ import annotations

import enum
import math
import os
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..cgroup import CpuResources, MemoryResources, PidsResources, Resources
from ..checks import check_argv, check_env, check_groups, check_id, check_uts_name
from ..errors import ConfigError
from ..fs.rootfs import Bind, Tmpfs
from ..idmap import IdMap
from ..namespace import Namespace, NamespaceType

if TYPE_CHECKING:
    from .running import ContainerResult, RunningContainer
    from .warm import WarmContainer

__all__ = ["Container", "ContainerConfig", "Network", "RootSpec", "Rlimit", "Veth"]

StrPath = str | os.PathLike[str]

DEFAULT_NAMESPACES = frozenset(t for t in NamespaceType if t not in (NamespaceType.TIME, NamespaceType.USER))
MIN_MEMORY = 6 << 20
DEFAULT_ENV = {"PATH": "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin", "TERM": "xterm", "HOME": "/root"}


class Network(enum.Enum):
    """How the container reaches the network."""

    NONE = "none"  # a new network namespace with only a loopback, brought up
    HOST = "host"  # the host's network namespace
    VETH = "veth"  # a new namespace (its loopback up) linked to the host by a veth pair


@dataclass(frozen=True)
class Veth:
    """A veth link between host and container (``--net veth``).

    Without addresses, the container gets a free /30 of *pool* (see
    :mod:`nsprim.container.veth`): the host side has its first address, the
    container its second.  Given addresses (``"10.1.2.1/30"``, both of one
    network) are used as they are, and refused if they overlap a network of
    the host.  Checked when made (:class:`~nsprim.errors.ConfigError`).
    """

    host_address: str | None = None
    container_address: str | None = None
    container_interface: str = "eth0"
    default_route: bool = True
    pool: str = "10.200.0.0/16"

    def __post_init__(self) -> None:
        from .veth import check_veth

        check_veth(self)


@dataclass(frozen=True)
class RootSpec:
    """The container's root file system.

    ``kind`` is ``"host"`` (the host's ``/`` as a read-only lower layer under
    a tmpfs upper: writable, and every change vanishes; in a user namespace,
    where overlay refuses a lower layer with locked mounts, the host's ``/``
    bound read-only), ``"directory"``
    (*path* bound as the root, read-only unless *writable*), or ``"overlay"``
    (*layers*, top first, under an upper directory, ephemeral unless *upper*
    is given).
    """

    kind: str
    path: Path | None = None
    writable: bool = False
    layers: tuple[Path, ...] = ()
    upper: Path | None = None


@dataclass(frozen=True)
class Rlimit:
    """A resource limit (``RLIMIT_*`` number, soft, hard; -1 is unlimited)."""

    resource: int
    soft: int
    hard: int


@dataclass(frozen=True)
class ContainerConfig:
    """Everything that defines a container.  Immutable; build it with :class:`Container`."""

    argv: tuple[str, ...] = ()
    root: RootSpec | None = None
    namespaces: frozenset[NamespaceType] = DEFAULT_NAMESPACES
    join: tuple[tuple[NamespaceType, str], ...] = ()  # (type, path of a namespace file)
    hostname: str | None = None
    uid_map: IdMap | None = None
    gid_map: IdMap | None = None
    auto_id_maps: bool = False  # maps picked at start from /etc/subuid, /etc/subgid (userns.auto_id_maps)
    resources: Resources | None = None
    cgroup_parent: str | None = None
    network: Network = Network.NONE
    veth: Veth | None = None
    mounts: tuple[Bind | Tmpfs, ...] = ()
    env: tuple[tuple[str, str], ...] = tuple(DEFAULT_ENV.items())
    cwd: str = "/"
    uid: int = 0
    gid: int = 0
    groups: tuple[int, ...] = ()
    rlimits: tuple[Rlimit, ...] = ()
    umask: int | None = 0o022
    init: bool = False
    detach: bool = False
    auto_remove: bool = False  # a detached container's state goes when it ends (`run -d --rm`)
    security: Any = None  # a nsprim.security.SecurityPolicy, when that module is present
    name: str | None = None
    mount_proc: bool = True
    readonly_paths: tuple[str, ...] = ()
    user_name: str | None = None
    # generated /proc/meminfo, /proc/cpuinfo and cpu/online bound over the real ones; see procview.py
    proc_view: bool = False
    proc_view_refresh: float | None = 1.0  # seconds between background refreshes; None: only by hand
    tty: bool = False  # a pseudo-terminal of its own as the payload's controlling terminal and fds 0-2
    tty_size: tuple[int, int] | None = None  # (rows, columns) at start; None: the caller's terminal's

    def etc_passwd(self) -> Path:
        """Where the container's ``/etc/passwd`` is, seen from the host."""
        if self.root is None or self.root.kind == "host":
            return Path("/etc/passwd")
        if self.root.kind == "directory" and self.root.path is not None:
            return self.root.path / "etc/passwd"
        for layer in self.root.layers:  # top first: the first that has it wins
            if (layer / "etc/passwd").exists():
                return layer / "etc/passwd"
        return Path("/nonexistent/etc/passwd")

    def resolve_user(self) -> ContainerConfig:
        """Replace a user name by its uid and gid from the container's ``/etc/passwd``."""
        if self.user_name is None:
            return self
        path = self.etc_passwd()
        try:
            lines = path.read_text().splitlines()
        except OSError:
            lines = []
        for line in lines:
            fields = line.split(":")
            if len(fields) >= 4 and fields[0] == self.user_name:
                gid = int(fields[3]) if self.gid < 0 else self.gid
                found = replace(self, uid=int(fields[2]), gid=gid, user_name=None)
                check_id(found.uid, "uid")  # the file's ids are no more trusted than the caller's
                check_id(found.gid, "gid")
                return found
        raise ConfigError(f"unknown user `{self.user_name}`: not in the container's `{path}`", what="user")

    def validate(self) -> None:
        """Check the combination before any system call (raises :class:`ConfigError`)."""
        if not self.argv:
            raise ConfigError("the container has no command: use .command(...) or pass argv", what="argv")
        check_argv(self.argv)
        check_env(self.env)
        if self.user_name is None or self.gid != -1:  # (-1: the gid comes from the container's passwd)
            check_id(self.gid, "gid")
        if self.user_name is None:
            check_id(self.uid, "uid")
        elif "\0" in self.user_name:
            raise ConfigError(f"user `{self.user_name!r}` contains a NUL byte", what="user")
        check_groups(self.groups)
        if self.hostname is not None:
            check_uts_name(self.hostname, "hostname")
        if self.tty and self.detach:
            raise ConfigError("a detached container cannot keep a terminal: no tty with detach", what="tty")
        if "\0" in self.cwd:
            raise ConfigError(f"working directory {self.cwd!r} contains a NUL byte", what="cwd")
        joined = {t for t, _ in self.join}
        both = joined & self.namespaces
        if both:
            names = ", ".join(sorted(t.value for t in both))
            raise ConfigError(f"cannot both create and join a {names} namespace", what="namespaces")
        if self.network is Network.HOST and NamespaceType.NET in self.namespaces:
            raise ConfigError("network `host` conflicts with a new network namespace", what="network")
        if self.network is not Network.HOST and NamespaceType.NET not in self.namespaces | joined:
            raise ConfigError(f"network `{self.network.value}` needs a network namespace", what="network")
        if self.network is Network.VETH and os.geteuid() != 0:
            raise ConfigError(
                "network `veth` needs root: linking the container to the host takes CAP_NET_ADMIN "
                "in the host's network namespace (run as root, or use network `none`: --net none)",
                what="network",
            )
        if self.network is Network.HOST and NamespaceType.USER in self.namespaces and self.root is not None:
            # sysfs may be mounted only by the user namespace that owns the network namespace.
            other = "run as root" if os.geteuid() != 0 else "no user namespace"
            fix = f"use network `none`: --net none, or {other}"
            raise ConfigError(
                "network `host` with a user namespace: its /sys cannot be mounted for the host's "
                f"network namespace ({fix})",
                what="network",
            )
        if (self.uid_map or self.gid_map or self.auto_id_maps) and NamespaceType.USER not in self.namespaces:
            raise ConfigError("id maps need a new user namespace", what="uid_map")
        for kind, idmap in (("uid", self.uid_map), ("gid", self.gid_map)):
            if idmap is not None and idmap.to_outside(0) is None:
                raise ConfigError(
                    f"the {kind} map {idmap.summary()} does not map 0: the container is set up as root of its "
                    f"user namespace, and root must have an id outside (say `0 100000 65536`)",
                    what=f"{kind}_map",
                )
        if (self.root is not None or self.mounts) and NamespaceType.MNT not in self.namespaces:
            raise ConfigError("a root file system or mounts need a new mount namespace", what="root")
        if self.proc_view and NamespaceType.MNT not in self.namespaces:
            raise ConfigError("a /proc view needs a new mount namespace", what="proc_view")
        if self.hostname is not None and NamespaceType.UTS not in self.namespaces:
            raise ConfigError("a hostname needs a new uts namespace", what="hostname")
        if not os.path.isabs(self.cwd):
            raise ConfigError(f"working directory `{self.cwd}` must be absolute", what="cwd")
        for m in self.mounts:
            if isinstance(m, Bind) and not m.source.exists():
                raise ConfigError(f"bind mount source `{m.source}` does not exist", what="mounts")
        if self.root is not None and self.root.kind == "directory":
            path = self.root.path
            if path is None or not path.is_dir():
                raise ConfigError(f"root file system `{path}` is not a directory", what="root")
        if self.root is not None and self.root.kind == "overlay":
            for layer in self.root.layers:
                if not layer.is_dir():
                    raise ConfigError(f"image layer `{layer}` is not a directory", what="root")
        if self.resources is not None:
            check_memory_floor(self.resources)


def check_memory_floor(resources: Resources) -> None:
    """A memory limit below what a container's setup survives is refused (the setup would
    fail for want of memory, or be killed, before the payload ever runs)."""
    if not isinstance(resources, Resources):
        raise ConfigError(f"resources: `{resources!r}` is not a Resources", what="resources")
    limit = resources.memory.max if resources.memory is not None else None
    if isinstance(limit, int) and limit < MIN_MEMORY:
        from ..cgroup import format_size

        raise ConfigError(
            f"memory limit `{format_size(limit)}` is below the {MIN_MEMORY >> 20}M a container needs to start",
            what="memory",
        )


def available_cpus() -> int:
    """How many CPUs this process may run on (its affinity mask: what a cpuset leaves it)."""
    try:
        return len(os.sched_getaffinity(0))
    except OSError:  # pragma: no cover - no affinity call
        return os.cpu_count() or 1


def _size_ok(value: int | str) -> int | str:
    from ..cgroup import parse_size

    parse_size(value)  # raises ConfigError naming the value
    return value


@dataclass(frozen=True)
class Container:
    """A container template: build it fluently, then :meth:`run` or :meth:`start` it.

    >>> box = Container(["echo", "hi"]).host_root().memory("64M")
    >>> box.config.resources.memory.max == 64 * 2**20
    True
    """

    config: ContainerConfig = field(default_factory=ContainerConfig)

    def __init__(self, argv: Sequence[str] | None = None, *, config: ContainerConfig | None = None) -> None:
        base = config if config is not None else ContainerConfig()
        if argv is not None:
            base = replace(base, argv=tuple(os.fspath(a) for a in argv))
        object.__setattr__(self, "config", base)

    def _with(self, **changes: Any) -> Container:
        return Container(config=replace(self.config, **changes))

    # ---- what runs -------------------------------------------------------------

    def command(self, *argv: str) -> Container:
        """The program and its arguments."""
        return self._with(argv=tuple(argv))

    def env(self, values: Mapping[str, str] | None = None, /, *, clear: bool = False, **more: str) -> Container:
        """Set environment variables (on top of a minimal default unless *clear*)."""
        env = {} if clear else dict(self.config.env)
        env.update(values or {})
        env.update(more)
        return self._with(env=tuple(env.items()))

    def cwd(self, path: str) -> Container:
        """The working directory inside the container."""
        return self._with(cwd=path)

    def user(self, uid: int | str, gid: int | None = None, groups: Iterable[int] = ()) -> Container:
        """The user (and group) the command runs as, inside the container.

        A name is looked up in the container's ``/etc/passwd`` when it starts.
        """
        checked = check_groups(groups)
        if gid is not None:
            check_id(gid, "gid")
        if isinstance(uid, str):
            return self._with(user_name=uid, gid=gid if gid is not None else -1, groups=checked)
        check_id(uid, "uid")
        return self._with(uid=uid, gid=uid if gid is None else gid, groups=checked, user_name=None)

    def rlimit(self, resource: int, soft: int, hard: int | None = None) -> Container:
        """Add a resource limit (``resource.RLIMIT_*``)."""
        lim = Rlimit(resource, soft, soft if hard is None else hard)
        return self._with(rlimits=(*self.config.rlimits, lim))

    def umask(self, mask: int | None) -> Container:
        """The file mode creation mask (``None``: inherit)."""
        return self._with(umask=mask)

    def tty(self, enabled: bool = True, *, size: tuple[int, int] | None = None) -> Container:
        """Give the payload a pseudo-terminal of its own, as ``docker run -t`` does.

        The terminal comes from the container's own ``devpts``; it is the
        payload's controlling terminal and its fds 0-2, and the master side is
        :attr:`RunningContainer.terminal <nsprim.container.RunningContainer.terminal>`.
        Its window size starts as *size* (rows, columns), else as this process'
        terminal's.  :meth:`run` relays this process' terminal to it (raw mode,
        window size kept in sync, modes restored on exit); see
        :mod:`nsprim.container.terminal`.
        """
        if size is not None:
            from .terminal import check_size

            size = check_size(size)
        return self._with(tty=enabled, tty_size=size)

    def init(self, enabled: bool = True) -> Container:
        """Run a minimal init as pid 1 that reaps zombies and forwards signals."""
        return self._with(init=enabled)

    def name(self, name: str) -> Container:
        """A name, used for the cgroup and in messages."""
        return self._with(name=name)

    # ---- file system ---------------------------------------------------------

    def host_root(self) -> Container:
        """The host's ``/`` read-only under a tmpfs upper layer: writable, nothing persists."""
        return self._with(root=RootSpec("host"))

    def rootfs(self, path: StrPath, *, writable: bool = False) -> Container:
        """A directory as the root file system (read-only unless *writable*)."""
        return self._with(root=RootSpec("directory", Path(path), writable=writable))

    def image(self, layers: Sequence[StrPath], *, upper: StrPath | None = None) -> Container:
        """Image layers (top first) under an overlay; ephemeral upper unless *upper* is given."""
        return self._with(
            root=RootSpec("overlay", layers=tuple(Path(p) for p in layers), upper=Path(upper) if upper else None)
        )

    def bind(self, source: StrPath, target: StrPath | None = None, *, readonly: bool = True) -> Container:
        """Bind a host path into the container (read-only unless told otherwise)."""
        target_path = os.fspath(target if target is not None else source)
        m = Bind(Path(source), target_path, readonly=readonly, nosuid=True, nodev=True)
        return self._with(mounts=(*self.config.mounts, m))

    def tmpfs(self, target: StrPath, *, size: int | str | None = None, mode: int = 0o1777) -> Container:
        """A tmpfs at *target* (say ``/tmp``), optionally size-limited: bytes, or a
        string with a ``k``, ``m`` or ``g`` suffix (see :func:`nsprim.fs.rootfs.parse_tmpfs_size`)."""
        return self._with(mounts=(*self.config.mounts, Tmpfs(os.fspath(target), size, mode)))

    def proc_view(self, enabled: bool = True, *, refresh: float | None = 1.0) -> Container:
        """Show the container's memory limit and CPUs in ``/proc/meminfo``, ``/proc/cpuinfo``
        and ``/sys/devices/system/cpu/online`` (generated files bound over them, LXCFS-style
        without FUSE; see :mod:`nsprim.container.procview`).  The memory figures are rewritten
        every *refresh* seconds (``None``: only by
        :meth:`~nsprim.container.RunningContainer.refresh_proc_view`).  Needs the container's
        cgroup (root)."""
        if refresh is not None and refresh <= 0:
            raise ConfigError(f"proc_view refresh must be positive, not {refresh}", what="proc_view")
        return self._with(proc_view=enabled, proc_view_refresh=refresh)

    # ---- namespaces ------------------------------------------------------------

    def namespaces(self, *types: NamespaceType | str) -> Container:
        """Exactly these new namespaces (default: all but time and user)."""
        return self._with(namespaces=frozenset(NamespaceType.parse(t) for t in types))

    def join(self, nstype: NamespaceType | str, target: StrPath | int) -> Container:
        """Join an existing namespace — a namespace file path, or a pid — instead of creating one."""
        t = NamespaceType.parse(nstype)
        path = f"/proc/{target}/ns/{t.value}" if isinstance(target, int) else os.fspath(target)
        return self._with(join=(*self.config.join, (t, path)), namespaces=self.config.namespaces - {t})

    def hostname(self, name: str) -> Container:
        """The host name inside (a new uts namespace)."""
        return self._with(hostname=name)

    def user_namespace(
        self, uid_map: IdMap | None = None, gid_map: IdMap | None = None, *, auto: bool = False
    ) -> Container:
        """A new user namespace; without maps, the caller's ids map to root inside.

        *auto*: 65536 ids of the caller's subordinate ranges (``/etc/subuid``,
        ``/etc/subgid``) that no running user namespace uses, picked when the
        container starts (see :func:`nsprim.container.userns.auto_id_maps`).  Root
        inside is then nobody on the host.
        """
        if auto:
            if uid_map is not None or gid_map is not None:
                raise ConfigError("give id maps or auto=True, not both", what="uid_map")
            ns = self.config.namespaces | {NamespaceType.USER}
            return self._with(namespaces=ns, uid_map=None, gid_map=None, auto_id_maps=True)
        if uid_map is None:
            uid_map = IdMap.single(0, os.geteuid())
        if gid_map is None:
            gid_map = IdMap.single(0, os.getegid())
        ns = self.config.namespaces | {NamespaceType.USER}
        return self._with(namespaces=ns, uid_map=uid_map, gid_map=gid_map, auto_id_maps=False)

    def network(self, mode: Network | str, veth: Veth | None = None) -> Container:
        """``"none"`` (loopback only, the default), ``"host"``, or ``"veth"``."""
        net = mode if isinstance(mode, Network) else Network(mode)
        ns = (
            self.config.namespaces - {NamespaceType.NET}
            if net is Network.HOST
            else self.config.namespaces | {NamespaceType.NET}
        )
        return self._with(network=net, namespaces=ns, veth=(veth or Veth()) if net is Network.VETH else None)

    # ---- resources -------------------------------------------------------------

    def resources(self, resources: Resources) -> Container:
        """All cgroup limits at once (replacing any set before); a memory limit is at least 6M, as
        with :meth:`memory`."""
        check_memory_floor(resources)
        return self._with(resources=resources)

    def _res(self) -> Resources:
        return self.config.resources or Resources()

    def memory(self, limit: int | str, *, swap: int | str | None = None) -> Container:
        """A memory limit ("512M"); beyond it the kernel OOM-kills in the container.

        At least 6M, as with Docker: below that not even a shell starts.  At
        most :data:`~nsprim.cgroup.resources.MEMORY_MAX_BYTES`; the kernel
        rounds it down to whole pages.  Without root it needs a delegated
        cgroup (see :doc:`/cgroups`), or the start is refused.
        """
        from ..cgroup import parse_size

        size = parse_size(_size_ok(limit))
        if size < MIN_MEMORY:
            raise ConfigError(
                f"memory limit `{limit}` is below the {MIN_MEMORY >> 20}M a container needs to start", what="memory"
            )
        res = self._res()
        mem = replace(res.memory or MemoryResources(), max=limit, swap=swap if swap is not None else 0)
        return self._with(resources=replace(res, memory=mem))

    def cpus(self, count: float) -> Container:
        """A CPU quota in CPUs (0.5 = half of one CPU): finite, at least 0.01 (the
        kernel's smallest quota) and at most the CPUs this process may use."""
        if isinstance(count, bool) or not isinstance(count, (int, float)) or not math.isfinite(count) or count <= 0:
            raise ConfigError(f"cpus: `{count!r}` must be a positive, finite number of CPUs", what="cpus")
        cpus = available_cpus()
        if count > cpus:
            raise ConfigError(
                f"cpus: `{count:g}` is more than the {cpus} CPU{'s' if cpus > 1 else ''} available here", what="cpus"
            )
        res = self._res()
        # (quota_us is what an earlier cpus() turned into: this count replaces it)
        cpu = replace(res.cpu or CpuResources(), cpus=count, quota_us=None)
        return self._with(resources=replace(res, cpu=cpu))

    def pids(self, limit: int) -> Container:
        """The most processes (and threads) the container may have at once (1 at least)."""
        if isinstance(limit, bool) or not isinstance(limit, int) or limit < 1:
            raise ConfigError(f"pids: `{limit!r}` must be a whole number of processes, at least 1", what="pids")
        return self._with(resources=replace(self._res(), pids=PidsResources(max=limit)))

    def cgroup_parent(self, path: str) -> Container:
        """The cgroup the container's group is created under (default: the roots)."""
        return self._with(cgroup_parent=path)

    # ---- security ----------------------------------------------------------------

    def security(self, policy: Any) -> Container:
        """A :class:`nsprim.security.SecurityPolicy` (default: the secure defaults)."""
        return self._with(security=policy)

    def detach(self, detached: bool = True, *, remove: bool = False) -> Container:
        """Let the container outlive this process: a monitor of its own reaps it,
        records how it ended and removes its cgroup; find it again by name with
        :func:`nsprim.container.find`.  Its state entry stays until it is removed
        (``nsprim rm``), or with *remove* goes as soon as it ends.  See
        :mod:`nsprim.container.registry`."""
        return self._with(detach=detached, auto_remove=remove)

    # ---- running -----------------------------------------------------------------

    def start(self, **stdio: Any) -> RunningContainer:
        """Start the container; return a handle (see :class:`RunningContainer`)."""
        from .running import start_container

        return start_container(self.config, **stdio)

    def run(
        self, *, capture_output: bool = False, input: bytes | None = None, timeout: float | None = None, **stdio: Any
    ) -> ContainerResult:
        """Run to completion and return a :class:`ContainerResult`."""
        from .running import run_container

        return run_container(self.config, capture_output=capture_output, input=input, timeout=timeout, **stdio)

    def warm(self, size: int = 2) -> WarmContainer:
        """This template with *size* network namespaces and cgroups kept ready by a background thread.

        Starts from the returned :class:`~nsprim.container.warm.WarmContainer`
        skip the two costliest parts of a start that do not depend on the
        container (a new network namespace, its cgroup and limits); each
        container still gets its own, fresh ones.  Use it as a context
        manager: on exit what was prepared and not used is removed.
        """
        from .warm import WarmContainer

        return WarmContainer(self.config, size)

    def with_namespace(self, ns: Namespace) -> Container:
        """Join the namespace *ns* is open on (kept alive by the path it came from)."""
        return self.join(ns.type, ns.path)
