"""Capabilities: names and sets (pure), and the five sets a payload really gets (kernel)."""

from __future__ import annotations

import os
import re

import pytest
from hypothesis import given
from hypothesis import strategies as st

from nsprim.errors import ConfigError, NsprimError, StepError
from nsprim.security import (
    DOCKER_DEFAULT_CAPS,
    Capabilities,
    Capability,
    CapabilitySet,
    CapsPhase,
    SecurityConfigError,
    SecurityPolicy,
    SetCapabilities,
    UnknownCapabilityError,
    last_cap,
)

from ..tools import missing
from .helpers import IS_ROOT, run, sh, status_caps

root = pytest.mark.skipif(not IS_ROOT, reason="needs root")
NO_SECCOMP = {"seccomp": None}

# ---- pure ------------------------------------------------------------------------------------


def test_numbering_matches_the_kernel_header() -> None:
    header = "/usr/include/linux/capability.h"
    if not os.path.exists(header):
        raise missing(header, "linux-libc-dev")
    with open(header) as f:
        defined = dict(re.findall(r"#define CAP_([A-Z_]+)\s+(\d+)\s*$", f.read(), re.M))
    defined.pop("LAST_CAP", None)
    assert {name: int(v) for name, v in defined.items()} == {c.name: c.value for c in Capability}
    assert Capability.CHECKPOINT_RESTORE == 40


def test_last_cap_is_read_from_proc() -> None:
    with open("/proc/sys/kernel/cap_last_cap") as f:
        assert last_cap() == int(f.read())


@pytest.mark.parametrize("name", ["sys_admin", "CAP_SYS_ADMIN", "cap_sys_admin", " Sys_Admin ", 21])
def test_parse_names_any_case_with_or_without_prefix(name: str | int) -> None:
    assert Capability.parse(name) is Capability.SYS_ADMIN


@pytest.mark.parametrize("name", ["CAP_FOO", "sys_admins", "", 99])
def test_unknown_capability_is_a_config_error(name: str | int) -> None:
    with pytest.raises(UnknownCapabilityError) as info:
        Capabilities.docker_default().add(name)
    assert isinstance(info.value, ConfigError)
    assert f"unknown capability `{name}`" in str(info.value)


def test_docker_default_is_dockers_fourteen() -> None:
    caps = Capabilities.docker_default()
    assert len(DOCKER_DEFAULT_CAPS) == 14
    assert caps.bounding == caps.effective == caps.permitted == DOCKER_DEFAULT_CAPS
    assert not caps.inheritable and not caps.ambient  # CVE-2022-29162: nothing inheritable
    assert DOCKER_DEFAULT_CAPS.mask == 0xA80425FB  # what `docker run` shows in CapBnd


def test_presets_add_drop() -> None:
    assert Capabilities.none() == Capabilities()
    every = Capabilities.all()
    assert every.bounding == CapabilitySet.all() and not every.inheritable
    caps = Capabilities.docker_default().drop("net_raw", "CAP_MKNOD").add("sys_ptrace")
    assert Capability.NET_RAW not in caps.bounding and Capability.MKNOD not in caps.effective
    assert all(Capability.SYS_PTRACE in s for s in (caps.bounding, caps.effective, caps.permitted))
    assert Capabilities.docker_default().drop("ALL") == Capabilities.none()
    assert Capabilities.none().add("all").bounding == CapabilitySet.all()


def test_ambient_and_non_root_user() -> None:
    caps = Capabilities.docker_default().with_ambient("net_bind_service")
    assert caps.is_consistent()
    user = caps.for_user(1000)
    assert user.effective == user.permitted == user.ambient == CapabilitySet.of("NET_BIND_SERVICE")
    assert user.bounding == caps.bounding
    plain = Capabilities.docker_default().for_user(1000)
    assert not plain.effective and not plain.permitted  # as Docker does for a non-root user
    assert Capabilities.docker_default().for_user(0) == Capabilities.docker_default()


