"""Linux capabilities: names, sets, and the five sets of a process.

A process has five capability sets (capabilities(7)):

* **bounding** — the ceiling: no ``exec`` can ever give more;
* **permitted** — what it may make effective;
* **effective** — what the kernel checks now;
* **inheritable** — what may pass to a program with matching file capabilities;
* **ambient** — what passes to any non-setuid program (a non-root user's way
  to keep capabilities across ``exec``).

:class:`Capabilities` holds all five and is applied by
:class:`~nsprim.security.steps.SetCapabilities`.  The default,
:meth:`Capabilities.docker_default`, is Docker's: fourteen capabilities in
bounding, effective and permitted, nothing inheritable or ambient — so that a
later ``exec`` of a file with inheritable file capabilities gains nothing
(the class of CVE-2022-29162)::

    >>> from nsprim.security import Capabilities, Capability
    >>> caps = Capabilities.docker_default().drop("net_raw").add("CAP_SYS_PTRACE")
    >>> Capability.SYS_PTRACE in caps.effective, Capability.NET_RAW in caps.bounding
    (True, False)
"""

from __future__ import annotations

import enum
import functools
import re
from collections.abc import Iterable, Iterator, Mapping

from .._dataclass import dataclass, field, replace
from .errors import SecurityConfigError, UnknownCapabilityError

__all__ = ["Capability", "CapabilitySet", "Capabilities", "CapNames", "last_cap", "DOCKER_DEFAULT_CAPS"]


class Capability(enum.IntEnum):
    """The kernel's capability numbers (``linux/capability.h``)."""

    CHOWN = 0
    DAC_OVERRIDE = 1
    DAC_READ_SEARCH = 2
    FOWNER = 3
    FSETID = 4
    KILL = 5
    SETGID = 6
    SETUID = 7
    SETPCAP = 8
    LINUX_IMMUTABLE = 9
    NET_BIND_SERVICE = 10
    NET_BROADCAST = 11
    NET_ADMIN = 12
    NET_RAW = 13
    IPC_LOCK = 14
    IPC_OWNER = 15
    SYS_MODULE = 16
    SYS_RAWIO = 17
    SYS_CHROOT = 18
    SYS_PTRACE = 19
    SYS_PACCT = 20
    SYS_ADMIN = 21
    SYS_BOOT = 22
    SYS_NICE = 23
    SYS_RESOURCE = 24
    SYS_TIME = 25
    SYS_TTY_CONFIG = 26
    MKNOD = 27
    LEASE = 28
    AUDIT_WRITE = 29
    AUDIT_CONTROL = 30
    SETFCAP = 31
    MAC_OVERRIDE = 32
    MAC_ADMIN = 33
    SYSLOG = 34
    WAKE_ALARM = 35
    BLOCK_SUSPEND = 36
    AUDIT_READ = 37
    PERFMON = 38
    BPF = 39
    CHECKPOINT_RESTORE = 40

    @property
    def cap_name(self) -> str:
        """The kernel's spelling: ``CAP_SYS_ADMIN``."""
        return f"CAP_{self.name}"

    @classmethod
    def parse(cls, name: str | int | Capability, *, where: str | None = None) -> Capability:
        """``"sys_admin"``, ``"CAP_SYS_ADMIN"``, ``21`` -> :attr:`SYS_ADMIN`.

        Raises :class:`~nsprim.security.errors.UnknownCapabilityError`.
        """
        if isinstance(name, Capability):
            return name
        if isinstance(name, int) and not isinstance(name, bool):
            try:
                return cls(name)
            except ValueError:
                raise UnknownCapabilityError(str(name), where=where) from None
        if not isinstance(name, str):
            raise UnknownCapabilityError(repr(name), where=where)
        key = name.strip().upper()
        if key.startswith("CAP_"):
            key = key[4:]
        try:
            return cls[key]
        except KeyError:
            raise UnknownCapabilityError(name, where=where) from None


