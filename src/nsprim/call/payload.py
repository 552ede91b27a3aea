"""The program a call runs inside its container: read the request, run the function, answer.

The request comes on fd :data:`REQUEST_FD`, a socket, until the caller
shuts its side: four bytes of header length, the header (a pickle of plain
values, protocol 2: any Python 3 reads it, so that the version check in it
comes first), then a pickle of ``(function or None, args, kwargs)``, both made by the caller (pickles travel only
this way: into the sandbox, from the party that trusts itself).  The answer
goes back on the same socket in the format of :mod:`nsprim.call.wire`.

Standard library only, no nsprim: the source of this module runs as
``python3 -c`` in the container, with the wire module's source made into a
module first (:func:`bootstrap_source`), in a root that need not have
nsprim at all.
"""

from __future__ import annotations

import os
import sys

# C modules only on the way to the function: each pure-Python module (socket,
# pickle, json) would pull in re, enum and more, milliseconds of every call.
try:
    from _pickle import dumps as _pickle_dumps
    from _pickle import loads as _pickle_loads
except ImportError:  # pragma: no cover - an interpreter without the C pickle
    from pickle import dumps as _pickle_dumps
    from pickle import loads as _pickle_loads
from _socket import SHUT_WR
from _socket import socket as _socket

TYPE_CHECKING = False
if TYPE_CHECKING:
    import types

__all__ = ["REQUEST_FD", "SANDBOXED_MARK", "PythonVersionMismatch", "main", "bootstrap_source", "loader_source"]

#: Where the payload finds its end of the request socket.
REQUEST_FD = 3

#: The attribute of :func:`nsprim.sandboxed`'s wrapper by which the payload knows to call what it wraps.
SANDBOXED_MARK = "__nsprim_sandboxed__"


class PythonVersionMismatch(Exception):
    """This interpreter is not the caller's version (its own version is the argument)."""


def _read_all(sock: _socket) -> bytes:
    chunks: list[bytes] = []
    while True:
        chunk = sock.recv(1 << 20)
        if not chunk:
            return b"".join(chunks)
        chunks.append(chunk)


def _load_main(path: str) -> None:
    """The caller's main script as ``__mp_main__`` (its ``if __name__ == "__main__"`` part does not run),
    and as ``__main__``: what the caller pickled as ``__main__.name`` is found there, as with
    :mod:`multiprocessing`'s spawn."""
    import runpy

    module = type(sys)("__mp_main__")
    sys.modules["__mp_main__"] = module
    module.__dict__.update(runpy.run_path(path, run_name="__mp_main__"))
    sys.modules["__main__"] = module


def _resolve(module_name: str, qualname: str) -> object:
    __import__(module_name)
    obj: object = sys.modules[module_name]
    for part in qualname.split("."):
        obj = getattr(obj, part)
    if getattr(obj, SANDBOXED_MARK, False):  # the wrapper's module attribute: run what it wraps, here
        obj = obj.__wrapped__  # type: ignore[attr-defined]
    return obj


def _type_name(t: type) -> str:
    return t.__qualname__ if t.__module__ == "builtins" else f"{t.__module__}.{t.__qualname__}"


def _error(wire: types.ModuleType, exc: BaseException) -> list[object]:
    import traceback

    text = "".join(traceback.format_exception(type(exc), exc, exc.__traceback__))
    try:
        args = wire.encode_value(tuple(exc.args))
    except Exception:
        args = None
    try:
        message = str(exc)
    except Exception:
        message = f"<str() of the {type(exc).__name__} failed>"
    return ["error", _type_name(type(exc)), message, text, args]


def _answer(wire: types.ModuleType, result: object, trusted: bool) -> list[object]:
    try:
        return ["value", wire.encode_value(result)]
    except wire.UnencodableError as e:
        if not trusted:
            return ["refused", e.type_name, e.reason]
    import binascii

    return ["pickle", binascii.b2a_base64(_pickle_dumps(result, 5), newline=False).decode("ascii")]


def _flush() -> None:
    for stream in (sys.stdout, sys.stderr):
        try:  # noqa: SIM105 - contextlib is a module more to import
            stream.flush()
        except Exception:  # a stream closed or gone (None)
            pass


def _unless_first(first: int, status: int) -> None:
    """In a child the function forked that came back here, end with *status*: only the first process answers."""
    if os.getpid() != first:
        _flush()
        os._exit(status)


def main(wire: types.ModuleType) -> None:
    """Serve the one request on fd :data:`REQUEST_FD` with *wire* (:mod:`nsprim.call.wire`), then end the process."""
    sock = _socket(fileno=REQUEST_FD)
    data = _read_all(sock)
    trusted = False
    me = os.getpid()
    try:
        size = int.from_bytes(data[:4], "big")
        header = _pickle_loads(data[4 : 4 + size])
        trusted = bool(header["trusted"])
        if list(sys.version_info[:2]) != header["version"]:
            raise PythonVersionMismatch(f"{sys.version_info[0]}.{sys.version_info[1]}")
        if header["path"] is not None:
            sys.path[:] = header["path"]
        if header["main"] is not None:
            _load_main(header["main"])
        fn, args, kwargs = _pickle_loads(data[4 + size :])
        if header["function"] is not None:
            fn = _resolve(*header["function"])
        del data
        result = fn(*args, **kwargs)
        _unless_first(me, 0)
        answer = _answer(wire, result, trusted)
    except BaseException as exc:  # SystemExit and KeyboardInterrupt too: the caller hears of them
        _unless_first(me, 1)
        answer = _error(wire, exc)
    _flush()
    try:
        encoded = wire.dumps(answer)
    except Exception as exc:  # a pickle of a trusted result that is too big, say
        encoded = wire.dumps(_error(wire, exc))
    sock.sendall(encoded)
    sock.shutdown(SHUT_WR)
    # Answered: the container is thrown away, so the interpreter's own shutdown (tens of ms
    # of finalising modules) is skipped, as multiprocessing's children skip it.
    os._exit(0)


def bootstrap_source(wire_source: str, payload_source: str) -> str:
    """The ``python3 -c`` program: both sources made into modules, then :func:`main`."""
    return (
        "import sys\n"
        "def _module(name, source):\n"
        "    m = type(sys)(name)\n"
        "    sys.modules[name] = m\n"
        "    exec(compile(source, '<' + name + '>', 'exec'), m.__dict__)\n"
        "    return m\n"
        f"_wire = _module('nsprim_call_wire', {wire_source!r})\n"
        f"_module('nsprim_call_payload', {payload_source!r}).main(_wire)\n"
    )


def loader_source(wire_path: str, payload_path: str) -> str:
    """The ``python3 -c`` program for a root that has these very files (the host's): both loaded
    from them as modules (with the compiled code Python keeps beside them), then :func:`main`."""
    return (
        "import sys\n"
        "from _frozen_importlib_external import SourceFileLoader\n"
        "def _module(name, path):\n"
        "    m = type(sys)(name)\n"
        "    m.__file__ = path\n"
        "    sys.modules[name] = m\n"
        "    SourceFileLoader(name, path).exec_module(m)\n"
        "    return m\n"
        f"_wire = _module('nsprim_call_wire', {wire_path!r})\n"
        f"_module('nsprim_call_payload', {payload_path!r}).main(_wire)\n"
    )
