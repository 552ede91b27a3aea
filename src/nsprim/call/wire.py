"""The wire format of a call's result: values that cannot run code when read.

A sandbox's answer is untrusted: unpickling it would be code execution in
the caller.  It travels as JSON in which every value has one meaning and no
type is named by the sender — ``None``, ``bool``, ``int``, ``float``
(``nan`` and the infinities too), ``str``, ``bytes``, ``complex``, and
``list``, ``tuple``, ``dict``, ``set`` and ``frozenset`` of those, nested at
most :data:`MAX_DEPTH` deep, at most :data:`MAX_CONTAINERS` of them, in at
most :data:`MAX_SIZE` bytes: the limits bound what reading an answer costs
the caller (a value takes more memory than its text: up to about ten times).  Exact types
only: a subclass (an ``IntEnum``, a named tuple) is refused rather than
silently changed into its base.

In the JSON, a list is an array and the other kinds are objects of one key:
``{"t": [...]}`` a tuple, ``{"s": [...]}`` a set, ``{"fs": [...]}`` a
frozenset, ``{"d": [[k, v], ...]}`` a dict (keys of any kind), ``{"b":
base64}`` bytes, ``{"c": [re, im]}`` a complex, ``{"f": "nan"}`` a float that
JSON cannot write, ``{"i": hex}`` an integer beyond 64 bits.

A message is an array: ``["value", v]``, ``["error", type, message,
traceback, args]``, ``["pickle", base64]`` (read only by a caller that
trusts the payload), or ``["refused", type, reason]`` (a result the format
cannot carry).

This module imports only the standard library and nothing of nsprim: its
source is also run inside the sandbox (see :mod:`nsprim.call.payload`).
"""

from __future__ import annotations

import binascii
import math

# Only C modules on the sandbox's side (encoding): a call's interpreter starts
# in a few ms less without json, re and base64, which reading needs.
try:
    from _json import encode_basestring_ascii as _quote
except ImportError:  # pragma: no cover - an interpreter without the C accelerator
    from json.encoder import encode_basestring_ascii as _quote

TYPE_CHECKING = False
if TYPE_CHECKING:
    import re

__all__ = [
    "MAX_DEPTH",
    "MAX_SIZE",
    "MAX_CONTAINERS",
    "WireError",
    "UnencodableError",
    "encode_value",
    "decode_value",
    "dumps",
    "loads",
]

#: How deep containers may nest in a result.
MAX_DEPTH = 200
#: The largest encoded message read from a sandbox, in bytes.
MAX_SIZE = 256 * 2**20
#: The most lists, tuples, dicts, sets and other tagged values in one answer (each costs ~60 bytes or more).
MAX_CONTAINERS = 2**22

_SMALL_INT = 2**63
_INT_DIGITS = 20  # a JSON integer longer than this is not one we wrote
_STRING: re.Pattern[bytes] | None = None  # a JSON string, its escapes included (compiled on first read)
_TAGS = frozenset({"t", "s", "fs", "d", "b", "c", "f", "i"})
_KINDS = {"value": 1, "error": 4, "pickle": 1, "refused": 2}


