"""The BPF compiler against the profile's own meaning, in the Python BPF interpreter."""

from __future__ import annotations

import errno

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from nsprim.security import Capability, CapabilitySet
from nsprim.security.seccomp import (
    ARCHES,
    Action,
    ActionKind,
    ArgCmp,
    Op,
    Profile,
    Program,
    Rule,
    compile_profile,
    docker_default_profile,
    native_arch,
)
from nsprim.security.seccomp.bpf import BPF_MAXINSNS, JMP_JA, RET_K, Insn
from nsprim.security.seccomp.interp import BPFError, run, seccomp_data

X86_64 = ARCHES["x86_64"]
ALLOW = Action.allow().ret
EPERM = Action.errno(errno.EPERM).ret
ENOSYS = Action.errno(errno.ENOSYS).ret
KILL = Action.kill_process().ret

U64 = (1 << 64) - 1
INTERESTING = [0, 1, 2, 7, 8, 40, 0x7FFFFFFF, 0x80000000, 0xFFFFFFFF, 1 << 32, (1 << 32) + 1, 1 << 63, U64 - 1, U64]
NAME_POOL = sorted(
    {n for n in ("read", "write", "openat", "mount", "unshare", "clone", "socket", "personality", "keyctl")}
    | {n for n in list(X86_64.syscalls)[::23]}
    | {n for n in list(ARCHES["aarch64"].syscalls)[::41]}
    | {"chown32", "_llseek", "arch_prctl", "fcntl64", "open_tree_attr"}
)

values = st.one_of(st.sampled_from(INTERESTING), st.integers(0, U64))
actions = st.one_of(
    st.just(Action.allow()),
    st.builds(Action.errno, st.integers(1, 200)),
    st.sampled_from(
        [
            Action(ActionKind.KILL_PROCESS),
            Action(ActionKind.KILL_THREAD),
            Action(ActionKind.TRAP),
            Action(ActionKind.LOG),
        ]
    ),
    st.builds(lambda d: Action(ActionKind.TRACE, d), st.integers(0, 0xFFFF)),
)
cmps = st.builds(ArgCmp, st.integers(0, 5), st.sampled_from(list(Op)), values, values)
rules = st.builds(
    Rule,
    st.lists(st.sampled_from(NAME_POOL), min_size=1, max_size=4).map(tuple),
    actions,
    st.lists(cmps, max_size=3).map(tuple),
)
profiles = st.builds(
    Profile,
    actions,
    st.lists(rules, max_size=8).map(tuple),
    st.lists(st.sampled_from(sorted(ARCHES)), min_size=1, max_size=3, unique=True).map(tuple),
    st.sampled_from([Action.kill_process(), Action.errno(errno.ENOSYS)]),
    st.booleans(),
)


def _numbers(profile: Profile) -> list[int]:
    out = {0, 1, 0x3FFFFFFF, 0x40000000, 0x40000001, 0xFFFFFFFF}
    for arch in profile.arches():
        for rule in profile.rules:
            for name in rule.names:
                nr = arch.syscalls.get(name)
                if nr is not None:
                    out.update({nr - 1, nr, nr + 1})
        top = profile.max_number(arch)
        out.update({top, top + 1})
    return sorted(n & 0xFFFFFFFF for n in out)


@st.composite
def calls(draw: st.DrawFn, profile: Profile) -> tuple[int, int, list[int]]:
    tokens = [a.audit_arch for a in ARCHES.values()] + [0x40000028, 0]  # + ARM, and nonsense
    arch = draw(st.sampled_from(tokens))
    nr = draw(st.one_of(st.sampled_from(_numbers(profile)), st.integers(0, 0xFFFFFFFF)))
    rule_values = [c.value for r in profile.rules for c in r.args] + [
        c.value_two for r in profile.rules for c in r.args
    ]
    arg = st.one_of(values, st.sampled_from(rule_values or [0]).flatmap(lambda v: st.sampled_from([v, v - 1, v + 1])))
    args = draw(st.lists(arg.map(lambda v: v & U64), min_size=6, max_size=6))
    return arch, nr, args


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.data(), profiles)
def test_compiled_program_matches_the_profile(data: st.DataObject, profile: Profile) -> None:
    program = compile_profile(profile)
    assert 0 < len(program) <= BPF_MAXINSNS
    for _ in range(25):
        arch, nr, args = data.draw(calls(profile))
        assert program.run(arch, nr, args) == profile.evaluate(arch, nr, args), (arch, nr, args)


