"""The result format: every value it may carry comes back equal and of its exact type; nothing else is read."""

from __future__ import annotations

import base64
import contextlib
import json
import math
import pickle
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from nsprim.call.answer import read_answer
from nsprim.call.errors import (
    CallDiedError,
    CallTimeoutError,
    PythonNotFoundError,
    PythonVersionError,
    RemoteError,
    UnsafeResultError,
)
from nsprim.call.wire import (
    MAX_CONTAINERS,
    MAX_DEPTH,
    MAX_SIZE,
    UnencodableError,
    WireError,
    decode_value,
    dumps,
    encode_value,
    loads,
)

hashable = st.recursive(
    st.none()
    | st.booleans()
    | st.integers()
    | st.integers(min_value=-(2**200), max_value=2**200)
    | st.floats(allow_nan=False)
    | st.text()
    | st.binary()
    | st.complex_numbers(allow_nan=False),
    lambda inner: st.tuples(inner, inner) | st.frozensets(inner, max_size=4),
    max_leaves=10,
)
values = st.recursive(
    hashable,
    lambda inner: (
        st.lists(inner, max_size=4)
        | st.tuples(inner)
        | st.dictionaries(hashable, inner, max_size=4)
        | st.sets(hashable, max_size=4)
        | st.frozensets(hashable, max_size=4)
    ),
    max_leaves=30,
)


def same(a: object, b: object) -> bool:
    """Equal, of the same exact types all the way down (so 1 is not 1.0 nor True, -0.0 is not 0.0)."""
    if type(a) is not type(b):
        return False
    if isinstance(a, float):
        return repr(a) == repr(b)
    if isinstance(a, complex):
        return same(a.real, b.real) and same(a.imag, b.imag)  # type: ignore[attr-defined]
    if isinstance(a, (list, tuple)):
        return len(a) == len(b) and all(same(x, y) for x, y in zip(a, b, strict=True))  # type: ignore[arg-type]
    if isinstance(a, dict):
        return a.keys() == b.keys() and all(same(v, b[k]) for k, v in a.items())  # type: ignore[attr-defined]
    return a == b


def roundtrip(value: object) -> object:
    return read_answer(dumps(["value", encode_value(value)]))


@given(values)
def test_every_value_comes_back_equal_and_of_its_type(value: object) -> None:
    assert same(roundtrip(value), value)


@given(st.floats(allow_nan=True))
def test_floats_incl_nan_and_the_infinities(x: float) -> None:
    back = roundtrip(x)
    assert type(back) is float and (math.isnan(back) if math.isnan(x) else repr(back) == repr(x))


def test_plain_kinds_stay_apart() -> None:
    out = roundtrip([1, 1.0, True, "1", b"1", (1,), {1}, frozenset({1}), {1: 1}, 1 + 0j, None])
    assert [type(x) for x in out] == [int, float, bool, str, bytes, tuple, set, frozenset, dict, complex, type(None)]  # type: ignore[attr-defined]


class Mode(int):
    pass


@pytest.mark.parametrize("value", [Mode(3), object(), Path("/"), bytearray(b"x"), (lambda: 0), [1, {2: [Mode(1)]}]])
def test_other_types_and_subclasses_are_refused_by_name(value: object) -> None:
    with pytest.raises(UnencodableError) as e:
        encode_value(value)
    assert e.value.type_name in {"tests.call.test_wire.Mode", "object", "pathlib.PosixPath", "bytearray", "function"}


def test_depth_is_limited_both_ways() -> None:
    ok: object = 0
    for _ in range(MAX_DEPTH):
        ok = [ok]
    assert roundtrip(ok) == ok
    with pytest.raises(UnencodableError, match="deeper"):
        encode_value([ok])
    with pytest.raises(UnsafeResultError, match="deeper"):
        read_answer(b'["value",' + b"[" * (MAX_DEPTH + 1) + b"]" * (MAX_DEPTH + 1) + b"]")
    with pytest.raises(UnsafeResultError, match="deeper"):
        read_answer(b'["value",' + b"[" * 100_000 + b"]" * 100_000 + b"]")  # past the JSON parser's own limit
    cyclic: list[object] = []
    cyclic.append(cyclic)
    with pytest.raises(UnencodableError):
        encode_value(cyclic)


