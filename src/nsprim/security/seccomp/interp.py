"""A classic-BPF interpreter for seccomp programs, to check compiled filters in Python.

It implements what the kernel's seccomp checker admits (loads from
``struct seccomp_data``, the scratch memory, ALU and jumps) and refuses
anything else, including backward or out-of-range jumps.
"""

from __future__ import annotations

import struct
from collections.abc import Iterable, Sequence

from ..errors import BPFError

__all__ = ["BPFError", "seccomp_data", "run", "run_seccomp"]

U32 = 0xFFFFFFFF
BPF_MAXINSNS = 4096
BPF_MEMWORDS = 16


def seccomp_data(arch: int, nr: int, args: Sequence[int] = (0,) * 6, ip: int = 0) -> bytes:
    """Pack ``struct seccomp_data`` (native byte order)."""
    if len(args) > 6:
        raise BPFError(f"a system call has 6 arguments, not {len(args)}")
    a = [int(x) & 0xFFFFFFFFFFFFFFFF for x in args] + [0] * (6 - len(args))
    return struct.pack("=IIQ6Q", nr & U32, arch & U32, ip & 0xFFFFFFFFFFFFFFFF, *a[:6])


def check_program(
    insns: Iterable[tuple[int, int, int, int]], max_len: int | None = None
) -> list[tuple[int, int, int, int]]:
    """The instructions as ``(code, jt, jf, k)`` of the kernel's field widths, at most *max_len*."""
    prog: list[tuple[int, int, int, int]] = []
    for pc, insn in enumerate(insns):
        fields = tuple(insn) if isinstance(insn, (tuple, list)) else ()
        widths = (0xFFFF, 0xFF, 0xFF, U32)
        if len(fields) != 4 or not all(
            isinstance(v, int) and not isinstance(v, bool) and 0 <= v <= top
            for v, top in zip(fields, widths, strict=True)
        ):
            raise BPFError(f"instruction {pc} is not (code, jt, jf, k) of 16, 8, 8 and 32 bits: {insn!r:.60}")
        prog.append((fields[0], fields[1], fields[2], fields[3]))
        if max_len is not None and len(prog) > max_len:
            raise BPFError(f"more than {max_len} instructions")
    return prog


def run(
    insns: Iterable[tuple[int, int, int, int]], data: bytes, max_steps: int = 1 << 16, trace: list[int] | None = None
) -> int:
    """Run a program on *data*; return the value of its ``ret``.  *trace* collects the executed pcs."""
    prog: Sequence[tuple[int, int, int, int]] = check_program(insns, BPF_MAXINSNS)
    if not prog:
        raise BPFError("empty program")
    a = x = 0
    mem = [0] * BPF_MEMWORDS
    pc = 0
    for _ in range(max_steps):
        if not 0 <= pc < len(prog):
            raise BPFError(f"pc {pc} outside the program")
        code, jt, jf, k = prog[pc]
        if trace is not None:
            trace.append(pc)
        cls = code & 0x07
        pc += 1
        if cls == 0x00:  # BPF_LD
            mode, size = code & 0xE0, code & 0x18
            if mode == 0x20 and size == 0x00:  # W ABS
                if k % 4 or k + 4 > len(data):
                    raise BPFError(f"bad load offset {k}")
                a = struct.unpack_from("=I", data, k)[0]
            elif mode == 0x80:  # LEN
                a = len(data)
            elif mode == 0x00:  # IMM
                a = k
            elif mode == 0x60:  # MEM
                a = mem[_slot(k)]
            else:
                raise BPFError(f"unsupported load {code:#x}")
        elif cls == 0x01:  # BPF_LDX
            mode = code & 0xE0
            if mode == 0x00:
                x = k
            elif mode == 0x80:
                x = len(data)
            elif mode == 0x60:
                x = mem[_slot(k)]
            else:
                raise BPFError(f"unsupported ldx {code:#x}")
        elif cls == 0x02:  # BPF_ST
            mem[_slot(k)] = a
        elif cls == 0x03:  # BPF_STX
            mem[_slot(k)] = x
        elif cls == 0x04:  # BPF_ALU
            op, src = code & 0xF0, code & 0x08
            v = x if src else k
            if op == 0x00:
                a = (a + v) & U32
            elif op == 0x10:
                a = (a - v) & U32
            elif op == 0x20:
                a = (a * v) & U32
            elif op == 0x30:
                if v == 0:
                    return 0
                a = a // v
            elif op == 0x40:
                a = a | v
            elif op == 0x50:
                a = a & v
            elif op == 0x60:
                a = (a << v) & U32 if v < 32 else 0
            elif op == 0x70:
                a = a >> v if v < 32 else 0
            elif op == 0x80:
                a = (-a) & U32
            elif op == 0x90:
                if v == 0:
                    return 0
                a = a % v
            elif op == 0xA0:
                a = a ^ v
            else:
                raise BPFError(f"unsupported alu {code:#x}")
        elif cls == 0x05:  # BPF_JMP
            op, src = code & 0xF0, code & 0x08
            v = x if src else k
            if op == 0x00:
                pc += k
            else:
                if op == 0x10:
                    cond = a == v
                elif op == 0x20:
                    cond = a > v
                elif op == 0x30:
                    cond = a >= v
                elif op == 0x40:
                    cond = bool(a & v)
                else:
                    raise BPFError(f"unsupported jump {code:#x}")
                pc += jt if cond else jf
        elif cls == 0x06:  # BPF_RET
            return a if code & 0x18 == 0x10 else k
        elif cls == 0x07:  # BPF_MISC
            if code & 0xF8 == 0x00:
                x = a
            elif code & 0xF8 == 0x80:
                a = x
            else:
                raise BPFError(f"unsupported misc {code:#x}")
    raise BPFError("step limit reached (a loop?)")


def _slot(k: int) -> int:
    if k >= BPF_MEMWORDS:
        raise BPFError(f"scratch memory word {k} out of range 0..{BPF_MEMWORDS - 1}")
    return k


def run_seccomp(
    program: Iterable[tuple[int, int, int, int]], arch: int, nr: int, args: Sequence[int] = (0,) * 6, ip: int = 0
) -> int:
    """Run a seccomp *program* on one system call."""
    return run(program, seccomp_data(arch, nr, args, ip))
