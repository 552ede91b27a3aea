"""The OCI runtime spec model: loading, validation that names the field, and round trips."""

from __future__ import annotations

import contextlib
import enum
import json
import types
import typing
from collections.abc import Mapping
from pathlib import Path
from typing import Union

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from nsprim.errors import ConfigError, SpecError
from nsprim.oci import LinuxNamespaceType, Spec
from nsprim.oci import spec as model
from nsprim.oci._codec import _RANGES, JSON, Model, _plan

FULL: dict[str, object] = {
    "ociVersion": "1.2.0",
    "process": {
        "terminal": True,
        "consoleSize": {"height": 24, "width": 80},
        "user": {"uid": 1000, "gid": 1000, "umask": 18, "additionalGids": [5, 6]},
        "args": ["sh", "-c", "echo hi"],
        "env": ["PATH=/usr/bin:/bin", "TERM=xterm"],
        "cwd": "/srv",
        "capabilities": {
            "bounding": ["CAP_CHOWN", "CAP_KILL"],
            "effective": ["CAP_KILL"],
            "permitted": ["CAP_KILL"],
            "ambient": ["CAP_KILL"],
        },
        "rlimits": [{"type": "RLIMIT_NOFILE", "hard": 1024, "soft": 1024}],
        "noNewPrivileges": True,
        "oomScoreAdj": 0,
        "apparmorProfile": "unconfined",
        "selinuxLabel": "system_u:system_r:container_t:s0",
        "ioPriority": {"class": "IOPRIO_CLASS_BE", "priority": 4},
        "execCPUAffinity": {"initial": "0", "final": "0-1"},
    },
    "root": {"path": "rootfs", "readonly": True},
    "hostname": "box",
    "domainname": "example.org",
    "mounts": [
        {"destination": "/proc", "type": "proc", "source": "proc"},
        {
            "destination": "/data",
            "type": "bind",
            "source": "/srv/data",
            "options": ["rbind", "rro", "idmap"],
            "uidMappings": [{"containerID": 0, "hostID": 100000, "size": 65536}],
            "gidMappings": [{"containerID": 0, "hostID": 100000, "size": 65536}],
        },
    ],
    "hooks": {
        "prestart": [{"path": "/usr/bin/true"}],
        "createRuntime": [{"path": "/usr/bin/env", "args": ["env", "x"], "env": ["A=1"], "timeout": 5}],
        "createContainer": [{"path": "/bin/true"}],
        "startContainer": [{"path": "/bin/true"}],
        "poststart": [{"path": "/bin/true"}],
        "poststop": [{"path": "/bin/true"}],
    },
    "annotations": {"org.example.key": "value"},
    "linux": {
        "uidMappings": [{"containerID": 0, "hostID": 100000, "size": 65536}],
        "gidMappings": [{"containerID": 0, "hostID": 100000, "size": 65536}],
        "sysctl": {"net.ipv4.ip_forward": "1"},
        "resources": {
            "devices": [
                {"allow": False, "access": "rwm"},
                {"allow": True, "type": "c", "major": 1, "minor": 3, "access": "rw"},
            ],
            "memory": {
                "limit": 67108864,
                "reservation": 33554432,
                "swap": 67108864,
                "swappiness": 0,
                "disableOOMKiller": False,
            },
            "cpu": {"shares": 1024, "quota": 50000, "period": 100000, "cpus": "0-1", "mems": "0"},
            "pids": {"limit": 64},
            "blockIO": {
                "weight": 500,
                "throttleReadBpsDevice": [{"major": 8, "minor": 0, "rate": 1048576}],
                "throttleWriteIOPSDevice": [{"major": 8, "minor": 0, "rate": 100}],
            },
            "hugepageLimits": [{"pageSize": "2MB", "limit": 0}],
            "network": {"classID": 1048577, "priorities": [{"name": "eth0", "priority": 500}]},
            "rdma": {"mlx5_1": {"hcaHandles": 3, "hcaObjects": 10000}},
            "unified": {"memory.high": "max"},
        },
        "cgroupsPath": "/nsprim/box",
        "namespaces": [
            {"type": "pid"},
            {"type": "network", "path": "/run/netns/x"},
            {"type": "mount"},
            {"type": "ipc"},
            {"type": "uts"},
            {"type": "user"},
            {"type": "cgroup"},
            {"type": "time"},
        ],
        "timeOffsets": {"monotonic": {"secs": 86400, "nanosecs": 5}, "boottime": {"secs": 1}},
        "devices": [{"path": "/dev/fuse", "type": "c", "major": 10, "minor": 229, "fileMode": 438, "uid": 0, "gid": 0}],
        "seccomp": {
            "defaultAction": "SCMP_ACT_ERRNO",
            "defaultErrnoRet": 1,
            "architectures": ["SCMP_ARCH_X86_64"],
            "flags": ["SECCOMP_FILTER_FLAG_LOG"],
            "syscalls": [
                {"names": ["read", "write"], "action": "SCMP_ACT_ALLOW"},
                {
                    "names": ["personality"],
                    "action": "SCMP_ACT_ALLOW",
                    "args": [{"index": 0, "value": 8, "op": "SCMP_CMP_EQ"}],
                },
            ],
        },
        "rootfsPropagation": "rslave",
        "maskedPaths": ["/proc/kcore"],
        "readonlyPaths": ["/proc/sys"],
        "mountLabel": "system_u:object_r:container_file_t:s0",
        "personality": {"domain": "LINUX"},
    },
}


