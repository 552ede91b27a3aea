"""A small rtnetlink client: the few link, address and route requests a veth pair needs.

A :class:`Rtnl` socket belongs to the network namespace of the thread that
opened it, for its whole life: open one inside
:meth:`Namespace.entered() <nsprim.namespace.Namespace.entered>` to talk to a
container's namespace from the host.  Every failed request raises
:class:`~nsprim.errors.SyscallError` with the kernel's errno and, where the
kernel gives one, its extended-ack message as the hint::

    veth: add address `10.200.0.1/30` to `nsv1a2b3c4d`: File exists (netlink: Address already assigned)
"""

from __future__ import annotations

import errno
import ipaddress
import struct
from collections.abc import Iterator
from types import TracebackType

from .._dataclass import dataclass
from ..errors import SyscallError

__all__ = ["Rtnl", "HostNetwork", "IFNAMSIZ", "ifname_ok"]

IFNAMSIZ = 16  # with the NUL

# The address families, as the kernel numbers them (socket is imported only to open one).
AF_UNSPEC = 0
AF_INET = 2

NETLINK_ROUTE = 0
SOL_NETLINK = 270
NETLINK_CAP_ACK = 10
NETLINK_EXT_ACK = 11

NLMSG_ERROR = 2
NLMSG_DONE = 3
RTM_NEWLINK, RTM_GETLINK = 16, 18
RTM_NEWADDR, RTM_DELADDR, RTM_GETADDR = 20, 21, 22
RTM_NEWROUTE, RTM_GETROUTE = 24, 26

NLM_F_REQUEST = 0x1
NLM_F_MULTI = 0x2
NLM_F_ACK = 0x4
NLM_F_DUMP = 0x300
NLM_F_EXCL = 0x200
NLM_F_CREATE = 0x400
NLM_F_CAPPED = 0x100
NLM_F_ACK_TLVS = 0x200
NLMSGERR_ATTR_MSG = 1

IFLA_IFNAME = 3
IFLA_LINKINFO = 18
IFLA_NET_NS_PID = 19
IFLA_INFO_KIND = 1
IFLA_INFO_DATA = 2
VETH_INFO_PEER = 1
IFF_UP = 0x1

IFA_ADDRESS = 1
IFA_LOCAL = 2
IFA_LABEL = 3

RTA_DST = 1
RTA_OIF = 4
RTA_GATEWAY = 5
RTA_TABLE = 15
RT_TABLE_MAIN = 254
RT_TABLE_LOCAL = 255
RTPROT_BOOT = 3
RT_SCOPE_UNIVERSE = 0
RTN_UNICAST = 1

_NLMSGHDR = struct.Struct("=IHHII")
_IFINFOMSG = struct.Struct("=BxHiII")
_IFADDRMSG = struct.Struct("=BBBBI")
_RTMSG = struct.Struct("=BBBBBBBBI")
_RTATTR = struct.Struct("=HH")


def _align(n: int) -> int:
    return (n + 3) & ~3


def _attr(kind: int, payload: bytes) -> bytes:
    data = _RTATTR.pack(_RTATTR.size + len(payload), kind) + payload
    return data + b"\0" * (_align(len(data)) - len(data))


def _name(text: str) -> bytes:
    return text.encode() + b"\0"


def _attrs(data: bytes) -> Iterator[tuple[int, bytes]]:
    off = 0
    while off + _RTATTR.size <= len(data):
        length, kind = _RTATTR.unpack_from(data, off)
        if length < _RTATTR.size:
            return
        yield kind & 0x3FFF, data[off + _RTATTR.size : off + length]
        off += _align(length)


class _Refused(Exception):
    def __init__(self, err: int, message: str | None) -> None:
        super().__init__(err, message)
        self.err = err
        self.message = message


@dataclass(frozen=True)
class HostNetwork:
    """An IPv4 network in use in a namespace: an address's, or a route's destination."""

    network: ipaddress.IPv4Network
    source: str  # "address 10.0.0.5/24 on eth0", "route 10.8.0.0/16"


