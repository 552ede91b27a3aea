"""Profiles in OCI and Docker JSON: parsing, errors that name the entry, round trips."""

from __future__ import annotations

import contextlib
import errno
import json
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from nsprim.errors import ConfigError, NsprimError, SyscallError
from nsprim.security import (
    DOCKER_DEFAULT_CAPS,
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
    ArgCmp,
    Op,
    Profile,
    Rule,
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
    prog = compile_profile(p)
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


# ---- any input: a profile or a typed error -------------------------------------------------------

json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=12),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4),
    max_leaves=20,
)
scmp_words = st.sampled_from(
    ["SCMP_ACT_ALLOW", "SCMP_ACT_ERRNO", "SCMP_ACT_KILL", "SCMP_ACT_NOTIFY", "SCMP_ARCH_X86_64", "SCMP_ARCH_X86",
     "SCMP_ARCH_AARCH64", "SCMP_ARCH_MIPS", "SCMP_CMP_EQ", "SCMP_CMP_MASKED_EQ", "==", "read", "uname", "nosuch",
     "CAP_SYS_ADMIN", "CAP_NOPE", "amd64", "4.8", "99999.1", "SECCOMP_FILTER_FLAG_LOG", ""]
)  # fmt: skip
field_values = st.one_of(scmp_words, json_values, st.lists(scmp_words, max_size=3), st.integers(-2, 1 << 65))
arg_entries = st.fixed_dictionaries(
    {}, optional={"index": field_values, "value": field_values, "valueTwo": field_values, "op": field_values}
)
syscall_entries = st.fixed_dictionaries(
    {},
    optional={
        "names": st.one_of(st.lists(scmp_words, max_size=3), field_values),
        "name": field_values,
        "action": field_values,
        "errnoRet": field_values,
        "args": st.one_of(st.lists(arg_entries, max_size=2), field_values),
        "includes": st.one_of(st.fixed_dictionaries({}, optional={"caps": field_values, "arches": field_values,
                                                                  "minKernel": field_values}), field_values),
        "excludes": field_values,
        "comment": field_values,
    },
)  # fmt: skip
profile_shaped = st.fixed_dictionaries(
    {},
    optional={
        "defaultAction": field_values,
        "defaultErrnoRet": field_values,
        "architectures": st.one_of(st.lists(scmp_words, max_size=3), field_values),
        "archMap": st.one_of(
            st.lists(st.fixed_dictionaries({}, optional={"architecture": field_values,
                                                         "subArchitectures": field_values}), max_size=2),
            field_values,
        ),
        "flags": st.one_of(st.lists(scmp_words, max_size=2), field_values),
        "syscalls": st.one_of(st.lists(syscall_entries, max_size=4), field_values),
    },
)  # fmt: skip


def mostly(valid: st.SearchStrategy[Any]) -> st.SearchStrategy[Any]:
    """*valid* seven times in eight, anything else the eighth."""
    return st.integers(0, 7).flatmap(lambda i: field_values if i == 0 else valid)


CALLS = ["read", "uname", "mount", "socket", "clone", "chown32"]
ACTIONS = ["SCMP_ACT_ALLOW", "SCMP_ACT_ERRNO", "SCMP_ACT_KILL_PROCESS", "SCMP_ACT_LOG"]
near_valid_rules = st.fixed_dictionaries(
    {"names": mostly(st.lists(st.sampled_from(CALLS), max_size=3)), "action": mostly(st.sampled_from(ACTIONS))},
    optional={
        "errnoRet": mostly(st.integers(0, 70_000)),
        "args": st.lists(
            st.fixed_dictionaries(
                {"index": mostly(st.integers(0, 7)), "value": mostly(st.integers(0, 1 << 64)),
                 "op": mostly(st.sampled_from([op.value for op in Op]))},
                optional={"valueTwo": mostly(st.integers(0, 1 << 64))},
            ),
            max_size=2,
        ),
        "includes": st.fixed_dictionaries(
            {}, optional={"caps": mostly(st.lists(st.sampled_from(["CAP_SYS_ADMIN", "CAP_CHOWN"]), max_size=2)),
                          "arches": mostly(st.lists(st.sampled_from(["amd64", "arm64"]), max_size=2)),
                          "minKernel": mostly(st.sampled_from(["4.8", "5.10", "6.1"]))}
        ),
    },
)  # fmt: skip
near_valid = st.fixed_dictionaries(
    {"defaultAction": mostly(st.sampled_from(["SCMP_ACT_ALLOW", "SCMP_ACT_ERRNO", "SCMP_ACT_KILL_PROCESS"]))},
    optional={
        "defaultErrnoRet": mostly(st.integers(0, 70_000)),
        "architectures": mostly(st.lists(st.sampled_from(["SCMP_ARCH_X86_64", "SCMP_ARCH_X86", "SCMP_ARCH_X32"]))),
        "syscalls": st.lists(near_valid_rules, max_size=5),
    },
)
nested = st.tuples(st.integers(1, 3000), st.sampled_from(["[", '{"a":', '{"syscalls":'])).map(lambda t: t[1] * t[0])
documents = st.one_of(
    profile_shaped,
    json_values,
    profile_shaped.map(json.dumps),
    profile_shaped.map(lambda d: json.dumps(d).encode("utf-16")),
    st.text(alphabet='[]{}":,\\ 0a', max_size=60),
    st.text(),
    st.binary(max_size=40),
    nested,
    nested.map(str.encode),
)


