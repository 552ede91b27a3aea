"""Profiles in OCI and Docker JSON: parsing, errors that name the entry, round trips."""

from __future__ import annotations

import errno
import json
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from nsprim.errors import ConfigError
from nsprim.security import (
    Capability,
    CapabilitySet,
    SeccompProfileError,
    SecurityConfigError,
    UnknownCapabilityError,
    UnknownSyscallError,
)
from nsprim.security.seccomp import (
    ARCHES,
    Action,
    ActionKind,
    Op,
    Profile,
    Seccomp,
    compile_profile,
    docker_default_profile,
    load_profile,
    parse_profile,
)
from nsprim.security.seccomp.parse import profile_to_dict

from .test_bpf import profiles

OCI = {
    "defaultAction": "SCMP_ACT_ERRNO",
    "defaultErrnoRet": 38,
    "architectures": ["SCMP_ARCH_X86_64", "SCMP_ARCH_X86", "SCMP_ARCH_X32"],
    "flags": ["SECCOMP_FILTER_FLAG_LOG"],
    "syscalls": [
        {"names": ["read", "write", "exit_group"], "action": "SCMP_ACT_ALLOW"},
        {"names": ["socket"], "action": "SCMP_ACT_ALLOW", "args": [{"index": 0, "value": 40, "op": "SCMP_CMP_NE"}]},
        {
            "names": ["clone"],
            "action": "SCMP_ACT_ALLOW",
            "args": [{"index": 0, "value": 0x7E020000, "valueTwo": 0, "op": "SCMP_CMP_MASKED_EQ"}],
        },
        {"names": ["mount"], "action": "SCMP_ACT_ERRNO"},
        {"names": ["ptrace"], "action": "SCMP_ACT_KILL_PROCESS"},
    ],
}


def test_oci_form() -> None:
    p = parse_profile(OCI, host="x86_64")
    assert p.default_action == Action.errno(errno.ENOSYS)
    assert p.architectures == ("x86_64", "x86")  # x32 is never allowed
    assert p.flags == 2
    assert p.rules[0].names == ("read", "write", "exit_group") and p.rules[0].action == Action.allow()
    assert p.rules[1].args[0].op is Op.NE and p.rules[1].args[0].value == 40
    assert p.rules[2].args[0].op is Op.MASKED_EQ and p.rules[2].args[0].value == 0x7E020000
    assert p.rules[3].action == Action.errno(errno.EPERM)  # errnoRet defaults to EPERM, not defaultErrnoRet
    assert p.rules[4].action.kind is ActionKind.KILL_PROCESS


def test_json_text_and_file(tmp_path: Path) -> None:
    path = tmp_path / "profile.json"
    path.write_text(json.dumps(OCI))
    assert load_profile(path, host="x86_64") == parse_profile(json.dumps(OCI), host="x86_64")


def test_docker_form_resolves_arch_map_includes_and_excludes() -> None:
    doc = {
        "defaultAction": "SCMP_ACT_ERRNO",
        "archMap": [
            {"architecture": "SCMP_ARCH_AARCH64", "subArchitectures": ["SCMP_ARCH_ARM"]},
            {"architecture": "SCMP_ARCH_X86_64", "subArchitectures": ["SCMP_ARCH_X86", "SCMP_ARCH_X32"]},
        ],
        "syscalls": [
            {"name": "read", "action": "SCMP_ACT_ALLOW"},
            {"names": ["mount"], "action": "SCMP_ACT_ALLOW", "includes": {"caps": ["CAP_SYS_ADMIN"]}},
            {"names": ["ptrace"], "action": "SCMP_ACT_ALLOW", "includes": {"minKernel": "4.8"}},
            {"names": ["arch_prctl"], "action": "SCMP_ACT_ALLOW", "includes": {"arches": ["amd64"]}},
            {"names": ["clone3"], "action": "SCMP_ACT_ERRNO", "errnoRet": 38, "excludes": {"caps": ["SYS_ADMIN"]}},
        ],
    }
    p = parse_profile(doc, host="x86_64")
    assert p.architectures == ("x86_64", "x86")
    assert parse_profile(doc, host="aarch64").architectures == ("aarch64",)
    plain = p.resolve(CapabilitySet(), host="x86_64", kernel=(6, 1))
    assert [r.names for r in plain.rules] == [("read",), ("ptrace",), ("arch_prctl",), ("clone3",)]
    admin = p.resolve(CapabilitySet.of(Capability.SYS_ADMIN), host="aarch64", kernel=(4, 4))
    assert [r.names for r in admin.rules] == [("read",), ("mount",)]


def test_docker_default_round_trips_through_json() -> None:
    d = profile_to_dict(docker_default_profile())
    assert parse_profile(json.loads(json.dumps(d))) == docker_default_profile()


