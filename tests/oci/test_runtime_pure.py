"""The runtime's pure parts: signals, the hot path's JSON, mount options, versions."""

from __future__ import annotations

import json
import math
import signal
import subprocess
import sys

import pytest
from hypothesis import assume, given
from hypothesis import strategies as st

from nsprim.errors import ConfigError, SpecError
from nsprim.oci import SPEC_VERSION
from nsprim.oci.runtime import jsonio
from nsprim.oci.runtime.features import SPEC_VERSION_MAX
from nsprim.oci.runtime.mount_options import (
    MOUNT_ATTR,
    MOUNT_OPTIONS,
    MS,
    UNSUPPORTED_MOUNT_OPTIONS,
    parse_mount_options,
)
from nsprim.oci.runtime.signals import SIGNAL_MAX, parse_signal, signal_names

NAMES = signal_names()


def test_the_runtime_speaks_the_models_version() -> None:
    assert SPEC_VERSION_MAX == SPEC_VERSION


# ---- signals ------------------------------------------------------------------------------------


@given(st.sampled_from(sorted(NAMES)), st.booleans(), st.lists(st.booleans(), min_size=12, max_size=12))
def test_signal_names_with_or_without_sig_in_any_case(name: str, prefix: bool, upper: list[bool]) -> None:
    spelled = ("SIG" if prefix else "") + name
    spelled = "".join(c.upper() if upper[i % len(upper)] else c.lower() for i, c in enumerate(spelled))
    assert parse_signal(spelled) == NAMES[name]


@given(st.integers(min_value=0, max_value=SIGNAL_MAX))
def test_signal_numbers(number: int) -> None:
    assert parse_signal(str(number)) == number


def test_signal_names_are_the_hosts() -> None:
    assert parse_signal("TERM") == parse_signal("SIGTERM") == parse_signal("15") == signal.SIGTERM
    assert parse_signal("KILL") == 9
    assert parse_signal("RTMIN") == signal.SIGRTMIN and parse_signal("SIGRTMAX") == signal.SIGRTMAX
    assert parse_signal("RTMIN+2") == signal.SIGRTMIN + 2 and parse_signal("rtmax-1") == signal.SIGRTMAX - 1
    assert parse_signal("SIGCHLD") == parse_signal("CLD") == signal.SIGCHLD


@given(st.text(max_size=20))
def test_anything_else_is_refused(text: str) -> None:
    name = text.upper().removeprefix("SIG")
    assume(name not in NAMES)
    assume(not (text.isascii() and text.isdigit() and int(text) <= SIGNAL_MAX))
    with pytest.raises(ConfigError, match="unknown signal"):
        parse_signal(text)


@pytest.mark.parametrize("bad", ["", "SIG", "65", "-1", "+15", " 15", "RTMIN+99", "RTMAX+1", "RTMIN-1", "SIGFOO", "9x"])
def test_bad_signals(bad: str) -> None:
    with pytest.raises(ConfigError):
        parse_signal(bad)


# ---- JSON without the json package --------------------------------------------------------------

json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4),
    max_leaves=20,
)


@given(json_values, st.sampled_from([None, 2, 4, "\t"]))
def test_dumps_writes_what_json_dumps_writes(value: object, indent: int | str | None) -> None:
    assert jsonio.dumps(value, indent=indent) == json.dumps(value, indent=indent)
    assert jsonio.dumps(value, compact=True) == json.dumps(value, separators=(",", ":"))


@given(json_values)
def test_loads_reads_what_json_loads_reads(value: object) -> None:
    text = json.dumps(value, indent=1)
    assert jsonio.loads(text) == json.loads(text)
    assert jsonio.loads(f"  {text}\n".encode()) == value


def test_non_finite_floats_and_bad_documents() -> None:
    assert jsonio.dumps([math.inf, -math.inf]) == json.dumps([math.inf, -math.inf])
    assert math.isnan(jsonio.loads("NaN"))  # type: ignore[arg-type]
    for bad in ("", "{", '{"a": 1} x', "[1,]", '"\\x"'):
        with pytest.raises(ValueError):
            jsonio.loads(bad)
    with pytest.raises(TypeError):
        jsonio.dumps({1j})


