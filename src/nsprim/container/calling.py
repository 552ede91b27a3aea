"""Python functions as a container's payload: what :meth:`Container.call
<nsprim.container.Container.call>` and :meth:`~nsprim.container.Container.call_result` do.

The container runs ``python3 -I -c`` with the program of
:mod:`nsprim.call.payload`; the request (a header and a pickle of the
function, or a reference to it, and its arguments) goes in on fd 3, a
socket, and the answer comes back on it in the format of
:mod:`nsprim.call.wire`, read by :func:`nsprim.call.answer.read_answer`:
nothing the sandbox sends is unpickled unless the caller trusts it.  All of
the container's settings apply (its root, limits, namespaces, security);
only its command is replaced.
"""

from __future__ import annotations

import contextlib
import importlib
import os
import pickle
import re
import selectors
import socket
import stat
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from functools import cache
from pathlib import Path
from typing import Generic, TypeVar

from .._dataclass import dataclass, replace
from .._readiness import wait_any_readable
from ..call import payload, wire
from ..call.answer import read_answer
from ..call.errors import (
    CallCancelledError,
    CallDiedError,
    CallTimeoutError,
    PythonNotFoundError,
    PythonVersionError,
    RemoteError,
    UnsafeResultError,
)
from ..cgroup import Stats
from ..errors import ConfigError, NsprimError, TimeoutExpired
from ..namespace import NamespaceType
from ..process import DEVNULL, PIPE
from .config import ContainerConfig, RootKind
from .launch import Spawner
from .pool import Supply
from .running import RunningContainer
from .start import start_container

__all__ = ["CallResult", "StartedCall", "call_in", "start_call", "finish_call", "find_python", "HOST_VERSION"]

T = TypeVar("T")

#: This interpreter's ``major.minor``: a root's Python must be the same.
HOST_VERSION = f"{sys.version_info.major}.{sys.version_info.minor}"
#: Where a root's interpreter is looked for, in this order.
PYTHON_PATHS = ("/usr/local/bin/python3", "/usr/bin/python3", "/bin/python3")
_VERSIONED = re.compile(r"python(\d+\.\d+)$")
_MISMATCH = "nsprim_call_payload.PythonVersionMismatch"


@dataclass(frozen=True)
class CallResult(Generic[T]):
    """What a call returned, what it printed (with ``capture_output``), and what it used.

    *stats* holds the container's cgroup totals at the end, as
    :attr:`ContainerResult.stats <nsprim.container.ContainerResult>` does."""

    value: T
    stdout: bytes | None
    stderr: bytes | None
    stats: Stats | None
    returncode: int


@cache
def _program(host: bool) -> str:
    """The payload's ``-c`` program.  With the host's root, the payload and wire modules are loaded
    from their files here, whose compiled code Python keeps (compiling their source takes longer
    than the rest of the call's protocol); any other root gets their source in the program."""
    here = Path(payload.__file__).parent
    if host:
        for name in ("wire.py", "payload.py"):
            _compiled(here / name)
        return payload.loader_source(str(here / "wire.py"), str(here / "payload.py"))
    return payload.bootstrap_source((here / "wire.py").read_text(), (here / "payload.py").read_text())


def _compiled(source: Path) -> None:
    """Have Python's compiled code of *source* beside it (a process that writes no bytecode made
    none): a payload in a root whose writes vanish could not keep its own."""
    import importlib.util

    if not os.path.exists(importlib.util.cache_from_source(str(source))):
        import py_compile

        with contextlib.suppress(OSError, py_compile.PyCompileError):
            py_compile.compile(str(source), doraise=True)


# ---- the interpreter ---------------------------------------------------------


def _layers(config: ContainerConfig) -> list[Path]:
    root = config.root
    assert root is not None
    if root.kind is RootKind.DIRECTORY:
        assert root.path is not None
        return [root.path]
    return ([root.upper] if root.upper is not None else []) + list(root.layers)