CapNames = str | int | Capability


@functools.cache
def last_cap() -> int:
    """The highest capability this kernel knows (``/proc/sys/kernel/cap_last_cap``)."""
    try:
        with open("/proc/sys/kernel/cap_last_cap") as f:
            return int(f.read())
    except (OSError, ValueError):  # pragma: no cover - no /proc
        return max(Capability)


_HEX_MASK = re.compile(r"[0-9a-fA-F]{1,16}")


def _mask_all() -> int:
    return (1 << (last_cap() + 1)) - 1


@dataclass(frozen=True)
class CapabilitySet:
    """An immutable set of capabilities, stored as the kernel's 64-bit mask."""

    mask: int = 0

    def __post_init__(self) -> None:
        if isinstance(self.mask, bool) or not isinstance(self.mask, int):
            kind = type(self.mask).__name__
            raise SecurityConfigError(f"capability mask: expected an integer, got {kind}", what="mask")
        if not 0 <= self.mask < 1 << 64:
            raise SecurityConfigError(f"capability mask out of the 64-bit range: {self.mask:#x}", what="mask")

    @classmethod
    def of(cls, *names: CapNames | Iterable[CapNames], where: str | None = None) -> CapabilitySet:
        """A set from names (any case, with or without ``CAP_``), numbers, or
        iterables of them; ``"ALL"`` means every capability of this kernel."""
        mask = 0
        for item in names:
            if isinstance(item, (str, int)):
                items: Iterable[CapNames] = [item]
            elif isinstance(item, Iterable) and not isinstance(item, (bytes, bytearray, Mapping)):
                items = item
            else:  # None, a float, bytes (whose items would read as numbers)
                raise UnknownCapabilityError(repr(item), where=where)
            for name in items:
                if isinstance(name, str) and name.strip().upper() in ("ALL", "CAP_ALL"):
                    mask |= _mask_all()
                else:
                    mask |= 1 << Capability.parse(name, where=where)
        return cls(mask)

    @classmethod
    def all(cls) -> CapabilitySet:
        """Every capability up to this kernel's last one."""
        return cls(_mask_all())

    @classmethod
    def from_hex(cls, text: str) -> CapabilitySet:
        """Parse a ``/proc/<pid>/status`` value such as ``00000000a80425fb``.

        One to sixteen hexadecimal digits (surrounding blanks allowed);
        anything else raises :class:`~nsprim.security.errors.SecurityConfigError`.
        """
        blanks = " \t\n\r\f\v"  # ASCII only: str.strip() would also take \x1c-\x1f, which int() refuses
        if not isinstance(text, str) or _HEX_MASK.fullmatch(text.strip(blanks)) is None:
            shown = text if isinstance(text, str) else type(text).__name__
            raise SecurityConfigError(
                f"capability mask `{shown!s:.40}`: expected 1 to 16 hexadecimal digits", what="mask"
            )
        return cls(int(text.strip(blanks), 16))

    def __iter__(self) -> Iterator[Capability]:
        for bit in range(64):
            if self.mask >> bit & 1:
                try:
                    yield Capability(bit)
                except ValueError:  # a capability newer than this module
                    continue

    def __len__(self) -> int:
        return self.mask.bit_count()

    def __bool__(self) -> bool:
        return self.mask != 0

    def __contains__(self, cap: object) -> bool:
        if isinstance(cap, (str, int)):
            try:
                cap = Capability.parse(cap)
            except UnknownCapabilityError:
                return False
        return isinstance(cap, int) and bool(self.mask >> int(cap) & 1)

    def __or__(self, other: CapabilitySet) -> CapabilitySet:
        return CapabilitySet(self.mask | other.mask)

    def __and__(self, other: CapabilitySet) -> CapabilitySet:
        return CapabilitySet(self.mask & other.mask)

    def __sub__(self, other: CapabilitySet) -> CapabilitySet:
        return CapabilitySet(self.mask & ~other.mask)

    def names(self) -> list[str]:
        """The ``CAP_*`` names, in kernel order."""
        return [c.cap_name for c in self]

    def words(self) -> tuple[int, int]:
        """The low and high 32-bit words, as C ``int`` values (two's complement)."""
        lo, hi = self.mask & 0xFFFFFFFF, self.mask >> 32
        return (lo - (1 << 32) if lo >= 1 << 31 else lo, hi - (1 << 32) if hi >= 1 << 31 else hi)

    def __repr__(self) -> str:
        return f"CapabilitySet({', '.join(self.names()) or 'empty'})"


