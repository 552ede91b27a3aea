"""A compiled seccomp filter: the ``struct sock_filter`` array ``seccomp(2)`` loads.

Apart from the compiler (:mod:`.bpf`) so that a program read back from a
cache, or from libseccomp's export, is loaded without importing the
compiler, the profile model or the system call tables.
"""

from __future__ import annotations

import functools
import struct
from collections.abc import Iterator, Sequence
from typing import NamedTuple

from ..._dataclass import dataclass
from ..errors import BPFError
from .interp import BPF_MAXINSNS, check_program, run_seccomp

__all__ = ["Insn", "Program", "BPF_MAXINSNS"]

# classic BPF opcodes used by seccomp filters
LD_W_ABS = 0x20
ALU_AND_K = 0x54
JMP_JA = 0x05
JMP_JEQ_K = 0x15
JMP_JGT_K = 0x25
JMP_JGE_K = 0x35
RET_K = 0x06

OFF_NR = 0
NR_SKIP = 0xFFFFFFFF  # nr -1
OFF_ARCH = 4
OFF_ARGS = 16


class Insn(NamedTuple):
    """One ``struct sock_filter``."""

    code: int
    jt: int
    jf: int
    k: int


@dataclass(frozen=True)
class Program:
    """A compiled filter: ``struct sock_filter[]`` ready for ``seccomp(2)``."""

    insns: tuple[Insn, ...]

    def __post_init__(self) -> None:
        # Fields too wide for struct sock_filter would fail only when packed, in a child's plan.
        object.__setattr__(self, "insns", tuple(Insn(*i) for i in check_program(self.insns)))

    def __len__(self) -> int:
        return len(self.insns)

    def __iter__(self) -> Iterator[Insn]:
        return iter(self.insns)

    def to_bytes(self) -> bytes:
        """The native ``struct sock_filter`` array (computed once)."""
        return self._bytes

    @functools.cached_property
    def _bytes(self) -> bytes:
        packer = struct.Struct("=HBBI")
        buf = bytearray(packer.size * len(self.insns))
        for n, i in enumerate(self.insns):
            packer.pack_into(buf, n * packer.size, i.code, i.jt, i.jf, i.k)
        return bytes(buf)

    @classmethod
    def from_bytes(cls, data: bytes) -> Program:
        """Parse a ``struct sock_filter`` array (e.g. from ``seccomp_export_bpf``)."""
        if not isinstance(data, (bytes, bytearray, memoryview)) or len(data) % 8:
            raise BPFError("a BPF program is bytes, a multiple of 8 of them")
        return cls(tuple(Insn(*struct.unpack_from("=HBBI", data, off)) for off in range(0, len(data), 8)))

    def run(self, arch: int, nr: int, args: Sequence[int] = (0,) * 6, ip: int = 0) -> int:
        """Run the program on one call in the Python interpreter (:mod:`.interp`)."""
        return run_seccomp(self, arch, nr, args, ip)

    def disassemble(self) -> str:
        """A readable listing, one instruction per line."""
        names = {LD_W_ABS: "ld", ALU_AND_K: "and", JMP_JA: "ja", JMP_JEQ_K: "jeq", JMP_JGT_K: "jgt"}
        names.update({JMP_JGE_K: "jge", RET_K: "ret"})
        lines = []
        for pc, i in enumerate(self.insns):
            op = names.get(i.code, f"op{i.code:#x}")
            if i.code in (JMP_JEQ_K, JMP_JGT_K, JMP_JGE_K):
                lines.append(f"{pc:4}: {op} {i.k:#x} ? {pc + 1 + i.jt} : {pc + 1 + i.jf}")
            elif i.code == JMP_JA:
                lines.append(f"{pc:4}: ja {pc + 1 + i.k}")
            else:
                lines.append(f"{pc:4}: {op} {i.k:#x}")
        return "\n".join(lines)