@given(st.integers(0, (1 << 64) - 1))
def test_words_round_trip(mask: int) -> None:
    lo, hi = CapabilitySet(mask).words()
    assert -(1 << 31) <= lo < 1 << 31 and -(1 << 31) <= hi < 1 << 31
    assert (lo & 0xFFFFFFFF) | (hi & 0xFFFFFFFF) << 32 == mask


@given(st.sets(st.sampled_from(list(Capability))), st.sets(st.sampled_from(list(Capability))))
def test_add_then_drop(add: set[Capability], drop: set[Capability]) -> None:
    caps = Capabilities.none().add(add).drop(drop)
    assert set(caps.bounding) == add - drop
    assert caps.is_consistent()


def test_from_status() -> None:
    text = "Name:\tsh\nCapInh:\t0000000000000000\nCapPrm:\t00000000a80425fb\nCapEff:\t00000000a80425fb\n"
    text += "CapBnd:\t00000000a80425fb\nCapAmb:\t0000000000000000\n"
    assert Capabilities.from_status(text) == Capabilities.docker_default()


def test_step_lowering_and_text() -> None:
    step = SetCapabilities(Capabilities.of("chown"), CapsPhase.BOUNDING)
    raw = step.lower()
    assert raw.ints is not None and len(raw.ints) == 10 and raw.ints[0] == 1
    assert step.describe() == "set bounding set to [chown]"


# ---- kernel ------------------------------------------------------------------------------------


@root
def test_default_sets_in_the_payload() -> None:
    assert status_caps(SecurityPolicy(**NO_SECCOMP)) == Capabilities.docker_default()


@root
def test_default_sets_with_seccomp() -> None:
    assert status_caps(SecurityPolicy()) == Capabilities.docker_default()


@root
def test_none_preset() -> None:
    assert status_caps(SecurityPolicy(Capabilities.none(), **NO_SECCOMP)) == Capabilities.none()


@root
def test_all_preset_is_clamped_to_what_the_runtime_has() -> None:
    with open("/proc/self/status") as f:
        mine = Capabilities.from_status(f.read())
    got = status_caps(SecurityPolicy(Capabilities.all(), **NO_SECCOMP))
    assert got.bounding == mine.bounding & CapabilitySet.all()
    assert got.effective == got.permitted == mine.permitted


@root
def test_unclamped_request_beyond_the_runtime_fails_with_a_step_error() -> None:
    with open("/proc/self/status") as f:
        mine = Capabilities.from_status(f.read())
    missing = CapabilitySet.all() - mine.permitted
    if not missing:
        pytest.skip("the runtime has every capability")
    policy = SecurityPolicy(Capabilities.of(missing), None, clamp_caps=False)
    with pytest.raises(StepError) as info:
        sh("true", policy)
    assert info.value.errno == 1 and "set capabilities" in str(info.value)


@root
def test_add_and_drop_reach_all_five_sets() -> None:
    caps = Capabilities.docker_default().drop("chown", "net_raw").add("sys_ptrace")
    assert status_caps(SecurityPolicy(caps, **NO_SECCOMP)) == caps


@root
def test_non_root_user_gets_empty_effective_and_permitted() -> None:
    got = status_caps(SecurityPolicy(**NO_SECCOMP), uid=1000, gid=1000)
    assert got.bounding == DOCKER_DEFAULT_CAPS
    assert not got.effective and not got.permitted and not got.inheritable and not got.ambient


@root
def test_non_root_user_keeps_ambient_capabilities_across_exec() -> None:
    caps = Capabilities.docker_default().with_ambient("net_bind_service")
    got = status_caps(SecurityPolicy(caps, **NO_SECCOMP), uid=1000, gid=1000)
    nbs = CapabilitySet.of("net_bind_service")
    assert got.effective == got.permitted == got.ambient == got.inheritable == nbs
    # ... and can use it: bind port 80 as uid 1000
    r = run(
        ["python3", "-c", "import socket; socket.socket().bind(('127.0.0.1', 80)); print('bound')"],
        SecurityPolicy(caps, **NO_SECCOMP),
        uid=1000,
        gid=1000,
    )
    assert r.stdout == b"bound\n", r.stderr