#: Docker's default capabilities (moby ``oci/caps/defaults.go``).
DOCKER_DEFAULT_CAPS = CapabilitySet.of(
    Capability.CHOWN,
    Capability.DAC_OVERRIDE,
    Capability.FSETID,
    Capability.FOWNER,
    Capability.MKNOD,
    Capability.NET_RAW,
    Capability.SETGID,
    Capability.SETUID,
    Capability.SETFCAP,
    Capability.SETPCAP,
    Capability.NET_BIND_SERVICE,
    Capability.SYS_CHROOT,
    Capability.KILL,
    Capability.AUDIT_WRITE,
)


@dataclass(frozen=True)
class Capabilities:
    """The five capability sets a payload starts with.

    Build one from a preset (:meth:`docker_default`, :meth:`none`,
    :meth:`all`) and adjust it with :meth:`add`, :meth:`drop` and
    :meth:`with_ambient`; every method returns a new value.
    """

    bounding: CapabilitySet = field(default_factory=CapabilitySet)
    effective: CapabilitySet = field(default_factory=CapabilitySet)
    permitted: CapabilitySet = field(default_factory=CapabilitySet)
    inheritable: CapabilitySet = field(default_factory=CapabilitySet)
    ambient: CapabilitySet = field(default_factory=CapabilitySet)

    # ---- presets ---------------------------------------------------------------

    @classmethod
    def of(cls, *names: CapNames | Iterable[CapNames]) -> Capabilities:
        """Bounding, effective and permitted = *names*; nothing inheritable or ambient."""
        s = CapabilitySet.of(*names)
        return cls(s, s, s, CapabilitySet(), CapabilitySet())

    @classmethod
    def docker_default(cls) -> Capabilities:
        """Docker's fourteen default capabilities (see :data:`DOCKER_DEFAULT_CAPS`)."""
        return cls.of(DOCKER_DEFAULT_CAPS)

    @classmethod
    def none(cls) -> Capabilities:
        """No capability in any set (even for root inside)."""
        return cls()

    @classmethod
    def all(cls) -> Capabilities:
        """Every capability of this kernel (what ``--privileged`` gives), none inheritable."""
        return cls.of(CapabilitySet.all())

    @classmethod
    def from_status(cls, text: str) -> Capabilities:
        """Read the five sets from the text of ``/proc/<pid>/status``."""
        values: dict[str, CapabilitySet] = {}
        for line in text.splitlines():
            key, _, value = line.partition(":")
            if key in ("CapBnd", "CapEff", "CapPrm", "CapInh", "CapAmb"):
                values[key] = CapabilitySet.from_hex(value.strip())
        return cls(
            values.get("CapBnd", CapabilitySet()),
            values.get("CapEff", CapabilitySet()),
            values.get("CapPrm", CapabilitySet()),
            values.get("CapInh", CapabilitySet()),
            values.get("CapAmb", CapabilitySet()),
        )

    @classmethod
    def from_oci(cls, caps: Mapping[str, object], where: str = "process.capabilities") -> Capabilities:
        """From the OCI runtime-spec's ``process.capabilities`` object (lists of ``CAP_*`` names)."""
        if not isinstance(caps, Mapping):
            raise SecurityConfigError(f"{where}: expected an object", what=where)
        sets: dict[str, CapabilitySet] = {}
        for key in ("bounding", "effective", "permitted", "inheritable", "ambient"):
            names = caps.get(key) or []
            if not isinstance(names, list):
                raise SecurityConfigError(f"{where}.{key}: expected a list of capability names", what=f"{where}.{key}")
            mask = 0
            for i, name in enumerate(names):
                if not isinstance(name, str):
                    raise UnknownCapabilityError(repr(name), where=f"{where}.{key}[{i}]")
                mask |= 1 << Capability.parse(name, where=f"{where}.{key}[{i}]")
            sets[key] = CapabilitySet(mask)
        return cls(**sets)

    def to_oci(self) -> dict[str, list[str]]:
        """The OCI runtime-spec's ``process.capabilities`` object."""
        return {
            "bounding": self.bounding.names(),
            "effective": self.effective.names(),
            "permitted": self.permitted.names(),
            "inheritable": self.inheritable.names(),
            "ambient": self.ambient.names(),
        }

    # ---- changes ---------------------------------------------------------------

    def add(self, *names: CapNames | Iterable[CapNames]) -> Capabilities:
        """Add to bounding, effective and permitted (``docker run --cap-add``)."""
        s = CapabilitySet.of(*names)
        return replace(self, bounding=self.bounding | s, effective=self.effective | s, permitted=self.permitted | s)

    def drop(self, *names: CapNames | Iterable[CapNames]) -> Capabilities:
        """Remove from all five sets (``docker run --cap-drop``; ``"ALL"`` drops everything)."""
        s = CapabilitySet.of(*names)
        return Capabilities(
            self.bounding - s, self.effective - s, self.permitted - s, self.inheritable - s, self.ambient - s
        )

    def with_ambient(self, *names: CapNames | Iterable[CapNames]) -> Capabilities:
        """Keep *names* across ``exec`` for a non-root user: ambient, and so
        also inheritable, permitted, effective and bounding."""
        s = CapabilitySet.of(*names)
        return Capabilities(
            self.bounding | s, self.effective | s, self.permitted | s, self.inheritable | s, self.ambient | s
        )

    def for_user(self, uid: int) -> Capabilities:
        """The sets a payload running as *uid* gets, as Docker computes them.

        Root keeps the sets as they are.  Any other user starts with empty
        effective and permitted sets unless ambient capabilities were asked
        for (the kernel would give a non-root user nothing across ``exec``
        anyway, except ambient ones).
        """
        if uid == 0:
            return self
        keep = self.ambient & self.bounding
        return Capabilities(self.bounding, keep, keep, self.inheritable, keep)

    def clamped(self) -> Capabilities:
        """Without capabilities this kernel does not know (above ``cap_last_cap``)."""
        m = CapabilitySet.all()
        return Capabilities(
            self.bounding & m, self.effective & m, self.permitted & m, self.inheritable & m, self.ambient & m
        )

    # ---- checks and encoding -----------------------------------------------------

    def is_consistent(self) -> bool:
        """Whether the sets obey the kernel's rules (E ⊆ P ⊆ B, A ⊆ P ∩ I)."""
        return (
            self.effective.mask & ~self.permitted.mask == 0
            and self.permitted.mask & ~self.bounding.mask == 0
            and self.ambient.mask & ~(self.permitted.mask & self.inheritable.mask) == 0
        )

    def to_ints(self) -> tuple[int, ...]:
        """The ten C ``int`` words of ``NSP_STEP_CAPS``: lo, hi of B, E, P, I, A."""
        out: list[int] = []
        for s in (self.bounding, self.effective, self.permitted, self.inheritable, self.ambient):
            out.extend(s.words())
        return tuple(out)

    def describe(self) -> str:
        """A short text: the bounding set's names (or ``none``)."""
        names = [n.removeprefix("CAP_").lower() for n in self.bounding.names()]
        return ", ".join(names) if names else "none"
