"""The veth link of a ``network("veth")`` container: its addresses, their allocation, setup and removal.

Each container gets a /30 of :attr:`Veth.pool <nsprim.container.Veth.pool>`
(``10.200.0.0/16`` unless told otherwise: 16,384 containers at once): the
first address is the host side's, the second the container's, and the
container's default route goes through the host side.  A /30 is free when it
overlaps no address and no route of the host's network namespace (the
default route aside).  Choosing one and giving the host side its address
happen under an exclusive lock of ``<state dir>/veth.lock``, so containers
started at the same time — from threads or from processes sharing the state
directory — never choose the same one.  When the container ends, the host
side's address is removed, which frees the /30 at once; the pair goes with the
container's network namespace (the kernel frees it in the background), also
when the creating process dies first.

Everything is done over rtnetlink (:mod:`nsprim._sys.netlink`), by the parent
while the child waits: no ``ip`` command is needed, and a failure names the
request and the kernel's own errno and reason.
"""

from __future__ import annotations

import fcntl
import ipaddress
import os
import threading
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path

from .._sys.netlink import HostNetwork, Rtnl
from ..errors import ConfigError, SyscallError
from ..namespace import Namespace
from .config import Veth, check_veth

__all__ = ["DEFAULT_POOL", "VethLink", "free_subnet"]

#: Where the /30 of a container comes from unless :class:`~nsprim.container.Veth` says otherwise.
DEFAULT_POOL = "10.200.0.0/16"
LOCK_NAME = "veth.lock"

_NOT_PERMITTED = (
    "linking a container to the host takes CAP_NET_ADMIN in the host's network namespace: "
    "run as root, or use network `none`"
)


def free_subnet(pool: ipaddress.IPv4Network, used: Sequence[HostNetwork]) -> ipaddress.IPv4Network | None:
    """The first /30 of *pool* that overlaps none of *used*, or ``None``."""
    base, count = int(pool.network_address), pool.num_addresses // 4
    blocked: list[tuple[int, int]] = []  # ranges of /30 numbers, inclusive
    for entry in used:
        lo, hi = int(entry.network.network_address), int(entry.network.broadcast_address)
        if hi < base or lo >= base + 4 * count:
            continue
        blocked.append(((max(lo, base) - base) // 4, (min(hi, base + 4 * count - 1) - base) // 4))
    candidate = 0
    for lo, hi in sorted(blocked):
        if lo > candidate:
            break
        candidate = max(candidate, hi + 1)
    if candidate >= count:
        return None
    return ipaddress.IPv4Network((base + 4 * candidate, 30))


# Threads of this process exclude each other with this lock, processes with a POSIX
# record lock on the file.  Not flock(2): a lock of an open file description stays held
# by every child cloned meanwhile (until its exec), and a child waiting for this very
# allocation would then keep it for ever.
_THREADS = threading.Lock()


@contextmanager
def _locked(path: Path) -> Iterator[None]:
    with _THREADS:
        try:
            path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
            fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
        except OSError as exc:
            raise SyscallError(exc.errno, "open", path, hint="set NSPRIM_STATE_DIR to a writable place") from None
        try:
            fcntl.lockf(fd, fcntl.LOCK_EX)
            yield
        finally:
            os.close(fd)  # (releases the lock)


class VethLink:
    """One container's veth pair: made by :meth:`link` (its parent action) while
    the child waits; :meth:`remove` frees its /30 when the container ended.

    :attr:`host_address` and :attr:`container_address` are the addresses in
    use once linked (``None`` before).
    """

    def __init__(self, veth: Veth, state: Path) -> None:
        self.config = veth
        self.lock_path = state / LOCK_NAME
        self.host_interface = f"nsv{os.urandom(4).hex()}"
        self.container_interface = veth.container_interface
        self.host_address: ipaddress.IPv4Interface | None = None
        self.container_address: ipaddress.IPv4Interface | None = None
        self._host: Rtnl | None = None  # the host's namespace, for removal: open while the pair exists
        self._created = False
        self._index = 0

    def _choose(self, used: Sequence[HostNetwork]) -> tuple[ipaddress.IPv4Interface, ipaddress.IPv4Interface]:
        host, container, pool = check_veth(self.config)
        if host is not None and container is not None:
            for entry in used:
                if entry.network.overlaps(host.network):
                    raise ConfigError(
                        f"veth host_address `{host}`: its network overlaps the host's {entry.source}: "
                        "choose another, or leave the addresses to the pool",
                        what="host_address",
                    )
            return host, container
        subnet = free_subnet(pool, used)
        if subnet is None:
            raise ConfigError(
                f"veth: no free /30 left in the pool `{pool}` of this host's network namespace: "
                "end some containers, or give another with Veth(pool=...)",
                what="pool",
            )
        first = subnet.network_address
        return ipaddress.IPv4Interface((first + 1, 30)), ipaddress.IPv4Interface((first + 2, 30))

    def link(self, pid: int) -> None:
        """Create the pair with its peer in the network namespace of process *pid*
        (the waiting child), and configure both sides."""
        host = Rtnl("veth")
        self._host = host
        with _locked(self.lock_path):
            host_addr, cont_addr = self._choose(host.ipv4_in_use())
            index = host.create_veth(
                self.host_interface,
                self.container_interface,
                pid,
                eperm_hint=_NOT_PERMITTED,
            )
            self._created, self._index = True, index
            # While the lock is held: from here on the host's address marks the /30 as used.
            host.add_address(index, self.host_interface, host_addr)
            self.host_address, self.container_address = host_addr, cont_addr
        with Namespace.from_path(f"/proc/{pid}/ns/net", "net") as net, net.entered():
            inner = Rtnl("veth, in the container")  # bound to the container's namespace for good
        with inner:
            name = self.container_interface
            peer = inner.link_index(name)
            inner.add_address(peer, name, cont_addr)
            inner.set_up(peer, name)
            if self.config.default_route:
                inner.add_default_route(peer, name, host_addr.ip)

    def remove(self, *, keep_address: bool = False) -> None:
        """Free the container's /30: remove the host side's address (and so its route).

        The pair itself goes with the container's network namespace, which the
        kernel frees in the background once the container ended: deleting it
        here would wait out RCU grace periods (about 30 ms measured here,
        ten times the rest of the link's cost) for nothing the caller needs.
        With *keep_address* (a detached container, which goes on running) only
        this handle's socket is closed: the /30 is free once the pair is gone.
        """
        host, self._host = self._host, None
        if host is None:
            return
        with host:
            if keep_address:
                return
            if self._created and self.host_address is not None:  # (a name taken by someone else is not ours)
                self._created = False
                host.delete_address(self._index, self.host_interface, self.host_address)

    def __repr__(self) -> str:
        return f"<VethLink {self.host_interface} {self.host_address} <-> {self.container_address}>"
