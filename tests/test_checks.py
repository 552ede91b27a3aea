"""What is refused before it reaches the kernel: ids that would wrap, group lists past NGROUPS_MAX,
NUL bytes, bad environment names, over-long host names; and the same bounds checked again in C."""

from __future__ import annotations

import errno
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

import nsprim
import nsprim.lowlevel
from nsprim import IdMap, IdRange
from nsprim._sys import C
from nsprim._sys import spawn as raw
from nsprim.checks import NGROUPS_MAX, UTS_NAME_MAX, check_env, check_groups, check_id, check_uts_name
from nsprim.container import Container, ContainerConfig
from nsprim.errors import ConfigError, StepError
from nsprim.idmap import MAX_ID
from nsprim.plan import Exec, FdMap, Plan, SetDomainname, SetGid, SetGroups, SetHostname, SetUid, Step

from .conftest import requires_root

SRC = str(Path(nsprim.__file__).resolve().parent.parent)

# Integers around every edge that matters: 0, 2**31 (C int), 2**32 - 2 (the last id), 2**32 (wraps to root).
edges = st.one_of(
    st.integers(),
    *(st.integers(e - 3, e + 3) for e in (0, 2**31, MAX_ID - 1, 2**32, 2**63)),
)


@given(edges)
def test_check_id_accepts_exactly_0_to_2_32_minus_2(value: int) -> None:
    if 0 <= value <= 2**32 - 2:
        assert check_id(value, "uid") == value
        assert SetUid(value).uid == value and SetGid(value).gid == value
    else:
        for what, make in (("uid", SetUid), ("gid", SetGid)):
            with pytest.raises(ConfigError) as exc:
                make(value)
            assert exc.value.what == what and str(value) in str(exc.value)


@given(st.lists(edges, max_size=8))
def test_check_groups_bounds_every_gid(groups: list[int]) -> None:
    if all(0 <= g <= 2**32 - 2 for g in groups):
        assert check_groups(groups) == tuple(groups)
        # C gets the gid_t bit patterns as ints: nothing above 2**31 overflows
        lowered = SetGroups(tuple(groups)).lower().ints or ()
        assert [g & 0xFFFFFFFF for g in lowered] == groups
        assert all(-(2**31) <= g < 2**31 for g in lowered)
    else:
        with pytest.raises(ConfigError) as exc:
            SetGroups(tuple(groups))
        assert exc.value.what == "groups"


@given(edges, edges, st.integers(-3, 3) | st.integers(MAX_ID - 3, MAX_ID + 3))
def test_idrange_bounds_at_the_edges(inside: int, outside: int, count: int) -> None:
    valid = count >= 1 and inside >= 0 and outside >= 0 and inside + count <= MAX_ID and outside + count <= MAX_ID
    if valid:
        r = IdRange(inside, outside, count)
        assert r.inside_end - 1 <= 2**32 - 2 and r.outside_end - 1 <= 2**32 - 2
    else:
        with pytest.raises(ConfigError) as exc:
            IdRange(inside, outside, count)
        assert exc.value.what in ("inside", "outside", "count")


def test_idmap_identity_is_the_kernels_full_map() -> None:
    assert IdMap.identity().render() == "0 0 4294967295\n"


def test_group_count_limit() -> None:
    assert len(check_groups(range(NGROUPS_MAX))) == NGROUPS_MAX
    with pytest.raises(ConfigError, match="at most 65536") as exc:
        Container(["true"]).user(0, 0, groups=range(NGROUPS_MAX + 1))
    assert exc.value.what == "groups"
    assert raw.MAX_GROUPS == NGROUPS_MAX  # the C bound is the same
    with pytest.raises(ConfigError, match="at most 1024"):
        FdMap(tuple((3, 3) for _ in range(raw.MAX_FDMAP_PAIRS + 1)))


@pytest.mark.parametrize(
    ("call", "what"),
    [
        (lambda: Container(["true"]).user(2**32), "uid"),
        (lambda: Container(["true"]).user(-5), "uid"),
        (lambda: Container(["true"]).user(0, 2**32), "gid"),
        (lambda: Container(["true"]).user(0, 0, groups=[5, -1]), "groups"),
        (lambda: ContainerConfig(argv=("true",), uid=2**32).validate(), "uid"),
        (lambda: ContainerConfig(argv=("true",), gid=-1).validate(), "gid"),
        (lambda: ContainerConfig(argv=("true",), groups=(2**32 - 1,)).validate(), "groups"),
        (lambda: nsprim.spawn(["true"], uid=2**32), "uid"),
        (lambda: nsprim.spawn(["true"], groups=[2**40]), "groups"),
    ],
)
def test_ids_that_would_wrap_are_config_errors(call: object, what: str) -> None:
    with pytest.raises(ConfigError) as exc:
        call()  # type: ignore[operator]
    assert exc.value.what == what


