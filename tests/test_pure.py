"""Property tests for the pure parts: id maps, time offsets, namespace names, errors."""

from __future__ import annotations

import pickle

import pytest
from hypothesis import given
from hypothesis import strategies as st

from nsprim import IdMap, IdRange, NamespaceType, TimeOffsets
from nsprim.errors import ConfigError, StepError, SyscallError
from nsprim.idmap import MAX_ID, MAX_RANGES

ranges = st.tuples(st.integers(0, 2**20), st.integers(0, 2**20), st.integers(1, 2**12)).map(lambda t: IdRange(*t))


def _overlap(spans: list[tuple[int, int]]) -> bool:
    return any(a[0] < b[1] and b[0] < a[1] for i, a in enumerate(spans) for b in spans[i + 1 :])


@given(st.lists(ranges, min_size=1, max_size=8))
def test_idmap_accepts_exactly_the_non_overlapping_lists(rs: list[IdRange]) -> None:
    bad = _overlap([(r.inside, r.inside_end) for r in rs]) or _overlap([(r.outside, r.outside_end) for r in rs])
    if bad:
        with pytest.raises(ConfigError, match="overlap"):
            IdMap(tuple(rs))
    else:
        m = IdMap(tuple(rs))
        assert IdMap.parse(m.render()) == m
        for r in rs:
            assert m.to_outside(r.inside) == r.outside
            assert m.to_outside(r.inside_end - 1) == r.outside_end - 1
            assert m.to_inside(r.outside) == r.inside


@given(st.integers(), st.integers(), st.integers())
def test_idrange_validation(inside: int, outside: int, count: int) -> None:
    valid = count >= 1 and inside >= 0 and outside >= 0 and inside + count <= MAX_ID and outside + count <= MAX_ID
    if valid:
        IdRange(inside, outside, count)
    else:
        with pytest.raises(ConfigError):
            IdRange(inside, outside, count)


def test_idmap_limits_and_parse_errors() -> None:
    with pytest.raises(ConfigError, match="at least one"):
        IdMap(())
    with pytest.raises(ConfigError, match="at most 340"):
        IdMap.of((i, i, 1) for i in range(MAX_RANGES + 1))
    with pytest.raises(ConfigError, match="line 2"):
        IdMap.parse("0 1000 1\n1 2\n")
    with pytest.raises(ConfigError, match="not three integers"):
        IdMap.parse("a b c")
    assert IdMap.identity().to_outside(12345) == 12345
    assert str(IdMap.single(0, 1000)) == "0->1000+1"


@given(st.floats(-1e6, 1e6, allow_nan=False), st.floats(-1e6, 1e6, allow_nan=False))
def test_time_offsets_render_seconds_and_nanoseconds(mono: float, boot: float) -> None:
    text = TimeOffsets(mono, boot).render().decode().splitlines()
    assert [line.split()[0] for line in text] == ["1", "7"]
    for line, value in zip(text, (mono, boot), strict=True):
        _, secs, nsec = line.split()
        assert 0 <= int(nsec) < 1_000_000_000
        assert abs(int(secs) + int(nsec) / 1e9 - value) < 1e-6


@given(st.sampled_from(list(NamespaceType)), st.sampled_from([str.lower, str.upper, str.title]))
def test_namespace_type_parse_is_case_insensitive(t: NamespaceType, case: object) -> None:
    assert NamespaceType.parse(case(t.value)) is t  # type: ignore[operator]


def test_errors_read_like_crun_and_pickle() -> None:
    err = SyscallError(22, "pivot_root", "/var/lib/x/rootfs")
    assert str(err) == "pivot_root `/var/lib/x/rootfs`: Invalid argument (is it a mount point?)"
    assert isinstance(err, OSError) and err.errno == 22 and err.filename == "/var/lib/x/rootfs"
    again = pickle.loads(pickle.dumps(err))
    assert str(again) == str(err) and type(again) is SyscallError
    assert issubclass(StepError, SyscallError)
    assert isinstance(ConfigError("x"), ValueError)


def test_namespace_steps_wait_for_the_maps_then_join_unshare_and_make_the_root_private() -> None:
    from nsprim._sys import C
    from nsprim.plan import Mount, SetGid, SetGroups, SetUid, Sync, Unshare, WriteFile
    from nsprim.spawning import namespace_steps

    types = {NamespaceType.USER, NamespaceType.MNT, NamespaceType.TIME, NamespaceType.CGROUP}
    ns = namespace_steps(
        types,
        uid_map=IdMap.single(0, 100000),
        gid_map=IdMap.single(0, 100000),
        become_root=True,
        unshare_cgroup=True,
        time_offsets=TimeOffsets(monotonic=2.5),
    )
    assert ns.maps == (Sync("the parent writes the id maps"), SetGroups(()), SetGid(0), SetUid(0))
    assert ns.write_maps is not None
    assert ns.enter == (
        Unshare(C.CLONE_NEWCGROUP),
        Unshare(C.CLONE_NEWTIME),
        WriteFile("/proc/self/timens_offsets", TimeOffsets(monotonic=2.5).render()),
        Mount(None, "/", None, C.MS_REC | C.MS_PRIVATE),
    )
    assert ns.clone_flags == NamespaceType.mask({NamespaceType.USER, NamespaceType.MNT})
    assert ns.pidns_fd == -1

    denied = namespace_steps(types, uid_map=IdMap.single(0, 1000), deny_setgroups=True, become_root=True)
    assert denied.maps == (Sync("the parent writes the id maps"), SetUid(0))  # no gid map, no setgroups
    assert NamespaceType.CGROUP.flag & denied.clone_flags  # made at clone time unless asked

    plain = namespace_steps({NamespaceType.USER, NamespaceType.MNT}, private_root=False)
    assert (plain.maps, plain.enter, plain.write_maps) == ((), (), None)