class Rtnl:
    """An rtnetlink socket in the calling thread's network namespace.

    *label* starts every error message ("veth: create ...").
    """

    def __init__(self, label: str) -> None:
        import socket  # only here: the module's enums cost a container without veth ~1 ms

        self.label = label
        self._seq = 0
        try:
            self._sock = socket.socket(socket.AF_NETLINK, socket.SOCK_RAW | socket.SOCK_CLOEXEC, NETLINK_ROUTE)
        except OSError as exc:
            raise SyscallError(exc.errno, "socket", detail=f"{label}: open a netlink socket") from None
        try:
            # The kernel's reason in the ack (extack), and the request not echoed back in it.
            for opt in (NETLINK_EXT_ACK, NETLINK_CAP_ACK):
                self._sock.setsockopt(SOL_NETLINK, opt, 1)
            self._sock.settimeout(30.0)  # a local kernel answers at once; never hang for ever
            self._sock.bind((0, 0))
        except OSError as exc:
            self._sock.close()
            raise SyscallError(exc.errno, "socket", detail=f"{label}: set up a netlink socket") from None

    def close(self) -> None:
        """Close the socket."""
        self._sock.close()

    def __enter__(self) -> Rtnl:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    # ---- transport -------------------------------------------------------------------------

    def _request(self, kind: int, flags: int, payload: bytes) -> list[tuple[int, bytes]]:
        """Send one request; return the (type, body) replies up to its ack or the end of a dump."""
        self._seq += 1
        seq = self._seq
        header = _NLMSGHDR.pack(_NLMSGHDR.size + len(payload), kind, flags | NLM_F_REQUEST, seq, 0)
        try:
            self._sock.send(header + payload)
        except OSError as exc:
            raise _Refused(exc.errno or errno.EIO, None) from None
        replies: list[tuple[int, bytes]] = []
        while True:
            try:
                data = self._sock.recv(1 << 16)
            except TimeoutError:
                raise _Refused(errno.ETIMEDOUT, "no answer from the kernel") from None
            except OSError as exc:
                raise _Refused(exc.errno or errno.EIO, None) from None
            off = 0
            while off + _NLMSGHDR.size <= len(data):
                length, mtype, mflags, mseq, _ = _NLMSGHDR.unpack_from(data, off)
                if length < _NLMSGHDR.size:
                    break
                body = data[off + _NLMSGHDR.size : off + length]
                off += _align(length)
                if mseq != seq:
                    continue
                if mtype == NLMSG_ERROR:
                    (code,) = struct.unpack_from("=i", body)
                    if code == 0:
                        return replies
                    raise _Refused(-code, _ack_message(body, mflags))
                if mtype == NLMSG_DONE:
                    code = struct.unpack_from("=i", body)[0] if len(body) >= 4 else 0
                    if code < 0:
                        raise _Refused(-code, None)
                    return replies
                replies.append((mtype, body))

    def _do(
        self, what: str, kind: int, flags: int, payload: bytes, eperm_hint: str | None = None
    ) -> list[tuple[int, bytes]]:
        try:
            return self._request(kind, flags, payload)
        except _Refused as exc:
            reason = f"netlink: {exc.message}" if exc.message else None
            if eperm_hint and exc.err == errno.EPERM:
                reason = f"{reason}; {eperm_hint}" if reason else eperm_hint
            raise SyscallError(exc.err, "netlink", detail=f"{self.label}: {what}", hint=reason) from None

    # ---- links -------------------------------------------------------------------------------

    def create_veth(self, name: str, peer: str, peer_pid: int, *, eperm_hint: str | None = None) -> int:
        """A veth pair: *name* here, up; *peer* (down) in the network namespace of
        process *peer_pid*.  Returns the index of *name*.  *eperm_hint* is added
        to the message when the kernel says ``EPERM``."""
        peer_info = _IFINFOMSG.pack(0, 0, 0, 0, 0) + _attr(IFLA_IFNAME, _name(peer))
        peer_info += _attr(IFLA_NET_NS_PID, struct.pack("=I", peer_pid))
        info = _attr(IFLA_INFO_KIND, b"veth") + _attr(IFLA_INFO_DATA, _attr(VETH_INFO_PEER, peer_info))
        payload = _IFINFOMSG.pack(AF_UNSPEC, 0, 0, IFF_UP, IFF_UP)
        payload += _attr(IFLA_IFNAME, _name(name)) + _attr(IFLA_LINKINFO, info)
        what = f"create `{name}` and its peer `{peer}` in the network namespace of process {peer_pid}"
        self._do(what, RTM_NEWLINK, NLM_F_ACK | NLM_F_CREATE | NLM_F_EXCL, payload, eperm_hint)
        return self.link_index(name)

    def link_index(self, name: str) -> int:
        """The index of the link called *name*."""
        payload = _IFINFOMSG.pack(AF_UNSPEC, 0, 0, 0, 0) + _attr(IFLA_IFNAME, _name(name))
        for mtype, body in self._do(f"look up link `{name}`", RTM_GETLINK, NLM_F_ACK, payload):
            if mtype == RTM_NEWLINK and len(body) >= _IFINFOMSG.size:
                return int(_IFINFOMSG.unpack_from(body)[2])
        raise SyscallError(errno.ENODEV, "netlink", detail=f"{self.label}: look up link `{name}`")

    def set_up(self, index: int, name: str) -> None:
        """Bring link *index* (called *name*, for messages) up."""
        payload = _IFINFOMSG.pack(AF_UNSPEC, 0, index, IFF_UP, IFF_UP)
        self._do(f"bring `{name}` up", RTM_NEWLINK, NLM_F_ACK, payload)

    # ---- addresses and routes ----------------------------------------------------------------

    def add_address(self, index: int, name: str, address: ipaddress.IPv4Interface) -> None:
        """Add *address* (with its prefix) to link *index*."""
        packed = address.ip.packed
        payload = _IFADDRMSG.pack(AF_INET, address.network.prefixlen, 0, RT_SCOPE_UNIVERSE, index)
        payload += _attr(IFA_LOCAL, packed) + _attr(IFA_ADDRESS, packed)
        self._do(f"add address `{address}` to `{name}`", RTM_NEWADDR, NLM_F_ACK | NLM_F_CREATE | NLM_F_EXCL, payload)

    def delete_address(self, index: int, name: str, address: ipaddress.IPv4Interface) -> bool:
        """Remove *address* from link *index* (with its prefix route); False if it is not there."""
        packed = address.ip.packed
        payload = _IFADDRMSG.pack(AF_INET, address.network.prefixlen, 0, RT_SCOPE_UNIVERSE, index)
        payload += _attr(IFA_LOCAL, packed) + _attr(IFA_ADDRESS, packed)
        try:
            self._do(f"remove address `{address}` from `{name}`", RTM_DELADDR, NLM_F_ACK, payload)
        except SyscallError as exc:
            if exc.errno in (errno.EADDRNOTAVAIL, errno.ENODEV):
                return False
            raise
        return True

    def add_default_route(self, index: int, name: str, gateway: ipaddress.IPv4Address) -> None:
        """A default route via *gateway* on link *index*, in the main table."""
        payload = _RTMSG.pack(AF_INET, 0, 0, 0, RT_TABLE_MAIN, RTPROT_BOOT, RT_SCOPE_UNIVERSE, RTN_UNICAST, 0)
        payload += _attr(RTA_GATEWAY, gateway.packed) + _attr(RTA_OIF, struct.pack("=I", index))
        what = f"add the default route via `{gateway}` on `{name}`"
        self._do(what, RTM_NEWROUTE, NLM_F_ACK | NLM_F_CREATE | NLM_F_EXCL, payload)

    def ipv4_in_use(self) -> list[HostNetwork]:
        """Every IPv4 network of this namespace's addresses and unicast routes (not the default route)."""
        out: list[HostNetwork] = []
        dump = _IFADDRMSG.pack(AF_INET, 0, 0, 0, 0)
        for mtype, body in self._do("list addresses", RTM_GETADDR, NLM_F_DUMP, dump):
            if mtype != RTM_NEWADDR or len(body) < _IFADDRMSG.size:
                continue
            family, prefixlen, _, _, index = _IFADDRMSG.unpack_from(body)
            attrs = dict(_attrs(body[_IFADDRMSG.size :]))
            label = attrs.get(IFA_LABEL, b"").rstrip(b"\0").decode(errors="replace") or f"link {index}"
            for kind in (IFA_LOCAL, IFA_ADDRESS):
                raw = attrs.get(kind)
                if family == AF_INET and raw is not None and len(raw) == 4:
                    iface = ipaddress.IPv4Interface((raw, prefixlen))
                    out.append(HostNetwork(iface.network, f"address {iface} on {label}"))
        dump = _RTMSG.pack(AF_INET, 0, 0, 0, 0, 0, 0, 0, 0)
        for mtype, body in self._do("list routes", RTM_GETROUTE, NLM_F_DUMP, dump):
            if mtype != RTM_NEWROUTE or len(body) < _RTMSG.size:
                continue
            family, dst_len, _, _, table, _, _, rtype, _ = _RTMSG.unpack_from(body)
            attrs = dict(_attrs(body[_RTMSG.size :]))
            if RTA_TABLE in attrs and len(attrs[RTA_TABLE]) == 4:
                table = struct.unpack("=I", attrs[RTA_TABLE])[0]
            dst = attrs.get(RTA_DST)
            if family != AF_INET or rtype != RTN_UNICAST or table == RT_TABLE_LOCAL or dst_len == 0:
                continue
            if dst is not None and len(dst) == 4:
                net = ipaddress.IPv4Network((dst, dst_len), strict=False)
                out.append(HostNetwork(net, f"route {net}" + ("" if table == RT_TABLE_MAIN else f" (table {table})")))
        return out


def _ack_message(body: bytes, flags: int) -> str | None:
    """The extended ack's text of an error message's *body* (``struct nlmsgerr`` and TLVs)."""
    if not flags & NLM_F_ACK_TLVS:
        return None
    off = 4 + _NLMSGHDR.size
    if not flags & NLM_F_CAPPED and len(body) >= off:  # the whole request was echoed
        off = 4 + _NLMSGHDR.unpack_from(body, 4)[0]
    for kind, value in _attrs(body[_align(off) :]):
        if kind == NLMSGERR_ATTR_MSG:
            return value.rstrip(b"\0").decode(errors="replace") or None
    return None


def ifname_ok(name: str) -> bool:
    """Whether *name* can be a network interface's name (as the kernel's dev_valid_name)."""
    return (
        0 < len(name.encode()) < IFNAMSIZ
        and name not in (".", "..")
        and not any(c == "/" or c == ":" or c.isspace() for c in name)
    )