class WireError(ValueError):
    """A message that is not in the format (or is over a limit): ``reason`` says how."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class UnencodableError(TypeError):
    """A value the format cannot carry: ``type_name`` names its type, ``reason`` why."""

    def __init__(self, type_name: str, reason: str) -> None:
        super().__init__(f"{type_name}: {reason}")
        self.type_name = type_name
        self.reason = reason


def _type_name(obj: object) -> str:
    t = type(obj)
    return t.__qualname__ if t.__module__ == "builtins" else f"{t.__module__}.{t.__qualname__}"


def _float(x: float) -> object:
    if math.isfinite(x):
        return x
    return {"f": "nan" if math.isnan(x) else ("inf" if x > 0 else "-inf")}


def encode_value(obj: object, depth: int = 0) -> object:
    """*obj* as a JSON-able tree (raises :class:`UnencodableError`)."""
    t = type(obj)
    if obj is None or t is bool or t is str:
        return obj
    if t is int:
        n: int = obj  # type: ignore[assignment]
        return n if -_SMALL_INT <= n < _SMALL_INT else {"i": hex(n)}
    if t is float:
        return _float(obj)  # type: ignore[arg-type]
    if t is bytes:
        return {"b": binascii.b2a_base64(obj, newline=False).decode("ascii")}  # type: ignore[arg-type]
    if t is complex:
        c: complex = obj  # type: ignore[assignment]
        return {"c": [_float(c.real), _float(c.imag)]}
    if t in (list, tuple, set, frozenset, dict):
        if depth >= MAX_DEPTH:
            raise UnencodableError(_type_name(obj), f"nested deeper than {MAX_DEPTH}")
        if t is dict:
            d: dict[object, object] = obj  # type: ignore[assignment]
            return {"d": [[encode_value(k, depth + 1), encode_value(v, depth + 1)] for k, v in d.items()]}
        items = [encode_value(x, depth + 1) for x in obj]  # type: ignore[attr-defined]
        if t is list:
            return items
        return {"t": items} if t is tuple else {"s": items} if t is set else {"fs": items}
    raise UnencodableError(_type_name(obj), "not one of the types a result may have")


def _float_of(j: object) -> float:
    if type(j) is float or type(j) is int:
        return float(j)
    if type(j) is dict and len(j) == 1 and j.get("f") in ("nan", "inf", "-inf"):
        return float(j["f"])
    raise WireError(f"not a float: {_short(j)}")


def _short(j: object) -> str:
    text = repr(j)
    return text if len(text) <= 60 else text[:57] + "..."


def decode_value(j: object, depth: int = 0) -> object:
    """The value a JSON tree made by :func:`encode_value` stands for (raises :class:`WireError`)."""
    t = type(j)
    if j is None or t is bool or t is str or t is int or t is float:
        return j
    if depth >= MAX_DEPTH and (t is list or t is dict):
        raise WireError(f"nested deeper than {MAX_DEPTH}")
    if t is list:
        return [decode_value(x, depth + 1) for x in j]  # type: ignore[attr-defined]
    if t is not dict or len(j) != 1:  # type: ignore[arg-type]
        raise WireError(f"not a value: {_short(j)}")
    ((tag, body),) = j.items()  # type: ignore[attr-defined]
    try:
        if tag == "b" and type(body) is str:
            import base64

            return base64.b64decode(body.encode("ascii"), validate=True)
        if tag == "i" and type(body) is str:
            n = int(body, 16)
            if -_SMALL_INT <= n < _SMALL_INT:
                raise WireError(f"a small integer written as a big one: {_short(body)}")
            return n
        if tag == "f":
            return _float_of(j)
        if tag == "c" and type(body) is list and len(body) == 2:
            return complex(_float_of(body[0]), _float_of(body[1]))
        if tag in ("t", "s", "fs") and type(body) is list:
            items = [decode_value(x, depth + 1) for x in body]
            return tuple(items) if tag == "t" else set(items) if tag == "s" else frozenset(items)
        if tag == "d" and type(body) is list:
            out: dict[object, object] = {}
            for pair in body:
                if type(pair) is not list or len(pair) != 2:
                    raise WireError(f"not a key and a value: {_short(pair)}")
                out[decode_value(pair[0], depth + 1)] = decode_value(pair[1], depth + 1)
            return out
    except TypeError as e:  # an unhashable key or member
        raise WireError(f"{tag!r}: {e}") from None
    except (ValueError, UnicodeError) as e:
        if isinstance(e, WireError):
            raise
        raise WireError(f"{tag!r}: {e}") from None
    raise WireError(f"not a value: {_short(j)}")


def _write(j: object, out: list[str]) -> None:
    if isinstance(j, str) and type(j) is str:
        out.append(_quote(j))
    elif j is None:
        out.append("null")
    elif type(j) is bool:
        out.append("true" if j else "false")
    elif type(j) is int or type(j) is float:
        out.append(repr(j))  # as json writes them: a float's repr reads back as the same float
    elif isinstance(j, list) and type(j) is list:
        out.append("[")
        for i, x in enumerate(j):
            if i:
                out.append(",")
            _write(x, out)
        out.append("]")
    elif isinstance(j, dict) and type(j) is dict and len(j) == 1:
        ((key, value),) = j.items()
        out.append("{" + _quote(str(key)) + ":")
        _write(value, out)
        out.append("}")
    else:
        raise UnencodableError(_type_name(j), "not part of an encoded message")


def dumps(message: list[object]) -> bytes:
    """A message (an array whose first item is its kind) as bytes; values already encoded.

    The JSON that :func:`json.dumps` would write (ASCII, no spaces), written
    with the C string quoting of :mod:`json` but not the module itself."""
    out: list[str] = []
    _write(message, out)
    return "".join(out).encode("ascii")


def _one_key(pairs: list[tuple[str, object]]) -> dict[str, object]:
    if len(pairs) != 1 or pairs[0][0] not in _TAGS:
        raise WireError(f"an object that is no tagged value: keys {[k for k, _ in pairs][:5]}")
    return dict(pairs)


def _int(text: str) -> int:
    if len(text) > _INT_DIGITS:
        raise WireError(f"an integer of {len(text)} digits written plainly")
    return int(text)


def _constant(name: str) -> object:
    raise WireError(f"the JSON extension {name} (a float is written as a tagged value)")


def loads(data: bytes) -> list[object]:
    """The message in *data*, its values still encoded: checked for size, syntax and shape.

    Raises :class:`WireError`; never runs code named by the data."""
    if len(data) > MAX_SIZE:
        raise WireError(f"{len(data)} bytes: more than the {MAX_SIZE} a result may have")
    import json
    import re

    global _STRING
    if _STRING is None:
        _STRING = re.compile(rb'"[^"\\]*(?:\\.[^"\\]*)*"')
    structure = _STRING.sub(b"", data)
    containers = structure.count(b"[") + structure.count(b"{")
    if containers > MAX_CONTAINERS + 1:  # (the message's own array)
        raise WireError(f"{containers} lists and tagged values: more than the {MAX_CONTAINERS} a result may have")
    del structure
    try:
        text = data.decode("ascii")
        message = json.loads(text, object_pairs_hook=_one_key, parse_int=_int, parse_constant=_constant)
    except WireError:
        raise
    except RecursionError:
        raise WireError(f"nested deeper than {MAX_DEPTH}") from None
    except (UnicodeError, ValueError) as e:
        raise WireError(f"not a message: {str(e)[:200]}") from None
    if type(message) is not list or not message or message[0] not in _KINDS:
        raise WireError(f"not a message: {_short(message)}")
    kind = message[0]
    if len(message) != 1 + _KINDS[kind]:
        raise WireError(f"a {kind!r} message of {len(message) - 1} parts, not {_KINDS[kind]}")
    if kind == "pickle" and type(message[1]) is not str:
        raise WireError("a 'pickle' message without its base64 text")
    if kind == "error" and not all(type(x) is str for x in message[1:4]):
        raise WireError("an 'error' message whose type, message or traceback is no string")
    if kind == "refused" and not all(type(x) is str for x in message[1:3]):
        raise WireError("a 'refused' message whose type or reason is no string")
    return message