def test_a_full_spec_round_trips_unchanged() -> None:
    spec = Spec.from_dict(FULL)
    assert spec.to_dict() == FULL
    assert spec.process is not None and spec.process.user.additional_gids == (5, 6)
    assert spec.linux is not None and spec.linux.namespace(LinuxNamespaceType.NETWORK) is not None
    assert Spec.loads(spec.dumps()) == spec


def test_unknown_fields_are_kept_at_every_level() -> None:
    doc = {
        "ociVersion": "1.0.2",
        "org.future.top": {"a": [1, 2]},
        "process": {"cwd": "/", "user": {"uid": 0, "gid": 0, "future": True}, "args": ["x"], "newField": 3},
        "linux": {"namespaces": [{"type": "pid", "extra": "kept"}], "landlock": {"x": 1}},
    }
    spec = Spec.from_dict(doc)
    assert spec.extra == {"org.future.top": {"a": [1, 2]}}
    assert spec.to_dict() == doc


@pytest.mark.parametrize(
    ("doc", "field", "words"),
    [
        (
            {"linux": {"namespaces": [{"type": "pid"}, {"type": "uts"}, {"type": "nett"}]}},
            "linux.namespaces[2].type",
            'unknown namespace type "nett"',
        ),
        ({"process": {"cwd": "/", "user": {"uid": -5, "gid": 0}}}, "process.user.uid", "out of range"),
        ({"process": {"cwd": "/", "user": {"uid": 2**32, "gid": 0}}}, "process.user.uid", "out of range"),
        ({"process": {"cwd": "/", "user": {"gid": 0}}}, "process.user.uid", "required"),
        ({"process": {"cwd": 5, "user": {"uid": 0, "gid": 0}}}, "process.cwd", "expected a string, got 5"),
        (
            {"process": {"cwd": "/", "user": {"uid": 0, "gid": 0}, "args": "sh"}},
            "process.args",
            'expected an array, got "sh"',
        ),
        ({"mounts": [{"type": "tmpfs"}]}, "mounts[0].destination", "required"),
        ({"root": {"path": "r", "readonly": "yes"}}, "root.readonly", "expected true or false"),
        ({"annotations": {"a": 1}}, 'annotations["a"]', "expected a string"),
        (
            {"linux": {"seccomp": {"defaultAction": "SCMP_ACT_MAYBE"}}},
            "linux.seccomp.defaultAction",
            'unknown seccomp action "SCMP_ACT_MAYBE"',
        ),
        ({"linux": {"resources": {"memory": {"limit": 1.5}}}}, "linux.resources.memory.limit", "expected an integer"),
    ],
)
def test_bad_fields_are_named(doc: dict[str, object], field: str, words: str) -> None:
    with pytest.raises(SpecError) as info:
        Spec.from_dict({"ociVersion": "1.2.0", **doc})
    assert info.value.field == field
    assert str(info.value).startswith(f"{field}: ")
    assert words in str(info.value)
    assert isinstance(info.value, ConfigError)


@pytest.mark.parametrize(
    ("doc", "words"),
    [
        ({}, "ociVersion: required"),
        ({"ociVersion": "2.0.0"}, "not supported"),
        ({"ociVersion": "one"}, "is not a version"),
        ([], "(document): expected an object"),
    ],
)
def test_bad_documents(doc: object, words: str) -> None:
    with pytest.raises(SpecError, match=words.replace("(", r"\(").replace(")", r"\)")):
        Spec.from_dict(doc)