def test_an_oversized_answer_is_refused_unread() -> None:
    with pytest.raises(UnsafeResultError, match="more than"):
        read_answer(b" " * (MAX_SIZE + 1))


class Boom:
    def __reduce__(self) -> tuple[object, ...]:
        return (Path.touch, (Path("/nonexistent-dir/x"),))


@pytest.mark.parametrize(
    "data",
    [
        pickle.dumps(Boom()),
        pickle.dumps([1, 2]),
        dumps(["pickle", base64.b64encode(pickle.dumps(1)).decode()]),
        b'["value",{"t":[1],"s":[2]}]',
        b'["value",{"x":1}]',
        b'["value",{"s":[[1]]}]',
        b'["value",{"d":[[[1],2]]}]',
        b'["value",{"i":"0x10"}]',
        b'["value",{"b":"not base64!"}]',
        b'["value",NaN]',
        b'["value",' + b"9" * 5000 + b"]",
        b'["value"]',
        b'["error",1,2,3,4]',
        b'["bogus",1]',
        b"\xff\xfe",
        b"",
    ],
)
def test_malformed_answers_and_pickles_are_refused(data: bytes) -> None:
    with pytest.raises(UnsafeResultError):
        read_answer(data)


def test_a_trusted_answer_may_be_a_pickle() -> None:
    blob = dumps(["pickle", base64.b64encode(pickle.dumps(Path("/x"))).decode()])
    assert read_answer(blob, trusted=True) == Path("/x")


def test_a_refused_result_names_its_type() -> None:
    with pytest.raises(UnsafeResultError) as e:
        read_answer(dumps(["refused", "pathlib.PosixPath", "not one of the types"]))
    assert e.value.type_name == "pathlib.PosixPath" and "trusted=True" in str(e.value)


def test_an_error_answer_is_a_remote_error() -> None:
    args = encode_value(("bad", 3))
    with pytest.raises(RemoteError) as e:
        read_answer(dumps(["error", "ValueError", "bad", 'Traceback...\n  File "x.py"\nValueError: bad\n', args]))
    assert e.value.remote_type == "ValueError" and e.value.remote_args == ("bad", 3)
    assert "x.py" in e.value.remote_traceback and "x.py" in str(e.value)


@given(st.binary(max_size=200))
def test_arbitrary_bytes_give_a_value_or_a_typed_refusal(data: bytes) -> None:
    with contextlib.suppress(UnsafeResultError, RemoteError):
        read_answer(data)


@given(values)
def test_the_wire_text_is_json(value: object) -> None:
    message = loads(dumps(["value", encode_value(value)]))
    assert json.loads(dumps(message)) == message
    assert same(decode_value(message[1]), value)


def test_wire_error_is_a_value_error() -> None:
    assert issubclass(WireError, ValueError)


def test_the_number_of_containers_is_limited_and_strings_do_not_count() -> None:
    many = b'["value",[' + b"[]," * MAX_CONTAINERS + b"[]]]"
    with pytest.raises(UnsafeResultError, match="lists and tagged values"):
        read_answer(many)
    text = '[{\\"' * (MAX_CONTAINERS // 4)
    assert roundtrip(text) == text


@pytest.mark.parametrize(
    "err",
    [
        RemoteError("ValueError", "bad", "Traceback...", ("bad",)),
        UnsafeResultError("too deep", type_name="x.Y"),
        CallDiedError("box", -9, oom_killed=True),
        CallTimeoutError("box", 2.5, -9),
        PythonNotFoundError("/r", ("/usr/bin/python3",)),
        PythonVersionError("/usr/bin/python3", "3.2", "3.11"),
    ],
)
def test_the_call_errors_pickle(err: Exception) -> None:
    again = pickle.loads(pickle.dumps(err))
    assert type(again) is type(err) and str(again) == str(err) and vars(again) == vars(err)


@given(values, st.text())
def test_the_writer_writes_what_json_writes(value: object, text: str) -> None:
    message = ["error", text, "m", "tb", encode_value(value)]
    assert dumps(message) == json.dumps(message, ensure_ascii=True, allow_nan=False, separators=(",", ":")).encode()