@settings(max_examples=100, deadline=None)
@given(profiles)
def test_programs_are_well_formed(profile: Profile) -> None:
    program = compile_profile(profile)
    n = len(program)
    for pc, insn in enumerate(program):
        if insn.code == JMP_JA:
            assert pc + 1 + insn.k < n
        elif insn.code & 0x07 == 0x05:
            assert pc + 1 + insn.jt < n and pc + 1 + insn.jf < n
    assert program.insns[-1].code == RET_K
    assert Program.from_bytes(program.to_bytes()) == program


def test_far_jumps_get_trampolines() -> None:
    # Every x86_64 call with its own errno: hundreds of ranges, conditional jumps beyond 255.
    names = sorted(X86_64.syscalls, key=X86_64.syscalls.__getitem__)
    rules = tuple(Rule((name,), Action.errno(1 + i % 4000), (ArgCmp(0, Op.NE, i),)) for i, name in enumerate(names))
    profile = Profile(Action.allow(), rules, ("x86_64",))
    program = compile_profile(profile)
    assert any(i.code == JMP_JA for i in program) and len(program) > 256
    for nr in range(0, 500):
        for a0 in (0, 7, nr):
            args = [a0, 0, 0, 0, 0, 0]
            assert program.run(X86_64.audit_arch, nr, args) == profile.evaluate(X86_64.audit_arch, nr, args)


def test_default_profile_decisions() -> None:
    prog = compile_profile(docker_default_profile(), arches=["x86_64"])
    tok = X86_64.audit_arch
    nr = X86_64.syscalls

    def ret(name: str, *args: int) -> int:
        return prog.run(tok, nr[name], [*args, 0, 0, 0, 0, 0, 0][:6])

    assert ret("read") == ret("write") == ret("execve") == ret("exit_group") == ALLOW
    for name in ("mount", "umount2", "unshare", "setns", "keyctl", "add_key", "init_module", "finit_module", "bpf"):
        assert ret(name) == EPERM, name
    assert ret("clone", 0x01200011) == ALLOW  # fork()'s flags
    assert ret("clone", 0x10000000 | 0x11) == EPERM  # CLONE_NEWUSER
    assert ret("clone3") == ENOSYS  # the C library falls back to clone
    assert ret("socket", 2) == ALLOW and ret("socket", 40) == EPERM  # AF_VSOCK
    assert ret("personality", 0) == ALLOW and ret("personality", 0x0400000) == EPERM
    assert ret("ptrace") == ALLOW  # kernels since 4.8 check ptrace well enough (Docker's rule)
    assert ret("chroot") == ALLOW  # CAP_SYS_CHROOT is a default capability
    assert prog.run(tok, nr["fchmodat2"], [0] * 6) == ENOSYS  # newer than the profile
    assert prog.run(tok, nr["read"] | 0x40000000, [0] * 6) == KILL  # x32 ABI
    assert prog.run(tok, 0xFFFFFFFF, [0] * 6) == ENOSYS  # nr -1 (a tracer's skip) is not x32
    assert prog.run(ARCHES["x86"].audit_arch, 3, [0] * 6) == KILL  # i386 ABI
    assert prog.run(0xDEAD, 0, [0] * 6) == KILL


def test_default_profile_with_sys_admin_allows_namespaces() -> None:
    caps = CapabilitySet.of(Capability.SYS_ADMIN)
    prog = compile_profile(docker_default_profile(), caps=caps, arches=["x86_64"])
    tok, nr = X86_64.audit_arch, X86_64.syscalls
    assert prog.run(tok, nr["mount"]) == ALLOW
    assert prog.run(tok, nr["clone"], [0x10000000, 0, 0, 0, 0, 0]) == ALLOW
    assert prog.run(tok, nr["clone3"]) == ALLOW
    assert prog.run(tok, nr["chroot"]) == EPERM  # no CAP_SYS_CHROOT in this set


@pytest.mark.parametrize("arch", sorted(ARCHES))
def test_default_profile_compiles_for_every_arch(arch: str) -> None:
    prog = compile_profile(docker_default_profile(), arches=[arch])
    a = ARCHES[arch]
    assert prog.run(a.audit_arch, a.syscalls["read"]) == ALLOW
    assert prog.run(a.audit_arch, a.syscalls["mount"]) == EPERM
    assert len(prog) < 400


