"""Compile a :class:`~.profile.Profile` to a classic-BPF seccomp program.

Layout of a program::

    ld arch; jeq AUDIT_ARCH_X86_64 -> x86_64; ...; ret <foreign action>
    x86_64:
      ld nr
      jge 0x40000000 -> ret <foreign action>          (x32 ABI; but nr -1 goes on)
      jgt <highest named nr> -> ret ERRNO(ENOSYS)      (calls newer than the profile)
      binary search over ranges of numbers with the same outcome:
        jge <range start> ...                          (about log2(ranges) jumps)
        leaf: ret <action>, or ja <rule chain>
    rule chains: argument checks (64-bit, as two 32-bit words), first match
                 returns its action; otherwise ret <default action>

Conditional jumps reach at most 255 instructions ahead; farther targets get
an unconditional ``ja`` trampoline (see :func:`assemble`).
"""

from __future__ import annotations

import errno as _errno
from collections.abc import Iterable, Sequence

from ..._dataclass import dataclass
from ..capabilities import CapabilitySet
from ..errors import SeccompProfileError
from .arch import Arch
from .profile import Action, ArgCmp, Op, Profile
from .program import (
    ALU_AND_K,
    BPF_MAXINSNS,
    JMP_JA,
    JMP_JEQ_K,
    JMP_JGE_K,
    JMP_JGT_K,
    LD_W_ABS,
    NR_SKIP,
    OFF_ARCH,
    OFF_ARGS,
    OFF_NR,
    RET_K,
    Insn,
    Program,
)

__all__ = ["compile_profile", "assemble", "Label", "BPF_MAXINSNS"]


class Label:
    """A position in a program being assembled."""

    __slots__ = ("name",)

    def __init__(self, name: str = "") -> None:
        self.name = name

    def __repr__(self) -> str:
        return f"Label({self.name!r})"


@dataclass
class _Op:
    code: int
    k: int = 0
    jt: Label | None = None
    jf: Label | None = None
    target: Label | None = None  # ja


Item = _Op | Label


def _label_positions(items: Sequence[Item]) -> dict[int, int]:
    """Each label's instruction index, by the label's id."""
    pos: dict[int, int] = {}
    pc = 0
    for it in items:
        if isinstance(it, Label):
            pos[id(it)] = pc
        else:
            pc += 1
    return pos


def assemble(items: Sequence[Item]) -> Program:
    """Resolve labels; give conditional jumps beyond 255 instructions a ``ja`` trampoline."""
    work: list[Item] = list(items)
    while True:
        pos = _label_positions(work)
        far: list[tuple[int, str]] = []
        pc = 0
        for idx, it in enumerate(work):
            if isinstance(it, Label):
                continue
            for attr in ("jt", "jf"):
                lab = getattr(it, attr)
                if lab is not None and pos[id(lab)] - (pc + 1) > 255:
                    far.append((idx, attr))
            pc += 1
        if not far:
            break
        for idx, attr in reversed(far):  # insert from the back: indexes stay valid
            op = work[idx]
            assert isinstance(op, _Op)
            here = Label("trampoline")
            dest = getattr(op, attr)
            setattr(op, attr, here)
            work[idx + 1 : idx + 1] = [here, _Op(JMP_JA, target=dest)]
        # a trampoline sits right after its branch; the branch's other target
        # (often "the next instruction") is a label and simply moves on.
    pos = _label_positions(work)
    out: list[Insn] = []
    for it in work:
        if isinstance(it, Label):
            continue
        pc = len(out)

        def off(lab: Label | None, pc: int = pc) -> int:
            if lab is None:
                return 0
            d = pos[id(lab)] - (pc + 1)
            if d < 0:
                raise AssertionError("backward jump")
            return d

        if it.code == JMP_JA:
            out.append(Insn(JMP_JA, 0, 0, off(it.target)))
        else:
            out.append(Insn(it.code, off(it.jt), off(it.jf), it.k))
    return Program(tuple(out))


