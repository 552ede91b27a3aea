"""Differential test: nsprim's BPF against libseccomp's (the library runc and crun use).

Same profile, both programs run in the Python interpreter on the same calls;
the decisions must be identical.  Restricted to what both mean the same way
(see :mod:`tests.security.libseccomp`).
"""

from __future__ import annotations

import errno
from dataclasses import replace

import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from nsprim.security import DOCKER_DEFAULT_CAPS, Capabilities, CapabilitySet
from nsprim.security.seccomp import (
    Action,
    ArgCmp,
    Op,
    Profile,
    Rule,
    compile_profile,
    docker_default_profile,
    native_arch,
)

from . import libseccomp as ref

LIB = ref.load()
pytestmark = pytest.mark.skipif(LIB is None, reason="libseccomp.so.2 is not installed")
ARCH = native_arch()
U64 = (1 << 64) - 1
ARGS = [[0] * 6, [40, 0, 0, 0, 0, 0], [0x10000000, 0, 0, 0, 0, 0], [8, 1, 2, 3, 4, 5], [U64] * 6, [1 << 32] * 6]


def _same(profile: Profile, calls: list[tuple[int, int, list[int]]]) -> None:
    assert LIB is not None
    theirs = ref.build(LIB, profile)
    ours = compile_profile(profile)
    for arch, nr, args in calls:
        assert ours.run(arch, nr, args) == theirs.run(arch, nr, args), (hex(arch), nr, args)


@pytest.mark.parametrize(
    "caps",
    [
        DOCKER_DEFAULT_CAPS,
        CapabilitySet(),
        CapabilitySet.all(),
        Capabilities.docker_default().add("SYS_ADMIN").bounding,
    ],
    ids=["docker-default", "none", "all", "plus-sys-admin"],
)
def test_docker_default_profile_matches_libseccomp(caps: CapabilitySet) -> None:
    profile = replace(docker_default_profile().resolve(caps), enosys_newer=False)
    calls = [(ARCH.audit_arch, nr, args) for nr in range(0, 600) for args in ARGS]
    calls += [(tok, 3, ARGS[0]) for tok in (0x40000003, 0xC00000B7, 0x40000028, 0)]
    calls += [(ARCH.audit_arch, 0x40000000 | nr, ARGS[0]) for nr in (0, 1, 59)]
    calls += [(ARCH.audit_arch, nr, ARGS[0]) for nr in (0xFFFFFFFF, 0xFFFFFFFE, 0x7FFFFFFF, 0x3FFFFFFF)]
    _same(profile, calls)


# Names this libseccomp knows (it may be older than the kernel headers).
POOL = [n for n in sorted(ARCH.syscalls)[::7] if LIB is not None and LIB.seccomp_syscall_resolve_name(n.encode()) >= 0]
values = st.sampled_from([0, 1, 7, 40, 0xFFFFFFFF, 1 << 32, (1 << 32) + 7, 1 << 63, U64])
actions = st.sampled_from(
    [Action.allow(), Action.errno(errno.EPERM), Action.errno(errno.ENOSYS), Action.kill_process(), Action.errno(99)]
)


@st.composite
def disjoint_profiles(draw: st.DrawFn) -> Profile:
    names = draw(st.lists(st.sampled_from(POOL), min_size=1, max_size=24, unique=True))
    rules = []
    while names:
        k = draw(st.integers(1, min(4, len(names))))
        group, names = names[:k], names[k:]
        indexes = draw(st.lists(st.integers(0, 5), max_size=2, unique=True))
        cmps = tuple(ArgCmp(i, draw(st.sampled_from(list(Op))), draw(values), draw(values)) for i in indexes)
        rules.append(Rule(tuple(group), draw(actions), cmps))
    return Profile(draw(actions), tuple(rules), enosys_newer=False)


@settings(max_examples=120, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    disjoint_profiles(), st.lists(st.tuples(st.integers(0, 500), st.lists(values, min_size=6, max_size=6)), max_size=40)
)
def test_random_profiles_match_libseccomp(profile: Profile, extra: list[tuple[int, list[int]]]) -> None:
    try:
        assert LIB is not None
        ref.build(LIB, profile)
    except ref.LibseccompError:
        assume(False)
    calls = [(ARCH.audit_arch, nr, args) for nr, args in extra]
    for rule in profile.rules:
        for name in rule.names:
            nr = ARCH.syscalls[name]
            calls += [(ARCH.audit_arch, nr, args) for args in ARGS]
            for c in rule.args:
                for v in (c.value, c.value - 1, c.value + 1, c.value_two):
                    args = [0] * 6
                    args[c.index] = v & U64
                    calls.append((ARCH.audit_arch, nr, args))
    _same(profile, calls)
