"""A container's configuration: :class:`ContainerConfig`, an immutable, checked value,
and the values it is made of (:class:`RootSpec`, :class:`Rlimit`, :class:`Veth`).

:class:`~nsprim.container.builder.Container` builds one fluently.
"""

from __future__ import annotations

import enum
import ipaddress
import os
from pathlib import Path

from .._dataclass import dataclass, replace
from .._sys.netlink import ifname_ok
from ..cgroup import Resources
from ..checks import check_argv, check_env, check_groups, check_id, check_uts_name
from ..errors import ConfigError
from ..fs.rootfs import Bind, Tmpfs
from ..idmap import IdMap
from ..namespace import NamespaceType

TYPE_CHECKING = False  # (typing itself is not imported)
if TYPE_CHECKING:
    from ..security import SecurityPolicy

__all__ = ["ContainerConfig", "Network", "RootKind", "RootSpec", "Rlimit", "Veth", "check_veth"]

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
        check_veth(self)


class RootKind(enum.Enum):
    """What a container's root file system is made of."""

    # the host's / as a read-only lower layer under a tmpfs upper: writable, every change vanishes
    # (in a user namespace, where overlay refuses a lower layer with locked mounts, / bound read-only)
    HOST = "host"
    DIRECTORY = "directory"  # a directory bound as the root, read-only unless writable
    OVERLAY = "overlay"  # layers, top first, under an upper directory (ephemeral unless one is given)


@dataclass(frozen=True)
class RootSpec:
    """The container's root file system.

    *kind* is a :class:`RootKind` (its value as a string is taken too):
    :attr:`~RootKind.HOST`, :attr:`~RootKind.DIRECTORY` (*path* bound as the
    root, read-only unless *writable*) or :attr:`~RootKind.OVERLAY` (*layers*,
    top first, under an upper directory, ephemeral unless *upper* is given).
    A kind that is neither is a :class:`~nsprim.errors.ConfigError`.
    """

    kind: RootKind
    path: Path | None = None
    writable: bool = False
    layers: tuple[Path, ...] = ()
    upper: Path | None = None

    def __post_init__(self) -> None:
        if not isinstance(self.kind, RootKind):
            try:
                object.__setattr__(self, "kind", RootKind(self.kind))
            except ValueError:
                known = ", ".join(k.value for k in RootKind)
                raise ConfigError(f"root kind {self.kind!r}: not one of {known}", what="root.kind") from None


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
    security: SecurityPolicy | None = None  # None: Docker's defaults less CAP_MKNOD (build.default_security)
    name: str | None = None
    mount_proc: bool = True
    readonly_paths: tuple[str, ...] = ()
    user_name: str | None = None
    # generated /proc/meminfo, /proc/cpuinfo and cpu/online bound over the real ones; see procview.py
    proc_view: bool = False
    proc_view_refresh: float | None = 1.0  # seconds between background refreshes; None: only by hand
    tty: bool = False  # a pseudo-terminal of its own as the payload's controlling terminal and fds 0-2
    tty_size: tuple[int, int] | None = None  # (rows, columns) at start; None: the caller's terminal's
    stop_signal: int = 15  # what stop() sends first (SIGTERM; an image's StopSignal)

    def etc_passwd(self) -> Path:
        """Where the container's ``/etc/passwd`` is, seen from the host."""
        if self.root is None or self.root.kind is RootKind.HOST:
            return Path("/etc/passwd")
        if self.root.kind is RootKind.DIRECTORY and self.root.path is not None:
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
        if self.root is not None and self.root.kind is RootKind.DIRECTORY:
            path = self.root.path
            if path is None or not path.is_dir():
                raise ConfigError(f"root file system `{path}` is not a directory", what="root")
        if self.root is not None and self.root.kind is RootKind.OVERLAY:
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


def _interface(text: str, field: str) -> ipaddress.IPv4Interface:
    if not isinstance(text, str) or "/" not in text:
        raise ConfigError(
            f"veth {field} `{text}`: expected an IPv4 address with its prefix, e.g. 10.1.2.1/30", what=field
        )
    try:
        return ipaddress.IPv4Interface(text)
    except ValueError as exc:
        raise ConfigError(f"veth {field} `{text}`: {exc}", what=field) from None


def check_veth(
    veth: Veth,
) -> tuple[ipaddress.IPv4Interface | None, ipaddress.IPv4Interface | None, ipaddress.IPv4Network]:
    """The given host and container addresses (or ``None``) and the pool of *veth*,
    checked; raises :class:`~nsprim.errors.ConfigError` naming the field."""
    if (veth.host_address is None) != (veth.container_address is None):
        raise ConfigError(
            "veth: give both host_address and container_address, or neither (a free /30 of the pool is then used)",
            what="host_address",
        )
    if not isinstance(veth.container_interface, str) or not ifname_ok(veth.container_interface):
        raise ConfigError(
            f"veth container_interface `{veth.container_interface}`: not an interface name "
            "(1 to 15 bytes, no `/`, `:` or blanks)",
            what="container_interface",
        )
    try:
        pool = ipaddress.IPv4Network(veth.pool) if isinstance(veth.pool, str) else None
    except ValueError as exc:
        raise ConfigError(f"veth pool `{veth.pool}`: {exc}", what="pool") from None
    if pool is None or pool.prefixlen > 30:
        raise ConfigError(f"veth pool `{veth.pool}`: expected an IPv4 network of at least a /30", what="pool")
    if veth.host_address is None or veth.container_address is None:
        return None, None, pool
    host = _interface(veth.host_address, "host_address")
    container = _interface(veth.container_address, "container_address")
    net = host.network
    if container.network != net or host.ip == container.ip or net.prefixlen > 31:
        raise ConfigError(
            f"veth: host_address `{host}` and container_address `{container}` must be two addresses of one network",
            what="container_address",
        )
    if net.prefixlen < 31 and {host.ip, container.ip} & {net.network_address, net.broadcast_address}:
        raise ConfigError(
            f"veth: `{net.network_address}` and `{net.broadcast_address}` are not host addresses of `{net}`",
            what="host_address",
        )
    return host, container, pool