def test_default_profile_is_small_and_shallow() -> None:
    prog = compile_profile(docker_default_profile())
    assert len(prog) < 250
    # the longest path for any call: a binary search, not a scan
    tok = native_arch().audit_arch
    depth = 0
    for nr in range(0, 470):
        trace: list[int] = []
        run(prog, seccomp_data(tok, nr, [0] * 6), trace=trace)
        depth = max(depth, len(trace))
    assert depth <= 20  # 2 arch + 3 checks + ~9 search + a 6-instruction argument check


def test_interpreter_rejects_bad_programs() -> None:
    with pytest.raises(BPFError):
        run([(0x05, 0, 0, 5)], b"\0" * 64)  # jump out of the program
    with pytest.raises(BPFError):
        run([(0x20, 0, 0, 3), (RET_K, 0, 0, 0)], b"\0" * 64)  # misaligned load
    assert run([(0x20, 0, 0, 4), (0x06 | 0x10, 0, 0, 0)], bytes(range(64))) == 0x07060504  # ret A


# A small pool of actions, so that rules often have the profile's default action.
few_actions = st.sampled_from([Action.allow(), Action.errno(errno.EPERM), Action.kill_process()])
few_names = st.lists(st.sampled_from(["read", "uname", "mount", "getpid", "fchmodat2"]), min_size=1, max_size=3)
overlapping_profiles = st.builds(
    Profile,
    few_actions,
    st.lists(st.builds(Rule, few_names.map(tuple), few_actions, st.lists(cmps, max_size=1).map(tuple)), max_size=6).map(
        tuple
    ),
    st.just(("x86_64",)),
    st.just(Action.kill_process()),
    st.booleans(),
)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.data(), overlapping_profiles)
def test_rules_with_the_default_action_decide_as_any_rule(data: st.DataObject, profile: Profile) -> None:
    program = compile_profile(profile)
    for _ in range(25):
        arch, nr, args = data.draw(calls(profile))
        assert program.run(arch, nr, args) == profile.evaluate(arch, nr, args), (arch, nr, args)


def test_denying_with_the_default_errno_takes_effect() -> None:
    tok, nr = X86_64.audit_arch, X86_64.syscalls["uname"]
    # Docker's default denies with EPERM and allows uname: a rule in front denies it again.
    prog = compile_profile(docker_default_profile().denying("uname"), arches=["x86_64"])
    assert prog.run(tok, nr) == EPERM
    assert prog.run(tok, X86_64.syscalls["getpid"]) == ALLOW
    # Allowing by default: an allow rule in front of a deny rule lets the call through.
    allow_first = Profile.deny("uname", "mount").with_rules(Rule(("uname",), Action.allow()))
    prog = compile_profile(allow_first, arches=["x86_64"])
    assert prog.run(tok, nr) == ALLOW and prog.run(tok, X86_64.syscalls["mount"]) == EPERM


def test_a_denied_call_is_never_newer_than_the_profile() -> None:
    # uname is numbered above read: without counting the deny rule, it would be "newer" (ENOSYS).
    profile = Profile.allow_only("read").denying("uname")
    tok = X86_64.audit_arch
    prog = compile_profile(profile, arches=["x86_64"])
    assert prog.run(tok, X86_64.syscalls["uname"]) == EPERM
    assert prog.run(tok, X86_64.syscalls["uname"] + 1) == ENOSYS


def test_bad_programs_are_typed_errors() -> None:
    from nsprim.errors import ConfigError, NsprimError

    assert issubclass(BPFError, ConfigError) and issubclass(BPFError, NsprimError)
    bad_programs: list[list[tuple[int, int, int, int]]] = [
        [(0x02, 0, 0, 16), (RET_K, 0, 0, 0)],  # store to scratch word 16 (there are 16)
        [(0x60, 0, 0, 99), (RET_K, 0, 0, 0)],  # load scratch word 99
        [(RET_K, 0, 0, 1 << 32)],  # k wider than 32 bits
        [(RET_K, 0, 0)],  # type: ignore[list-item]  # three fields
        [(RET_K, 0, 0, 0)] * 4097,  # longer than the kernel takes
    ]
    for prog in bad_programs:
        with pytest.raises(BPFError):
            run(prog, b"\0" * 64)
    for data in (b"\0" * 7, "text", None):
        with pytest.raises(BPFError):
            Program.from_bytes(data)  # type: ignore[arg-type]
    with pytest.raises(BPFError):
        Program((Insn(0x10000, 0, 0, 0),))
    with pytest.raises(BPFError):
        seccomp_data(0, 0, [0] * 7)