@settings(max_examples=150, deadline=None)
@given(profiles)
def test_round_trip(profile: Profile) -> None:
    text = json.dumps(profile_to_dict(profile))
    back = parse_profile(text, host="x86_64")
    # JSON carries neither the foreign-ABI action nor the ENOSYS stub switch; libseccomp adds the native arch.
    expected = replace(
        profile, architectures=back.architectures, foreign_action=Action.kill_process(), enosys_newer=True
    )
    assert back == expected
    assert compile_profile(back) == compile_profile(expected)


ERRORS: list[tuple[dict[str, Any], type[ConfigError], str]] = [
    ({"syscalls": []}, SeccompProfileError, "seccomp profile: defaultAction: missing"),
    ({"defaultAction": "SCMP_ACT_FOO"}, SeccompProfileError, "defaultAction: unknown action `SCMP_ACT_FOO`"),
    ({"defaultAction": 3}, SeccompProfileError, "defaultAction: expected an action name, got int"),
    (
        {"defaultAction": "SCMP_ACT_ERRNO", "defaultErrnoRet": -1},
        SeccompProfileError,
        "defaultErrnoRet: -1 is out of the unsigned 16-bit range",
    ),
    (
        {
            "defaultAction": "SCMP_ACT_ALLOW",
            "syscalls": [
                {"names": ["read"], "action": "SCMP_ACT_ALLOW"},
                {"names": ["read", "foo"], "action": "SCMP_ACT_ERRNO"},
            ],
        },
        UnknownSyscallError,
        "seccomp profile: syscalls[1].names[1]: unknown syscall `foo` for x86_64",
    ),
    (
        {"defaultAction": "SCMP_ACT_ALLOW", "syscalls": [{"names": "read", "action": "SCMP_ACT_ERRNO"}]},
        SeccompProfileError,
        "syscalls[0].names: expected a list of strings, got str",
    ),
    (
        {"defaultAction": "SCMP_ACT_ALLOW", "syscalls": [{"action": "SCMP_ACT_ERRNO"}]},
        SeccompProfileError,
        "syscalls[0].names: missing",
    ),
    (
        {"defaultAction": "SCMP_ACT_ALLOW", "syscalls": [{"names": ["read"]}]},
        SeccompProfileError,
        "syscalls[0].action: missing",
    ),
    (
        {"defaultAction": "SCMP_ACT_ALLOW", "syscalls": [{"names": ["read"], "action": "SCMP_ACT_NOTIFY"}]},
        SeccompProfileError,
        "syscalls[0].action: SCMP_ACT_NOTIFY needs a seccomp agent",
    ),
    (
        {
            "defaultAction": "SCMP_ACT_ALLOW",
            "syscalls": [
                {"names": ["read"], "action": "SCMP_ACT_ERRNO", "args": [{"index": 6, "value": 1, "op": "SCMP_CMP_EQ"}]}
            ],
        },
        SeccompProfileError,
        "syscalls[0].args[0].index: argument index 6 out of range 0..5",
    ),
    (
        {
            "defaultAction": "SCMP_ACT_ALLOW",
            "syscalls": [
                {
                    "names": ["read"],
                    "action": "SCMP_ACT_ERRNO",
                    "args": [{"index": 0, "value": 1, "op": "SCMP_CMP_ALMOST"}],
                }
            ],
        },
        SeccompProfileError,
        "syscalls[0].args[0].op: unknown operator `SCMP_CMP_ALMOST`",
    ),
    (
        {
            "defaultAction": "SCMP_ACT_ALLOW",
            "syscalls": [
                {
                    "names": ["read"],
                    "action": "SCMP_ACT_ERRNO",
                    "args": [{"index": 0, "value": 1 << 64, "op": "SCMP_CMP_EQ"}],
                }
            ],
        },
        SeccompProfileError,
        "syscalls[0].args[0].value: 18446744073709551616 is out of the unsigned 64-bit range",
    ),
    (
        {
            "defaultAction": "SCMP_ACT_ALLOW",
            "syscalls": [{"names": ["read"], "action": "SCMP_ACT_ERRNO", "args": [{"index": 0, "op": "SCMP_CMP_EQ"}]}],
        },
        SeccompProfileError,
        "syscalls[0].args[0].value: missing",
    ),
    (
        {
            "defaultAction": "SCMP_ACT_ALLOW",
            "syscalls": [{"names": ["read"], "action": "SCMP_ACT_ERRNO", "includes": {"caps": ["CAP_FLY"]}}],
        },
        UnknownCapabilityError,
        "seccomp profile: syscalls[0].includes.caps[0]: unknown capability `CAP_FLY`",
    ),
    (
        {
            "defaultAction": "SCMP_ACT_ALLOW",
            "syscalls": [{"names": ["read"], "action": "SCMP_ACT_ERRNO", "excludes": {"minKernel": "soon"}}],
        },
        SeccompProfileError,
        "syscalls[0].excludes.minKernel: invalid kernel version `soon`",
    ),
    (
        {"defaultAction": "SCMP_ACT_ALLOW", "architectures": ["SCMP_ARCH_VAX"]},
        SeccompProfileError,
        "architectures[0]: unknown architecture `SCMP_ARCH_VAX`",
    ),
    (
        {"defaultAction": "SCMP_ACT_ALLOW", "flags": ["SECCOMP_FILTER_FLAG_FAST"]},
        SeccompProfileError,
        "flags[0]: unknown seccomp filter flag `SECCOMP_FILTER_FLAG_FAST`",
    ),
    (
        {
            "defaultAction": "SCMP_ACT_ALLOW",
            "architectures": ["SCMP_ARCH_X86_64"],
            "archMap": [{"architecture": "SCMP_ARCH_X86_64"}],
        },
        SeccompProfileError,
        "archMap: use either `architectures` or `archMap`, not both",
    ),
]


