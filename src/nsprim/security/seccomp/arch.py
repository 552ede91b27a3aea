"""Architectures a seccomp filter can serve, with their system call tables.

A filter sees ``seccomp_data.arch`` (an ``AUDIT_ARCH_*`` token) and
``seccomp_data.nr``; numbers mean different calls per architecture, so a
filter first checks the token.  Supported: ``x86_64``, ``x86`` (i386, the
32-bit ABI an x86_64 kernel also runs) and ``aarch64``.  The x32 ABI (x86_64
token with bit 30 set in the number) is never allowed.
"""

from __future__ import annotations

import functools
import os
from collections.abc import Mapping
from types import MappingProxyType

from ..._dataclass import dataclass
from ..errors import SeccompProfileError
from . import _table_aarch64, _table_x86, _table_x86_64

__all__ = [
    "Arch",
    "ARCHES",
    "X32_SYSCALL_BIT",
    "native_arch",
    "get_arch",
    "arch_from_scmp",
    "known_syscall",
    "OTHER_ARCH_SYSCALLS",
]

X32_SYSCALL_BIT = 0x40000000


@dataclass(frozen=True)
class Arch:
    """One system call ABI: its name, audit token and number table."""

    name: str
    audit_arch: int
    syscalls: Mapping[str, int]
    scmp_name: str
    go_names: tuple[str, ...]
    #: numbers at or above this are not system calls of this ABI (x32 on x86_64)
    nr_limit: int = 1 << 32

    @functools.cached_property
    def by_number(self) -> Mapping[int, str]:
        """Number -> name."""
        return MappingProxyType({nr: name for name, nr in self.syscalls.items()})

    def number(self, name: str) -> int | None:
        """The number of system call *name* on this ABI, or ``None``."""
        return self.syscalls.get(name)


ARCHES: Mapping[str, Arch] = MappingProxyType(
    {
        "x86_64": Arch(
            "x86_64",
            0xC000003E,
            MappingProxyType(_table_x86_64.SYSCALLS),
            "SCMP_ARCH_X86_64",
            ("amd64", "x86_64"),
            nr_limit=X32_SYSCALL_BIT,
        ),
        "x86": Arch("x86", 0x40000003, MappingProxyType(_table_x86.SYSCALLS), "SCMP_ARCH_X86", ("386", "x86", "i386")),
        "aarch64": Arch(
            "aarch64", 0xC00000B7, MappingProxyType(_table_aarch64.SYSCALLS), "SCMP_ARCH_AARCH64", ("arm64", "aarch64")
        ),
    }
)

# libseccomp architecture names this module knows but cannot filter for.
_UNSUPPORTED_SCMP = frozenset(
    {
        "SCMP_ARCH_X32",
        "SCMP_ARCH_ARM",
        "SCMP_ARCH_MIPS",
        "SCMP_ARCH_MIPS64",
        "SCMP_ARCH_MIPS64N32",
        "SCMP_ARCH_MIPSEL",
        "SCMP_ARCH_MIPSEL64",
        "SCMP_ARCH_MIPSEL64N32",
        "SCMP_ARCH_PPC",
        "SCMP_ARCH_PPC64",
        "SCMP_ARCH_PPC64LE",
        "SCMP_ARCH_S390",
        "SCMP_ARCH_S390X",
        "SCMP_ARCH_PARISC",
        "SCMP_ARCH_PARISC64",
        "SCMP_ARCH_RISCV64",
        "SCMP_ARCH_LOONGARCH64",
        "SCMP_ARCH_M68K",
        "SCMP_ARCH_SH",
        "SCMP_ARCH_SHEB",
    }
)

#: System calls of architectures without a table here (profiles such as
#: Docker's name them; a filter for x86_64 skips them instead of failing).
OTHER_ARCH_SYSCALLS = frozenset(
    {
        "arm_fadvise64_64",
        "arm_sync_file_range",
        "sync_file_range2",
        "breakpoint",
        "cacheflush",
        "set_tls",
        "usr26",
        "usr32",
        "recv",
        "send",
        "s390_pci_mmio_read",
        "s390_pci_mmio_write",
        "s390_runtime_instr",
        "s390_guarded_storage",
        "s390_sthyi",
        "riscv_flush_icache",
        "riscv_hwprobe",
        "swapcontext",
        "spu_run",
        "spu_create",
        "subpage_prot",
        "sys_debug_setcontext",
        "switch_endian",
        "rtas",
        "multiplexer",
        "sysmips",
        "cachectl",
        "atomic_barrier",
        "atomic_cmpxchg_32",
        "kern_features",
        "pciconfig_iobase",
        "pciconfig_read",
        "pciconfig_write",
        "oldumount",
        "timerfd",
        "osf_getsysinfo",
        "get_tls",
        "or1k_atomic",
        "memory_ordering",
        "getpagesize",
        "utrap_install",
        "perfctr",
        "getdomainname",
        "sgetmask",
        "ssetmask",
    }
)


@functools.cache
def _all_names() -> frozenset[str]:
    names: set[str] = set(OTHER_ARCH_SYSCALLS)
    for arch in ARCHES.values():
        names.update(arch.syscalls)
    return frozenset(names)


def known_syscall(name: str) -> bool:
    """Whether *name* is a system call of some architecture nsprim knows."""
    return isinstance(name, str) and name in _all_names()


def native_arch() -> Arch:
    """The architecture of this machine's kernel."""
    machine = os.uname().machine
    aliases = {"amd64": "x86_64", "arm64": "aarch64", "i386": "x86", "i686": "x86"}
    name = aliases.get(machine, machine)
    if name not in ARCHES:  # pragma: no cover - other machines
        raise SeccompProfileError("", f"no system call table for this machine ({machine})")
    return ARCHES[name]


def get_arch(name: str | Arch) -> Arch:
    """An :class:`Arch` by nsprim name (``x86_64``), libseccomp name or Go name."""
    if isinstance(name, Arch):
        return name
    if not isinstance(name, str):
        raise SeccompProfileError("", f"unknown architecture `{name!r:.40}`")
    key = name.strip()
    if key in ARCHES:
        return ARCHES[key]
    for arch in ARCHES.values():
        if key.upper() == arch.scmp_name or key.lower() in arch.go_names:
            return arch
    raise SeccompProfileError("", f"unknown architecture `{name}`")


def arch_from_scmp(name: str, where: str) -> Arch | None:
    """Map a libseccomp ``SCMP_ARCH_*`` name; ``None`` for a known but unsupported one."""
    if not isinstance(name, str):
        raise SeccompProfileError(where, f"unknown architecture `{name!r:.40}`")
    key = name.strip().upper()
    for arch in ARCHES.values():
        if key == arch.scmp_name:
            return arch
    if key in _UNSUPPORTED_SCMP:
        return None
    raise SeccompProfileError(where, f"unknown architecture `{name}`")