# ---- strings --------------------------------------------------------------------------------------


@given(st.text(max_size=80))
def test_uts_names(name: str) -> None:
    ok = "\0" not in name and len(name.encode()) <= UTS_NAME_MAX
    if ok:
        assert SetHostname(name).name == name
    else:
        with pytest.raises(ConfigError) as exc:
            SetDomainname(name)
        assert exc.value.what == "domainname"


def test_long_names_mention_the_64_byte_limit() -> None:
    for call, what in (
        (lambda: ContainerConfig(argv=("true",), hostname="h" * 65).validate(), "hostname"),
        (lambda: nsprim.spawn(["true"], new={"uts"}, hostname="é" * 33), "hostname"),
        (lambda: nsprim.spawn(["true"], new={"uts"}, domainname="d" * 65), "domainname"),
    ):
        with pytest.raises(ConfigError, match="at most 64 bytes") as exc:
            call()
        assert exc.value.what == what
    assert check_uts_name("h" * 64, "hostname") == "h" * 64


@given(st.dictionaries(st.text(max_size=6), st.text(max_size=6), max_size=4))
def test_environment_names_and_values(env: dict[str, str]) -> None:
    ok = all(k and "=" not in k and "\0" not in k and "\0" not in v for k, v in env.items())
    if ok:
        check_env(env)
        Exec("/bin/true", ["true"], env)
    else:
        with pytest.raises(ConfigError) as exc:
            ContainerConfig(argv=("true",), env=tuple(env.items())).validate()
        assert exc.value.what == "env"


@pytest.mark.parametrize(
    ("config", "what"),
    [
        (ContainerConfig(argv=("echo", "a\0b")), "argv"),
        (ContainerConfig(argv=("ec\0ho",)), "argv"),
        (ContainerConfig(argv=("true",), env=(("A", "x\0y"),)), "env"),
        (ContainerConfig(argv=("true",), env=(("A=B", "x"),)), "env"),
        (ContainerConfig(argv=("true",), env=(("", "x"),)), "env"),
        (ContainerConfig(argv=("true",), hostname="bo\0x"), "hostname"),
    ],
)
def test_nul_bytes_and_bad_env_names_are_config_errors(config: ContainerConfig, what: str) -> None:
    with pytest.raises(ConfigError) as exc:
        config.validate()  # before anything is made or called
    assert exc.value.what == what
    with pytest.raises(ConfigError):
        nsprim.spawn(list(config.argv), env=dict(config.env), new={"uts"}, hostname=config.hostname)


def test_no_c_string_is_ever_cut_short() -> None:
    """The last net: encoding any step with a NUL byte in a C string refuses it."""
    with pytest.raises(ConfigError, match="NUL byte in the path of a chdir step"):
        raw.encode([raw.RawStep(raw.StepKind.CHDIR, path=b"/tmp\0/x")])
    raw.encode([raw.RawStep(raw.StepKind.WRITE_FILE, a=3, path=b"/x", str=b"a\0b")])  # data, with a length


# ---- the same bounds in C -------------------------------------------------------------------------


class _Raw(Step):
    """A step lowered as given, past every Python check: what C must refuse on its own."""

    def __init__(self, raw_step: raw.RawStep) -> None:
        self.raw_step = raw_step

    def lower(self) -> raw.RawStep:
        return self.raw_step


@requires_root
@pytest.mark.parametrize(
    "step",
    [
        raw.RawStep(raw.StepKind.SETRESUID, a=2**32),  # would be root
        raw.RawStep(raw.StepKind.SETRESUID, a=-5),
        raw.RawStep(raw.StepKind.SETRESGID, a=2**32 - 1),  # "unchanged"
        raw.RawStep(raw.StepKind.SETGROUPS, ints=(5, -1)),  # (gid_t)-1
        raw.RawStep(raw.StepKind.SETGROUPS, ints=(0,) * (raw.MAX_GROUPS + 1)),
        raw.RawStep(raw.StepKind.FDMAP, ints=(1, 1) * (raw.MAX_FDMAP_PAIRS + 1)),
        raw.RawStep(raw.StepKind.TERMINAL, a=3, b=2**32),
    ],
)
def test_c_refuses_what_python_would(step: raw.RawStep) -> None:
    plan = Plan((_Raw(step), Exec("/bin/true", ["true"])))
    with pytest.raises(StepError) as exc:
        nsprim.lowlevel.start(plan)
    assert exc.value.errno == errno.EINVAL and exc.value.index == 0


_NO = b"/nonexistent/nsprim-flag-test"