# ---- code generation --------------------------------------------------------------------


class _Gen:
    def __init__(self) -> None:
        self.items: list[Item] = []

    def label(self, lab: Label) -> None:
        self.items.append(lab)

    def ld(self, offset: int) -> None:
        self.items.append(_Op(LD_W_ABS, offset))

    def and_(self, k: int) -> None:
        self.items.append(_Op(ALU_AND_K, k))

    def ret(self, k: int) -> None:
        self.items.append(_Op(RET_K, k))

    def ja(self, target: Label) -> None:
        self.items.append(_Op(JMP_JA, target=target))

    def jump(self, code: int, k: int, jt: Label | None, jf: Label | None) -> None:
        """A conditional jump; ``None`` means the next instruction."""
        nxt = Label() if jt is None or jf is None else None
        self.items.append(_Op(code, k, jt or nxt, jf or nxt))
        if nxt is not None:
            self.items.append(nxt)


def _emit_cmp(g: _Gen, cmp: ArgCmp, ok: Label, fail: Label) -> None:
    lo_off = OFF_ARGS + 8 * cmp.index
    hi_off = lo_off + 4
    v_lo, v_hi = cmp.value & 0xFFFFFFFF, cmp.value >> 32
    op = cmp.op
    if op is Op.EQ:
        g.ld(hi_off)
        g.jump(JMP_JEQ_K, v_hi, None, fail)
        g.ld(lo_off)
        g.jump(JMP_JEQ_K, v_lo, ok, fail)
    elif op is Op.NE:
        g.ld(hi_off)
        g.jump(JMP_JEQ_K, v_hi, None, ok)
        g.ld(lo_off)
        g.jump(JMP_JEQ_K, v_lo, fail, ok)
    elif op is Op.MASKED_EQ:
        target = cmp.value_two & cmp.value  # libseccomp masks the datum too
        t_lo, t_hi = target & 0xFFFFFFFF, target >> 32
        g.ld(hi_off)
        g.and_(v_hi)
        g.jump(JMP_JEQ_K, t_hi, None, fail)
        g.ld(lo_off)
        g.and_(v_lo)
        g.jump(JMP_JEQ_K, t_lo, ok, fail)
    else:
        # GT/GE hold on (hi > v_hi) or (hi == v_hi and lo >/>= v_lo); LT/LE are their negations.
        positive = op in (Op.GT, Op.GE)
        yes, no = (ok, fail) if positive else (fail, ok)
        g.ld(hi_off)
        g.jump(JMP_JGT_K, v_hi, yes, None)
        g.jump(JMP_JEQ_K, v_hi, None, no)
        g.ld(lo_off)
        code = JMP_JGT_K if op in (Op.GT, Op.LE) else JMP_JGE_K
        g.jump(code, v_lo, yes, no)
    g.label(ok)


ChainEntry = tuple[tuple[ArgCmp, ...], Action]
Chain = tuple[ChainEntry, ...]


def _chains(profile: Profile, arch: Arch) -> dict[int, Chain]:
    """Number -> the ordered (conditions, action) entries that can decide it."""
    out: dict[int, list[ChainEntry]] = {}
    for rule in profile.effective_rules():
        for name in rule.names:
            nr = arch.syscalls.get(name)
            if nr is None:
                continue
            entries = out.setdefault(nr, [])
            if entries and not entries[-1][0]:
                continue  # an unconditional entry already decides this call
            if (rule.args, rule.action) not in entries:
                entries.append((rule.args, rule.action))
    return {nr: tuple(e) for nr, e in out.items()}


def _segments(chains: dict[int, Chain], limit: int) -> list[tuple[int, Chain]]:
    """Split [0, limit) into runs of numbers with the same chain: (start, chain) list."""
    segs: list[tuple[int, Chain]] = []
    cursor = 0
    for nr in sorted(chains):
        if nr >= limit:
            break
        if nr > cursor:
            segs.append((cursor, ()))
        segs.append((nr, chains[nr]))
        cursor = nr + 1
    if cursor < limit:
        segs.append((cursor, ()))
    merged: list[tuple[int, Chain]] = []
    for start, chain in segs:
        if merged and merged[-1][1] == chain:
            continue
        merged.append((start, chain))
    return merged