def _lookup(layers: Sequence[Path], path: str, hops: int = 0) -> tuple[str, os.stat_result] | None:
    """*path* resolved inside the root made of *layers* (top first): the path reached and its
    status, following symbolic links as the root would (absolute ones from its top)."""
    if hops > 40:
        return None
    parts = [p for p in path.split("/") if p and p != "."]
    done: list[str] = []
    for i, part in enumerate(parts):
        if part == "..":
            if done:
                done.pop()
            continue
        here = "/".join([*done, part])
        found = None
        for layer in layers:
            try:
                st = os.lstat(layer / here)
            except OSError:
                continue
            if stat.S_ISCHR(st.st_mode) and st.st_rdev == 0:  # an overlay whiteout: deleted above
                break
            found = (layer / here, st)
            break
        if found is None:
            return None
        at, st = found
        if stat.S_ISLNK(st.st_mode):
            target = os.readlink(at)
            rest = "/".join(parts[i + 1 :])
            base = "" if target.startswith("/") else "/".join(done)
            return _lookup(layers, f"{base}/{target}/{rest}", hops + 1)
        done.append(part)
    last = "/" + "/".join(done)
    for layer in layers:
        with contextlib.suppress(OSError):
            return last, os.stat(layer / last.lstrip("/"))
    return None  # pragma: no cover - lstat found it above


def _root_version(layers: Sequence[Path], binary: str) -> str | None:
    m = _VERSIONED.search(binary)
    if m:
        return m.group(1)
    prefix = str(Path(binary).parent.parent)  # /usr/bin/python3 → /usr
    found = set()
    for layer in layers:
        lib = layer / prefix.lstrip("/") / "lib"
        with contextlib.suppress(OSError):
            found |= {m.group(1) for p in lib.iterdir() if (m := _VERSIONED.search(p.name)) and (p / "os.py").exists()}
    return found.pop() if len(found) == 1 else None


def find_python(config: ContainerConfig) -> str:
    """The interpreter a call runs in *config*'s root, its version checked against this one's.

    With the host's root (or none) it is this interpreter.  Otherwise the
    first of :data:`PYTHON_PATHS` present in the root; its version is read
    from the name it links to (``python3.12``) or from the one
    ``lib/python3.N`` beside it.  Raises
    :class:`~nsprim.errors.PythonNotFoundError` or
    :class:`~nsprim.errors.PythonVersionError`; a version that cannot be
    read so is checked by the payload, before it unpickles anything."""
    root = config.root
    if root is None or root.kind is RootKind.HOST:
        return sys.executable
    layers = _layers(config)
    for candidate in PYTHON_PATHS:
        hit = _lookup(layers, candidate)
        if hit is None or not stat.S_ISREG(hit[1].st_mode) or not hit[1].st_mode & 0o111:
            continue
        version = _root_version(layers, hit[0])
        if version is not None and version != HOST_VERSION:
            raise PythonVersionError(candidate, version, HOST_VERSION)
        return candidate
    where = str(root.path) if root.path is not None else ", ".join(str(p) for p in layers)
    raise PythonNotFoundError(where, PYTHON_PATHS)


# ---- the request -------------------------------------------------------------


def _reference(fn: Callable[..., object]) -> tuple[str, str] | None:
    """``(module, qualname)`` by which the payload finds *fn* again, if it can."""
    module, qualname = getattr(fn, "__module__", None), getattr(fn, "__qualname__", None)
    if not isinstance(module, str) or not isinstance(qualname, str) or "<" in qualname:
        return None
    try:
        obj: object = sys.modules[module] if module == "__main__" else importlib.import_module(module)
        for part in qualname.split("."):
            obj = getattr(obj, part)
    except (ImportError, AttributeError, KeyError):
        return None
    if obj is fn or (getattr(obj, payload.SANDBOXED_MARK, False) and getattr(obj, "__wrapped__", None) is fn):
        return module, qualname
    return None


def _main_script() -> str | None:
    path = getattr(sys.modules.get("__main__"), "__file__", None)
    return os.path.abspath(path) if isinstance(path, str) else None