@settings(max_examples=400, deadline=None)
@given(documents)
def test_any_document_parses_and_compiles_or_is_a_typed_error(doc: Any) -> None:
    try:
        profile = parse_profile(doc)
    except NsprimError as exc:
        assert isinstance(exc, SeccompProfileError | UnknownCapabilityError), repr(exc)
        return
    assert isinstance(profile, Profile)
    with contextlib.suppress(NsprimError):
        compile_profile(profile)


@settings(max_examples=300, deadline=None)
@given(st.one_of(near_valid, near_valid.map(json.dumps)))
def test_nearly_valid_profiles_parse_and_compile_or_are_typed_errors(doc: Any) -> None:
    try:
        profile = parse_profile(doc)
    except NsprimError as exc:
        assert isinstance(exc, SeccompProfileError | UnknownCapabilityError), repr(exc)
        return
    try:
        program = compile_profile(profile)
    except NsprimError:
        return
    arch = profile.arches()[0]
    resolved = profile.resolve(DOCKER_DEFAULT_CAPS)
    for nr in (0, arch.syscalls["uname"], arch.syscalls["mount"], 1000):
        assert program.run(arch.audit_arch, nr) == resolved.evaluate(arch.audit_arch, nr)


def test_deep_nesting_is_refused_before_parsing() -> None:
    for doc in ("[" * 100_000, '{"a":' * 100_000, b"[" * 100_000, '{"syscalls": ' + "[" * 40 + "]" * 40 + "}"):
        with pytest.raises(SeccompProfileError, match="nested deeper than"):
            parse_profile(doc)
    # Brackets inside strings do not count.
    assert parse_profile('{"defaultAction": "SCMP_ACT_ALLOW", "comment": "' + "[" * 100 + '"}').rules == ()


def test_a_missing_profile_file_is_a_syscall_error(tmp_path: Path) -> None:
    with pytest.raises(SyscallError, match=r"read seccomp profile `.*/nope.json`: No such file or directory"):
        load_profile(tmp_path / "nope.json")


@pytest.mark.parametrize(
    "make",
    [
        lambda: Action(ActionKind.ERRNO, 70_000),
        lambda: Action.errno("EPERM"),  # type: ignore[arg-type]
        lambda: Seccomp.default().denying("unamee"),
        lambda: Seccomp.default().denying(["uname"]),  # type: ignore[arg-type]
        lambda: Seccomp.deny(None),  # type: ignore[arg-type]
        lambda: Rule("uname", Action.errno()),  # type: ignore[arg-type]
        lambda: Profile("allow"),  # type: ignore[arg-type]
        lambda: ArgCmp("0", Op.EQ, 1),  # type: ignore[arg-type]
        lambda: ArgCmp(0, "==", 1),  # type: ignore[arg-type]
        lambda: Seccomp.deny("mount").resolve(host=7),  # type: ignore[arg-type]
        lambda: parse_profile({"defaultAction": "SCMP_ACT_ALLOW", "syscalls": [{"names": ["read"],
                               "action": "SCMP_ACT_ALLOW", "comment": ["x"] * 3}]}),
    ],
)  # fmt: skip
def test_bad_profile_parts_are_typed_errors(make: Any) -> None:
    with pytest.raises(SeccompProfileError):
        make()