@pytest.mark.parametrize(("doc", "cls", "message"), ERRORS)
def test_errors_name_the_entry(doc: dict[str, Any], cls: type[ConfigError], message: str) -> None:
    with pytest.raises(cls) as info:
        parse_profile(doc, host="x86_64")
    assert message in str(info.value)
    assert isinstance(info.value, ConfigError) and isinstance(info.value, ValueError)


def test_invalid_json_and_file_name(tmp_path: Path) -> None:
    with pytest.raises(SeccompProfileError, match="invalid JSON"):
        parse_profile("{")
    path = tmp_path / "p.json"
    path.write_text(
        json.dumps({"defaultAction": "SCMP_ACT_ALLOW", "syscalls": [{"names": ["nope"], "action": "SCMP_ACT_ERRNO"}]})
    )
    with pytest.raises(UnknownSyscallError) as info:
        load_profile(path, host="x86_64")
    assert str(info.value) == f"seccomp profile: {path}: syscalls[0].names[0]: unknown syscall `nope` for x86_64"


def test_non_strict_skips_unknown_names_like_runc() -> None:
    doc = {"defaultAction": "SCMP_ACT_ALLOW", "syscalls": [{"names": ["nope", "mount"], "action": "SCMP_ACT_ERRNO"}]}
    assert parse_profile(doc, strict=False).rules[0].names == ("mount",)


def test_names_of_other_architectures_are_accepted() -> None:
    doc = {
        "defaultAction": "SCMP_ACT_ALLOW",
        "syscalls": [{"names": ["arm_fadvise64_64", "chown32"], "action": "SCMP_ACT_ERRNO"}],
    }
    program = compile_profile(parse_profile(doc, host="x86_64"), arches=["x86_64"])
    assert len(program) > 0


def test_seccomp_deny_shorthand() -> None:
    p = Seccomp.deny("mount", "keyctl")
    x = ARCHES["x86_64"]
    prog = p.compile()
    native = p.arches()[0]
    assert prog.run(native.audit_arch, native.syscalls["mount"]) == Action.errno(errno.EPERM).ret
    assert prog.run(native.audit_arch, native.syscalls["read"]) == Action.allow().ret
    with pytest.raises(UnknownSyscallError, match=r"unknown syscall `mountt` for"):
        Seccomp.deny("mountt")
    assert x.syscalls["mount"] == 165


json_values = st.recursive(
    st.none() | st.booleans() | st.integers(-(1 << 70), 1 << 70) | st.text(max_size=8),
    lambda children: st.lists(children, max_size=3) | st.dictionaries(st.text(max_size=8), children, max_size=3),
    max_leaves=10,
)


@st.composite
def mutated(draw: st.DrawFn) -> Any:
    """A valid profile with one value somewhere replaced by random JSON."""
    doc = json.loads(json.dumps(OCI))
    paths: list[tuple[Any, Any]] = []

    def walk(node: Any) -> None:
        items = node.items() if isinstance(node, dict) else enumerate(node) if isinstance(node, list) else []
        for key, child in items:
            paths.append((node, key))
            walk(child)

    walk(doc)
    node, key = draw(st.sampled_from(paths))
    node[key] = draw(json_values)
    return doc


@settings(max_examples=300, deadline=None)
@given(st.one_of(mutated(), json_values))
def test_garbage_gives_a_config_error_or_a_profile(doc: Any) -> None:
    try:
        profile = parse_profile(doc, host="x86_64")
    except SecurityConfigError:
        return
    compile_profile(profile)