def _pickle(obj: object, fn: Callable[..., object]) -> bytes:
    try:
        return pickle.dumps(obj, protocol=pickle.HIGHEST_PROTOCOL)
    except (pickle.PicklingError, TypeError, AttributeError) as first:
        try:
            import cloudpickle  # type: ignore[import-not-found, import-untyped, unused-ignore]
        except ImportError:
            name = getattr(fn, "__qualname__", repr(fn))
            raise ConfigError(
                f"call `{name}`: cannot pickle the function or its arguments ({first}); a lambda, a closure "
                "or a function defined inside another is not importable in the container: define it at a "
                "module's top level, or install cloudpickle (nsprim[call])",
                what="fn",
            ) from None
        try:
            data: bytes = cloudpickle.dumps(obj, protocol=pickle.HIGHEST_PROTOCOL)
        except Exception as e:
            raise ConfigError(f"call: cannot pickle the function or its arguments: {e}", what="args") from None
        return data


def request(
    fn: Callable[..., object], args: Sequence[object], kwargs: Mapping[str, object], *, trusted: bool, host: bool
) -> bytes:
    """The request: header length, header, pickle (see :mod:`nsprim.call.payload`).

    With the *host*'s root, the payload takes this process' import path and
    main script: functions of ``__main__`` are found again as
    :mod:`multiprocessing` finds them (the script run as ``__mp_main__``)."""
    ref = _reference(fn)
    main = _main_script() if host else None
    if ref is not None and ref[0] == "__main__" and main is None:
        ref = None  # an interactive session's function: by value (cloudpickle) or not at all
    body = _pickle((None if ref is not None else fn, tuple(args), dict(kwargs)), fn)
    needs_main = (ref is not None and ref[0] == "__main__") or b"__main__" in body
    header = {
        "trusted": trusted,
        "version": [int(part) for part in HOST_VERSION.split(".")],
        "function": list(ref) if ref is not None else None,
        "path": [os.path.abspath(p) if p else os.getcwd() for p in sys.path] if host else None,
        "main": main if needs_main else None,
    }
    head = pickle.dumps(header, protocol=2)
    return len(head).to_bytes(4, "big") + head + body


# ---- the exchange ------------------------------------------------------------


@dataclass
class _Exchange:
    answer: bytearray
    out: list[bytes]
    err: list[bytes]
    timed_out: bool = False
    oversized: str | None = None  # what went over MAX_SIZE: "the answer", "stdout" or "stderr"
    cancelled: bool = False


def _exchange(
    box: RunningContainer, sock: socket.socket, data: bytes, deadline: float | None, cancel_fd: int = -1
) -> _Exchange:
    """Send *data*, read the answer and the captured output to their ends, or until *deadline*
    or until *cancel_fd* (if not -1) is readable."""
    got = _Exchange(bytearray(), [], [])
    pending = memoryview(data)
    sel = selectors.DefaultSelector()
    try:
        sock.setblocking(False)
        sel.register(sock, selectors.EVENT_READ | selectors.EVENT_WRITE)
        streams = ((box.process.stdout, got.out, "stdout"), (box.process.stderr, got.err, "stderr"))
        pipes = {f.fileno(): (f, chunks, name) for f, chunks, name in streams if f is not None}
        held = dict.fromkeys(pipes, 0)
        for fd in pipes:
            sel.register(fd, selectors.EVENT_READ)
        open_ends = 1 + len(pipes)
        exit_fd = box.process.exit_fd()
        sel.register(exit_fd, selectors.EVENT_READ)
        if cancel_fd >= 0:
            sel.register(cancel_fd, selectors.EVENT_READ)
        while open_ends:
            left = None if deadline is None else deadline - time.monotonic()
            if left is not None and left <= 0:
                got.timed_out = True
                break
            for key, events in sel.select(left):
                if key.fd == cancel_fd:
                    got.cancelled = True
                    return got
                if key.fd == exit_fd:
                    sel.unregister(exit_fd)
                    if NamespaceType.PID not in box.config.namespaces:
                        # Without a pid namespace of its own, what it left running could hold the
                        # socket or a pipe: it goes too (in one, the kernel ends them with pid 1).
                        box.kill()
                elif key.fd == sock.fileno():
                    if events & selectors.EVENT_WRITE:
                        try:
                            pending = pending[sock.send(pending[: 1 << 20]) :]
                        except (BrokenPipeError, ConnectionResetError):
                            pending = pending[:0]
                        if not pending:
                            with contextlib.suppress(OSError):
                                sock.shutdown(socket.SHUT_WR)
                            sel.modify(sock, selectors.EVENT_READ)
                    if events & selectors.EVENT_READ:
                        try:
                            chunk = sock.recv(1 << 20)
                        except BlockingIOError:
                            continue
                        except ConnectionResetError:
                            chunk = b""
                        got.answer += chunk
                        if len(got.answer) > wire.MAX_SIZE:
                            got.oversized = "the answer"
                            return got
                        if not chunk:
                            sel.unregister(sock)
                            open_ends -= 1
                else:
                    f, chunks, name = pipes[key.fd]
                    chunk = os.read(key.fd, 1 << 16)
                    if chunk:
                        chunks.append(chunk)
                        held[key.fd] += len(chunk)
                        if held[key.fd] > wire.MAX_SIZE:  # captured output is the payload's too: bounded
                            got.oversized = name
                            return got
                    else:
                        sel.unregister(key.fd)
                        f.close()
                        open_ends -= 1
        return got
    finally:
        sel.close()


