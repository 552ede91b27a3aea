"""Reading a sandbox's answer on the host: a value, or the exception the answer stands for.

The answer is untrusted (see :mod:`nsprim.call.wire`): it is parsed as JSON
of plain values, and unpickled only when the caller said it trusts the
payload.
"""

from __future__ import annotations

import base64
import binascii
import pickle

from .errors import RemoteError, UnsafeResultError
from .wire import WireError, decode_value, loads

__all__ = ["read_answer"]


def read_answer(data: bytes, *, trusted: bool = False) -> object:
    """The value in the answer *data*, or raise what it says.

    Raises :class:`~nsprim.errors.RemoteError` for an exception raised
    inside, :class:`~nsprim.errors.UnsafeResultError` for an answer that is
    malformed, over a limit, a pickle when not *trusted*, or a result the
    format cannot carry."""
    try:
        message = loads(data)
        kind = message[0]
        if kind == "value":
            return decode_value(message[1])
        if kind == "error":
            type_name, text, remote_tb, args = message[1:]
            decoded = decode_value(args) if args is not None else None
            remote_args = decoded if type(decoded) is tuple else None
    except WireError as e:
        raise UnsafeResultError(e.reason) from None
    if kind == "error":
        raise RemoteError(str(type_name), str(text), str(remote_tb), remote_args)
    if kind == "refused":
        type_name, reason = str(message[1]), str(message[2])
        hint = "" if trusted else " (call with trusted=True to accept a pickle from this payload)"
        raise UnsafeResultError(f"a result of type {type_name}: {reason}{hint}", type_name=type_name)
    assert kind == "pickle"
    if not trusted:
        raise UnsafeResultError("a pickle, and the payload is not trusted (trusted=True reads it)")
    try:
        blob = base64.b64decode(str(message[1]).encode("ascii"), validate=True)
    except (binascii.Error, ValueError):
        raise UnsafeResultError("a 'pickle' message whose data is not base64") from None
    return pickle.loads(blob)  # the caller trusts this payload: its pickle may run code, as any pickle