@requires_root
@pytest.mark.parametrize(
    "step",
    [
        raw.RawStep(raw.StepKind.MKDIR, flags=2, path=b"/tmp"),  # EXIST_OK is 1
        raw.RawStep(raw.StepKind.WRITE_FILE, flags=2, path=b"/dev/null"),
        raw.RawStep(raw.StepKind.FDMAP, flags=raw.FdMapFlag.CLOSE_OTHERS << 1),
        raw.RawStep(raw.StepKind.FDMAP, flags=raw.FdMapFlag.KEEP_OTHERS | raw.FdMapFlag.CLOSE_OTHERS),
        raw.RawStep(raw.StepKind.CHDIR, flags=raw.MkdirFlag.EXIST_OK, path=b"/"),  # another kind's bit
        raw.RawStep(raw.StepKind.SETSID, flags=raw.OPTIONAL),  # no path to miss
        raw.RawStep(raw.StepKind.SECCOMP, flags=raw.OPTIONAL, a=1, str=b"\x06\0\0\0\0\0\xff\x7f"),
        raw.RawStep(raw.StepKind.CAPS, flags=raw.CapsFlag.CLAMP << 1, ints=(0,) * 10),
        # (paths that do not exist: ENOENT, were a bit let through)
        raw.RawStep(raw.StepKind.ENTER_ROOT, flags=raw.EnterRootFlag.FALLBACK | raw.EnterRootFlag.CHROOT, path=_NO),
        raw.RawStep(raw.StepKind.ENTER_ROOT, flags=4, path=_NO),
        raw.RawStep(raw.StepKind.CREATE_IN_ROOT, flags=raw.RootFlag.MASK, a=0o40755, path2=b"/x", strv=(_NO,)),
        raw.RawStep(raw.StepKind.MOUNT_IN_ROOT, flags=raw.RootFlag.EXIST_OK, path2=b"/x", strv=(_NO,)),
        raw.RawStep(raw.StepKind.MOUNT_IN_ROOT, flags=1 << 30, path2=b"/x", strv=(_NO,)),
    ],
)
def test_c_refuses_a_flag_the_kind_does_not_know(step: raw.RawStep) -> None:
    """Each kind takes only its own bits: an unknown one is EINVAL before the step does anything."""
    plan = Plan((_Raw(step), Exec("/bin/true", ["true"])))
    with pytest.raises(StepError) as exc:
        nsprim.lowlevel.start(plan, clone_flags=C.CLONE_NEWNS)
    assert exc.value.errno == errno.EINVAL and exc.value.index == 0


@requires_root
def test_c_refuses_a_step_kind_it_does_not_have() -> None:
    step = raw.RawStep(raw.StepKind.SYNC)
    object.__setattr__(step, "kind", max(raw.StepKind) + 1)
    plan = Plan((_Raw(step), Exec("/bin/true", ["true"])))
    with pytest.raises(StepError) as exc:
        nsprim.lowlevel.start(plan)
    assert exc.value.errno == errno.EINVAL and exc.value.index == 0


@requires_root
@pytest.mark.parametrize("count", [20_000, NGROUPS_MAX])
def test_many_supplementary_groups_work_and_nothing_crashes(count: int) -> None:
    """Once a variable-length array on the vfork child's 64 KiB stack (in the caller's frame):
    the calling process itself crashed.  Run in a process of its own to see a crash as one."""
    code = textwrap.dedent(
        f"""
        from nsprim.container import Container
        box = Container(["sh", "-c", "grep ^Groups: /proc/self/status | wc -w"]).host_root()
        r = box.user(0, 0, groups=range(1, {count} + 1)).run(capture_output=True)
        print(r.returncode, r.stdout.decode().strip())
        """
    )
    env = {**os.environ, "PYTHONPATH": SRC}
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=300)
    assert r.returncode == 0, r.stderr  # -11 was the crash
    assert r.stdout.split() == ["0", str(count + 1)]  # "Groups:" and every gid


@requires_root
def test_one_group_too_many_is_a_config_error_before_anything_runs() -> None:
    with pytest.raises(ConfigError, match="at most 65536") as exc:
        ContainerConfig(argv=("true",), groups=tuple(range(NGROUPS_MAX + 1))).validate()
    assert exc.value.what == "groups"
    with pytest.raises(ConfigError):
        nsprim.run(["true"], groups=range(NGROUPS_MAX + 1))


@requires_root
def test_nsprim_run_timeout_says_the_process_was_killed() -> None:
    with pytest.raises(nsprim.TimeoutExpired, match=r"process \d+ killed after 0.5 s timeout") as exc:
        nsprim.run(["sleep", "60"], timeout=0.5)
    assert exc.value.killed


def test_a_root_kind_is_an_enum_and_its_value_is_taken_too() -> None:
    from nsprim.container import RootKind, RootSpec

    assert RootSpec("overlay", layers=(Path("/x"),)).kind is RootKind.OVERLAY
    assert Container(["true"]).host_root().config.root == RootSpec(RootKind.HOST)
    with pytest.raises(ConfigError, match="root kind 'layered': not one of host, directory, overlay") as info:
        RootSpec("layered")  # type: ignore[arg-type]
    assert info.value.what == "root.kind"