class StartedCall:
    """A call's container, started and waiting for its request (:func:`start_call`).

    :func:`finish_call` sends the request and owns it from then on;
    :meth:`close` throws away one never used (its container killed and removed)."""

    def __init__(self, box: RunningContainer, sock: socket.socket, python: str, capture_output: bool) -> None:
        self.box = box
        self.sock = sock
        self.python = python
        self.capture_output = capture_output

    def close(self) -> None:
        """Kill the container and remove what it used; close the request socket."""
        try:
            self.box.close()
        finally:
            self.sock.close()


def start_call(
    config: ContainerConfig,
    *,
    capture_output: bool = False,
    warm: Supply | None = None,
    spawner: Spawner | None = None,
) -> StartedCall:
    """Start a container of *config* whose payload waits for a call's request (see :func:`call_in`)."""
    if config.tty or config.detach:
        raise ConfigError("a call's container has no tty and is not detached: it answers this process", what="call")
    python = find_python(config)
    # -I: no PYTHON* variables, no user site, no current directory on the path
    root = config.root
    host = root is None or root.kind is RootKind.HOST
    config = replace(config, argv=(python, "-I", "-c", _program(host)))
    mine, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        out = PIPE if capture_output else None
        try:
            box = start_container(
                config,
                stdin=DEVNULL,
                stdout=out,
                stderr=out,
                pass_fds={payload.REQUEST_FD: theirs.fileno()},
                warm=warm,
                spawner=spawner,
            )
        finally:
            theirs.close()
    except BaseException:
        mine.close()
        raise
    return StartedCall(box, mine, python, capture_output)


def finish_call(
    started: StartedCall,
    fn: Callable[..., T],
    args: Sequence[object] = (),
    kwargs: Mapping[str, object] | None = None,
    *,
    timeout: float | None = None,
    trusted: bool = False,
    cancel_fd: int = -1,
    answered: Callable[[T], None] | None = None,
) -> CallResult[T]:
    """Send ``fn(*args, **kwargs)`` to the started call, read its answer, and remove its container
    (on every path: *started* is used up).

    *answered* gets the value as soon as the answer is read, before the container is
    waited for and removed (the result's status and stats need those): what an executor
    gives a future that wants only the value."""
    try:
        if timeout is not None and timeout <= 0:
            raise ConfigError(f"call timeout {timeout!r}: more than 0 seconds", what="timeout")
        root = started.box.config.root
        data = request(fn, args, kwargs or {}, trusted=trusted, host=root is None or root.kind is RootKind.HOST)
    except BaseException:
        started.close()
        raise
    return _finish(started, data, timeout, trusted, cancel_fd, answered)