def test_the_state_path_imports_neither_json_nor_typing() -> None:
    code = (
        "import sys; import nsprim.oci.runtime.commands, nsprim.oci.runtime.cli;"
        "print(sorted({'json', 're', 'enum', 'typing', 'nsprim._sys', '_cffi_backend'} & set(sys.modules)))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"


def test_start_and_kill_import_no_enum_socket_nor_plan() -> None:
    # podman calls `start` and `kill` once per container: what they import is the state path's and a little more.
    code = (
        "import sys; import nsprim.oci.runtime.cli, nsprim.oci.runtime.lifecycle, nsprim.oci.runtime.signals,"
        " nsprim.oci.runtime.commands, nsprim._start_report;"
        "print(sorted({'typing', 're', 'enum', 'socket', 'signal', 'selectors', 'pathlib', 'nsprim.plan',"
        " 'nsprim.handoff', 'nsprim._sys', '_cffi_backend'} & set(sys.modules)))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"


def test_delete_imports_neither_the_spec_model_nor_the_plan() -> None:
    # `delete` removes the runtime's default parent group through nsprim.oci.runtime.cgroups.
    code = (
        "import sys; import nsprim.oci.runtime.commands, nsprim.oci.runtime.cgroups;"
        "print(sorted({'typing', 'socket', 'nsprim.oci.spec', 'nsprim.oci.resources', 'nsprim.plan', 'nsprim.cgroup',"
        " 'nsprim._sys'} & set(sys.modules)))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"


def test_create_imports_what_a_bundle_needs_only() -> None:
    # Not the RootFS builder and overlay, the cgroup statistics and event watch, threading, socket, signal, json.
    code = (
        "import sys; import nsprim.oci.runtime.lifecycle, nsprim.oci.convert, nsprim.oci.runtime.cgroups,"
        " nsprim.cgroup.group, nsprim.lowlevel, nsprim.spawning, nsprim._sys.watcher;"
        "print(sorted({'nsprim.fs.rootfs', 'nsprim.fs.overlay', 'nsprim.cgroup.stats', 'nsprim.cgroup.watch',"
        " 'threading', 'socket', 'selectors', 'signal', 'json', 'argparse'} & set(sys.modules)))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"


_ODD_JSON = [
    b'{"ociVersion": ',
    b"\xef\xbb\xbf{}",
    b"\xff\xfe{\x00}\x00",
    b"\x80{}",
    "[1",
    '{"a": 1}x',
    b"{\x00\x00\x00",
]


@pytest.mark.parametrize("text", _ODD_JSON)
def test_a_spec_parses_as_json_loads_does(text: str | bytes) -> None:
    # Spec.loads reads UTF-8 through the C scanner alone, and anything else through the json package.
    from nsprim.errors import SpecError
    from nsprim.oci.spec import Spec

    try:
        expected = json.loads(text)
    except ValueError as exc:
        expected = exc
    with pytest.raises(SpecError) as caught:
        Spec.loads(text)
    if isinstance(expected, json.JSONDecodeError):
        assert f"{expected.msg} at line {expected.lineno} column {expected.colno}" in str(caught.value)
    elif isinstance(expected, UnicodeDecodeError):
        assert str(expected) in str(caught.value)
    else:
        assert "required, but missing" in str(caught.value)  # parsed, then refused as a spec


# ---- mount options ------------------------------------------------------------------------------


def test_mount_flags_are_the_kernels() -> None:
    from nsprim._sys import lib
    from nsprim.fs.mount import MountFlags

    for name, value in MS.items():
        assert MountFlags[name].value == value
    for name, value in MOUNT_ATTR.items():
        assert getattr(lib, f"MOUNT_ATTR_{name}") == value


def test_mount_options_sorted_out() -> None:
    opts = parse_mount_options(["rbind", "ro", "nosuid", "rprivate", "mode=755", "rw", "rro", "size=1k"])
    assert opts.is_bind
    assert opts.flags == MS["BIND"] | MS["REC"] | MS["NOSUID"]
    assert opts.clear == MS["RDONLY"]  # the later rw wins
    assert opts.propagation == (MS["PRIVATE"] | MS["REC"],)
    assert opts.recursive_attrs == MOUNT_ATTR["RDONLY"]
    assert opts.data == ("mode=755", "size=1k")
    assert parse_mount_options(["defaults"]) == parse_mount_options([])


@pytest.mark.parametrize("name", sorted(UNSUPPORTED_MOUNT_OPTIONS))
def test_unsupported_mount_options_are_refused_by_name(name: str) -> None:
    with pytest.raises(SpecError) as info:
        parse_mount_options(["nosuid", name], "mounts[3].options")
    assert info.value.field == "mounts[3].options[1]"
    assert str(info.value).startswith(f'mounts[3].options[1]: mount option "{name}"')


@given(st.lists(st.sampled_from(MOUNT_OPTIONS), max_size=8))
def test_known_options_never_become_data(options: list[str]) -> None:
    parsed = parse_mount_options(options)
    assert parsed.data == ()
    assert parsed.flags & parsed.clear == 0


def test_the_errors_import_neither_typing_nor_re() -> None:
    # A runtime's error path (`state` of an unknown id) imports the errors and nothing heavy.
    code = "import sys; import nsprim.errors; print(sorted({'json', 're', 'enum', 'typing'} & set(sys.modules)))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"