def test_malformed_and_hostile_json(tmp_path: Path) -> None:
    with pytest.raises(SpecError, match=r"parse `config.json`: Expecting .* line 2 column"):
        Spec.loads('{"ociVersion": "1.0.0",\n x}')
    with pytest.raises(SpecError, match="parse"):
        Spec.loads("[" * 100_000 + "]" * 100_000)
    with pytest.raises(SpecError, match="parse"):
        Spec.loads(b"\xff\xfe{")
    with pytest.raises(SpecError, match=r"open `.*/config.json`: No such file"):
        Spec.load(tmp_path)


def test_save_and_load_a_bundle(tmp_path: Path) -> None:
    spec = Spec.from_dict(FULL)
    spec.save(tmp_path)
    assert Spec.load(tmp_path) == spec
    assert [p.name for p in tmp_path.iterdir()] == ["config.json"]


# ---- generated specs -------------------------------------------------------------------------

KEYS = st.text(st.characters(codec="utf-8", exclude_categories=("Cs",)), max_size=8)
SCALARS = st.one_of(st.none(), st.booleans(), st.integers(-(2**53), 2**53), st.text(max_size=8))


def _strategy(hint: object, kind: str, depth: int) -> st.SearchStrategy[object]:
    origin = typing.get_origin(hint)
    size = 2 if depth < 2 else 0  # keep generated trees small
    if hint is JSON:
        return SCALARS
    if origin is Union or origin is types.UnionType:
        (inner,) = [a for a in typing.get_args(hint) if a is not type(None)]
        return st.none() if depth >= 2 else st.one_of(st.none(), _strategy(inner, kind, depth))
    if origin is tuple:
        return st.lists(_strategy(typing.get_args(hint)[0], kind, depth), max_size=size).map(tuple)
    if origin is Mapping or origin is dict:
        return st.dictionaries(KEYS, _strategy(typing.get_args(hint)[1], kind, depth), max_size=size)
    if hint is str:
        return st.text(max_size=6)
    if hint is bool:
        return st.booleans()
    if hint is int:
        low, high = _RANGES[kind]
        return st.integers(low, high)
    if isinstance(hint, type) and issubclass(hint, enum.Enum):
        return st.sampled_from(list(hint))
    assert isinstance(hint, type) and issubclass(hint, Model)
    return model_strategy(hint, depth + 1)


def model_strategy(cls: type, depth: int = 0, **overrides: st.SearchStrategy[object]) -> st.SearchStrategy[object]:
    fields = _plan(cls)
    known = {f.key for f in fields}
    kwargs = {f.name: overrides[f.name] if f.name in overrides else _strategy(f.hint, f.kind, depth) for f in fields}
    extra = st.dictionaries(KEYS.filter(lambda k: k not in known), SCALARS, max_size=1)
    return st.builds(cls, extra=extra, **kwargs)


SPECS = model_strategy(Spec, oci_version=st.sampled_from(["1.0.0", "1.0.2", "1.2.0", "1.3.0"]))


@settings(max_examples=150, deadline=None)
@given(SPECS)
def test_generated_specs_round_trip_through_json(spec: object) -> None:
    assert isinstance(spec, Spec)
    text = json.dumps(spec.to_dict())
    assert Spec.from_dict(json.loads(text)) == spec


@settings(max_examples=150, deadline=None)
@given(st.recursive(SCALARS, lambda c: st.lists(c, max_size=3) | st.dictionaries(KEYS, c, max_size=3), max_leaves=20))
def test_any_json_loads_or_is_a_spec_error(doc: object) -> None:
    for candidate in (doc, {"ociVersion": "1.0.0", "process": doc}, {"ociVersion": "1.0.0", "linux": doc}):
        with contextlib.suppress(SpecError):
            Spec.from_dict(candidate)


def test_records_are_frozen_values() -> None:
    spec = Spec.from_dict(FULL)
    with pytest.raises(AttributeError, match="immutable"):
        spec.hostname = "x"  # type: ignore[misc]
    assert spec.replace(hostname="other").hostname == "other" and spec.hostname == "box"
    assert hash(model.LinuxIDMapping(container_id=0, host_id=1, size=2)) == hash(
        model.LinuxIDMapping(container_id=0, host_id=1, size=2)
    )
    assert repr(model.Root(path="rootfs")) == "Root(path='rootfs')"
    import pickle

    assert pickle.loads(pickle.dumps(spec)) == spec
    with pytest.raises(TypeError, match="needs `path`"):
        model.Root()  # type: ignore[call-arg]


def test_every_model_class_is_exported() -> None:
    classes = {
        name for name, value in vars(model).items() if isinstance(value, type) and value.__module__ == model.__name__
    }
    assert classes <= set(model.__all__)