def _emit_arch(g: _Gen, profile: Profile, arch: Arch) -> None:
    chains = _chains(profile, arch)
    g.ld(OFF_NR)
    limit = arch.nr_limit
    foreign: Label | None = None
    if limit < 1 << 32:
        # x32 (bit 30) is a foreign ABI; -1 is not (a tracer's "skip this call"), as in libseccomp.
        foreign, high, native = Label("foreign ABI"), Label("high number"), Label("native ABI")
        g.jump(JMP_JGE_K, limit, high, native)
        g.label(high)
        g.jump(JMP_JEQ_K, NR_SKIP, native, foreign)
        g.label(native)
    enosys: Label | None = None
    top = profile.max_number(arch)
    if profile.uses_enosys_stub() and top >= 0:
        enosys = Label("enosys")
        g.jump(JMP_JGT_K, top, enosys, None)
        limit = min(limit, top + 1)
    segs = _segments(chains, limit) if limit > 0 else [(0, ())]
    chain_labels: dict[Chain, Label] = {}
    default_ret = profile.default_action.ret

    def leaf(chain: Chain) -> None:
        if not chain:
            g.ret(default_ret)
        elif len(chain) == 1 and not chain[0][0]:
            g.ret(chain[0][1].ret)
        else:
            lab = chain_labels.setdefault(chain, Label("chain"))
            g.ja(lab)

    def tree(lo: int, hi: int) -> None:  # segs[lo:hi]
        if hi - lo == 1:
            leaf(segs[lo][1])
            return
        mid = (lo + hi) // 2
        right = Label("right")
        g.jump(JMP_JGE_K, segs[mid][0], right, None)
        tree(lo, mid)
        g.label(right)
        tree(mid, hi)

    tree(0, len(segs))
    if foreign is not None:
        g.label(foreign)
        g.ret(profile.foreign_action.ret)
    if enosys is not None:
        g.label(enosys)
        g.ret(Action.errno(_errno.ENOSYS).ret)
    for chain, lab in chain_labels.items():
        g.label(lab)
        for conds, action in chain:
            fail = Label("next rule")
            for cmp in conds:
                _emit_cmp(g, cmp, Label(), fail)
            g.ret(action.ret)
            g.label(fail)
        g.ret(default_ret)


def compile_profile(
    profile: Profile,
    *,
    caps: CapabilitySet | None = None,
    arches: Iterable[str] | None = None,
) -> Program:
    """Compile *profile* for its architectures (this machine's by default).

    Docker-style includes/excludes are resolved first against *caps* (the
    container's bounding set; default: Docker's default capabilities).
    """
    from ..capabilities import DOCKER_DEFAULT_CAPS

    if any(r.includes is not None or r.excludes is not None for r in profile.rules):
        profile = profile.resolve(caps if caps is not None else DOCKER_DEFAULT_CAPS)
    if arches is not None:
        from dataclasses import replace

        profile = replace(profile, architectures=tuple(arches))
    g = _Gen()
    targets = profile.arches()
    labels = [Label(a.name) for a in targets]
    g.ld(OFF_ARCH)
    for arch, lab in zip(targets, labels, strict=True):
        g.jump(JMP_JEQ_K, arch.audit_arch, lab, None)
    g.ret(profile.foreign_action.ret)
    for arch, lab in zip(targets, labels, strict=True):
        g.label(lab)
        _emit_arch(g, profile, arch)
    program = assemble(g.items)
    if len(program) > BPF_MAXINSNS:
        raise SeccompProfileError("", f"the compiled filter has {len(program)} instructions (the kernel takes 4096)")
    return program