@root
def test_uid_switch_works_even_when_setuid_caps_are_dropped() -> None:
    # The bounding set loses CAP_SETUID before the switch, yet the switch still works:
    # the effective set is only reduced after it.
    caps = Capabilities.none()
    r = sh("id -u; grep CapEff /proc/self/status", SecurityPolicy(caps, **NO_SECCOMP), uid=1000, gid=1000)
    assert r.returncode == 0, r.stderr
    assert r.stdout.split()[0] == b"1000" and r.stdout.split()[-1] == b"0000000000000000"


@root
def test_capabilities_cannot_be_regained_in_the_payload() -> None:
    # A payload that dropped caps cannot raise them again (capset to the full set fails).
    code = (
        "import ctypes; l=ctypes.CDLL(None, use_errno=True);"
        "h=(ctypes.c_uint32*2)(0x20080522,0); d=(ctypes.c_uint32*6)(*([0xffffffff]*6));"
        "print(l.capset(h,d), ctypes.get_errno())"
    )
    r = run(["python3", "-c", code], SecurityPolicy())
    assert r.stdout.split() == [b"-1", b"1"], r.stderr


# ---- bad input is a typed error ----------------------------------------------------------------

hex_like = st.one_of(
    st.text(),
    st.text(alphabet="0123456789abcdefABCDEF_x- \t\n+", max_size=24),
    st.integers().map(lambda n: f"{n:x}" if n >= 0 else str(n)),
    st.sampled_from(["", " ", "0x1f", "1_0", "-1", "+1", "00000000a80425fb", "1" * 17, "ff" * 9, "\u0663", "\uff11"]),
    st.none(),
    st.integers(),
    st.binary(max_size=8),
)


@given(hex_like)
def test_from_hex_gives_a_set_or_a_typed_error(text: object) -> None:
    try:
        caps = CapabilitySet.from_hex(text)  # type: ignore[arg-type]
    except NsprimError as exc:
        assert isinstance(exc, SecurityConfigError) and "hexadecimal" in str(exc)
        return
    assert isinstance(text, str) and re.fullmatch(r"[ \t\n\r\f\v]*[0-9a-fA-F]{1,16}[ \t\n\r\f\v]*", text)
    assert caps.mask == int(text, 16)


def test_from_hex_reads_proc_status_values() -> None:
    assert CapabilitySet.from_hex("00000000a80425fb\n") == DOCKER_DEFAULT_CAPS
    for bad in ("", "zz", "0x1f", "1_0", "-1", "1" * 17, "\u0661", "0\x1f"):
        with pytest.raises(SecurityConfigError, match="hexadecimal"):
            CapabilitySet.from_hex(bad)


@pytest.mark.parametrize("bad", [None, 1.5, b"\x15", True, object(), [None], ["CAP_CHOWN", 2.0], {"CAP_CHOWN": 1}])
def test_bad_capability_names_are_unknown_capability_errors(bad: object) -> None:
    for call in (
        lambda: Capabilities.docker_default().add(bad),  # type: ignore[arg-type]
        lambda: Capabilities.docker_default().drop(bad),  # type: ignore[arg-type]
        lambda: CapabilitySet.of(bad),  # type: ignore[arg-type]
    ):
        with pytest.raises(UnknownCapabilityError):
            call()


@pytest.mark.parametrize("mask", [-1, 1 << 64, "3", 1.0, None])
def test_bad_masks_are_typed_errors(mask: object) -> None:
    with pytest.raises(SecurityConfigError, match="capability mask"):
        CapabilitySet(mask)  # type: ignore[arg-type]