def _finish(
    started: StartedCall,
    data: bytes,
    timeout: float | None,
    trusted: bool,
    cancel_fd: int,
    answered: Callable[[T], None] | None = None,
) -> CallResult[T]:
    box, mine = started.box, started.sock
    decoded: tuple[bool, object] | None = None  # (True, value) or (False, the exception reading it raised)
    with mine, box:
        deadline = None if timeout is None else time.monotonic() + timeout
        got = _exchange(box, mine, data, deadline, cancel_fd)
        if got.answer and not (got.timed_out or got.oversized or got.cancelled):
            try:
                decoded = (True, _value(got, started.python, trusted))
            except NsprimError as exc:  # raised once the container is gone, as any call's error
                decoded = (False, exc)
            if decoded[0] and answered is not None:
                answered(decoded[1])  # type: ignore[arg-type]
        if not (got.timed_out or got.oversized or got.cancelled):
            try:  # it answered, or closed the socket: its end is near, or it is past its time
                _wait_exit(box, deadline, cancel_fd)
            except TimeoutExpired:
                got.timed_out = True
            except _Cancelled:
                got.cancelled = True
        if got.timed_out or got.oversized or got.cancelled:
            box.kill()
        status = box.wait()
        stats, oom_killed = box.final_stats, box.oom_killed
    capture_output = started.capture_output
    stdout = b"".join(got.out) if capture_output else None
    stderr = b"".join(got.err) if capture_output else None
    if got.cancelled:
        died: CallDiedError = CallCancelledError(box.id, status)
    elif got.timed_out:
        assert timeout is not None
        died = CallTimeoutError(box.id, timeout, status)
    elif got.oversized:
        raise UnsafeResultError(f"{got.oversized} of more than the {wire.MAX_SIZE} bytes a call may send")
    elif not got.answer:
        died = CallDiedError(box.id, status, oom_killed=oom_killed)
    else:
        assert decoded is not None
        if not decoded[0]:
            raise decoded[1]  # type: ignore[misc]
        return CallResult(decoded[1], stdout, stderr, stats, status)  # type: ignore[arg-type]
    died.stats = stats
    raise died


def call_in(
    config: ContainerConfig,
    fn: Callable[..., T],
    args: Sequence[object] = (),
    kwargs: Mapping[str, object] | None = None,
    *,
    timeout: float | None = None,
    capture_output: bool = False,
    trusted: bool = False,
    cancel_fd: int = -1,
    warm: Supply | None = None,
    spawner: Spawner | None = None,
) -> CallResult[T]:
    """Run ``fn(*args, **kwargs)`` in a fresh container of *config*; see
    :meth:`Container.call_result <nsprim.container.Container.call_result>`.

    Once *cancel_fd* (if not -1) is readable the container is killed and
    :class:`~nsprim.errors.CallCancelledError` raised: how
    :class:`~nsprim.call.executor.SandboxExecutor` stops the calls it runs.
    *warm* and *spawner* are :func:`~nsprim.container.start.start_container`'s: with a
    zygote's spawner, the payload is the zygote's fork, not a new interpreter."""
    if timeout is not None and timeout <= 0:
        raise ConfigError(f"call timeout {timeout!r}: more than 0 seconds", what="timeout")
    root = config.root
    # The request first: what cannot be pickled is refused before a container starts.
    data = request(fn, args, kwargs or {}, trusted=trusted, host=root is None or root.kind is RootKind.HOST)
    started = start_call(config, capture_output=capture_output, warm=warm, spawner=spawner)
    return _finish(started, data, timeout, trusted, cancel_fd)


class _Cancelled(Exception):
    """The cancel descriptor became readable while waiting for the container's end."""


def _wait_exit(box: RunningContainer, deadline: float | None, cancel_fd: int) -> None:
    """Wait for *box* to end, until *deadline* (:class:`TimeoutExpired`) or *cancel_fd* (:class:`_Cancelled`)."""
    if cancel_fd < 0:
        box.wait(None if deadline is None else max(0.0, deadline - time.monotonic()))
        return
    while box.process.poll() is None:
        left = None if deadline is None else deadline - time.monotonic()
        if left is not None and left <= 0:
            raise TimeoutExpired(box.process.pid, 0.0)
        exit_fd = box.process.exit_fd()
        if exit_fd < 0:  # pragma: no cover - poll() collected it meanwhile
            continue
        if wait_any_readable((exit_fd, cancel_fd), left) and wait_any_readable((cancel_fd,), 0):
            raise _Cancelled
    box.wait()


def _value(got: _Exchange, python: str, trusted: bool) -> object:
    try:
        return read_answer(bytes(got.answer), trusted=trusted)
    except RemoteError as e:
        if e.remote_type == _MISMATCH and e.remote_args:
            raise PythonVersionError(python, str(e.remote_args[0]), HOST_VERSION) from None
        raise
