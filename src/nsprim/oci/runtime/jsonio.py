"""JSON for the runtime's hot path, through the interpreter's C codec (``_json``) alone.

The ``json`` package imports ``re``, which imports ``enum``: about 6 ms on
every call of a command that otherwise starts in 10.  ``state`` and
``list`` read and print JSON and nothing else, so they use this module:
:func:`loads` is ``json.loads`` (the same C scanner), :func:`dumps` writes
what ``json.dumps`` writes (``ensure_ascii``, and with *indent* the same
layout), as the tests check.  Where ``_json`` is missing (another
interpreter), the ``json`` package is used.
"""

from __future__ import annotations

__all__ = ["loads", "dumps"]

try:
    import _json
except ImportError:  # pragma: no cover - CPython has it
    _json = None  # type: ignore[assignment]


def _constant(name: str) -> float:
    return {"NaN": float("nan"), "Infinity": float("inf"), "-Infinity": float("-inf")}[name]


class _Context:
    """What the C scanner reads from a ``json.JSONDecoder``."""

    strict = True
    object_hook = None
    object_pairs_hook = None
    parse_float = float
    parse_int = int
    parse_constant = staticmethod(_constant)


_WHITESPACE = " \t\n\r"
_INF = float("inf")
_scan = _json.make_scanner(_Context()) if _json is not None else None  # type: ignore[arg-type]
_encode_str = _json.encode_basestring_ascii if _json is not None else None


def loads(data: str | bytes) -> object:
    """Parse one JSON document; :class:`ValueError` (``json.JSONDecodeError``) if it is not one."""
    text = data.decode("utf-8") if isinstance(data, bytes) else data
    if _scan is not None:
        start = len(text) - len(text.lstrip(_WHITESPACE))
        try:
            value, end = _scan(text, start)
            if not text[end:].strip(_WHITESPACE):
                return value
        except (StopIteration, ValueError, SystemError):
            pass  # the C scanner raises its errors through the json package, unless it was imported: parse again
    import json

    return json.loads(text)


def _compact(value: object) -> str:
    if isinstance(value, str):
        return _encode_str(value)
    if value is None:
        return "null"
    if value is True:
        return "true"
    if value is False:
        return "false"
    if isinstance(value, int):
        return int.__repr__(value)
    if isinstance(value, float):
        if value != value:
            return "NaN"
        if value in (_INF, -_INF):
            return "Infinity" if value > 0 else "-Infinity"
        return float.__repr__(value)
    if isinstance(value, dict):
        return "{" + ", ".join(f"{_key(k)}: {_compact(v)}" for k, v in value.items()) + "}"
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(_compact(v) for v in value) + "]"
    raise TypeError(f"Object of type {type(value).__name__} is not JSON serializable")


def _key(key: object) -> str:
    if isinstance(key, str):
        return _encode_str(key)
    if key is None or isinstance(key, (bool, int, float)):
        return _encode_str(_compact(key))
    raise TypeError(f"keys must be str, int, float, bool or None, not {type(key).__name__}")


def _indented(value: object, step: str, prefix: str) -> str:
    inner = prefix + step
    if isinstance(value, dict) and value:
        body = ",\n".join(f"{inner}{_key(k)}: {_indented(v, step, inner)}" for k, v in value.items())
        return "{\n" + body + "\n" + prefix + "}"
    if isinstance(value, (list, tuple)) and value:
        body = ",\n".join(inner + _indented(v, step, inner) for v in value)
        return "[\n" + body + "\n" + prefix + "]"
    if isinstance(value, dict):
        return "{}"
    if isinstance(value, (list, tuple)):
        return "[]"
    return _compact(value)


def dumps(value: object, *, indent: int | str | None = None, compact: bool = False) -> str:
    """``json.dumps(value, indent=indent)``; with *compact*, ``separators=(",", ":")``."""
    if _encode_str is None:  # pragma: no cover
        import json

        return json.dumps(value, indent=indent, separators=(",", ":") if compact else None)
    if indent is not None:
        return _indented(value, " " * indent if isinstance(indent, int) else indent, "")
    return _tight(value) if compact else _compact(value)


def _tight(value: object) -> str:
    if isinstance(value, dict):
        return "{" + ",".join(f"{_key(k)}:{_tight(v)}" for k, v in value.items()) + "}"
    if isinstance(value, (list, tuple)):
        return "[" + ",".join(_tight(v) for v in value) + "]"
    return _compact(value)
