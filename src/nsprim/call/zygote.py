"""A zygote: a warm interpreter whose forks are the calls' processes, each a fresh container.

Starting an interpreter costs tens of milliseconds, the rest of a call's
container about one.  A :class:`Zygote` is one interpreter, started once
(this one's executable, ``-I``, its import path), that has imported the
payload program and nsprim's native core; for every call it forks a child —
pid 1 of a new pid namespace — which runs the same plan a cloned container
would run before its exec (:func:`nsprim._sys.spawn.run_here`): its own
mount, network, uts, ipc and cgroup namespaces, its root, its cgroup, the
template's limits, capabilities, seccomp filter and user.  Then, instead of an
exec, the child goes on as the call's payload (:mod:`nsprim.call.payload`).
See :mod:`nsprim.call.zygote_process` for the protocol.

What two calls share is what the zygote had before either began: the
interpreter's memory as it was after start-up (copy-on-write: a call's
changes are its own), nothing else — no namespace, root, cgroup, descriptor
or environment.  A call's request and answer never pass through the zygote.

It applies to the templates whose root is the host's (``host_root()``, or
the host's ``/`` as a directory: the zygote's interpreter must be the
call's), as root, without a user or time namespace, a veth link, an init or
a ``/proc`` view: :func:`refusal` says why another cannot.
"""

from __future__ import annotations

import contextlib
import errno
import os
import pickle
import socket
import struct
import sys
import threading
from collections.abc import Sequence
from pathlib import Path

from .._dataclass import replace
from .._sys import C
from .._sys import spawn as _spawn
from ..container.build import ChildPlan
from ..container.config import ContainerConfig, Network, RootKind
from ..errors import ChildDiedError, ConfigError, ExecutableNotFoundError, NsprimError, StepError, SyscallError
from ..lowlevel import Waits
from ..namespace import NamespaceType
from ..plan import Exec, FdMap, Mount, Plan, SetNs, Step, Unshare, WriteFile
from ..process import Process
from .zygote_process import CONTROL_FD, REPORT_FD

__all__ = ["Zygote", "refusal"]

_FOUR = struct.Struct("iiii")
# A user namespace needs its maps written by a parent mid-plan; a time namespace applies to
# the children of the process that made it.
_REFUSED_FLAGS = C.CLONE_NEWUSER | C.CLONE_NEWTIME
# Steps that need a parent across a clone, or a terminal, which a call has not.
_NEEDS_A_CLONE = frozenset(
    {
        _spawn.StepKind.SYNC,
        _spawn.StepKind.INIT,
        _spawn.StepKind.KEEP_FD,
        _spawn.StepKind.WAIT_START,
        _spawn.StepKind.TERMINAL,
        _spawn.StepKind.EXEC,
    }
)


def refusal(config: ContainerConfig) -> str | None:
    """Why a zygote cannot start *config*'s calls, or None if it can."""
    root = config.root
    if root is not None and root.kind is not RootKind.HOST and not _is_host_directory(root.path):
        return "its root is not the host's: a call runs the interpreter of its root"
    if os.geteuid() != 0:
        return "it is not started as root"
    if NamespaceType.USER in config.namespaces or config.uid_map or config.auto_id_maps:
        return "it has a user namespace"
    if NamespaceType.TIME in config.namespaces:
        return "it has a time namespace, which applies to a process' children only"
    if config.join:
        return "it joins namespaces"
    if config.network is Network.VETH:
        return "it has a veth link"
    if config.init or config.proc_view or config.tty or config.detach:
        return "it has an init, a /proc view, a terminal or is detached"
    return None


def _is_host_directory(path: Path | None) -> bool:
    """Whether *path* is the host's ``/`` (a directory root that is the host's files, read-only)."""
    try:
        return path is not None and os.path.samefile(path, "/")
    except OSError:
        return False


class Zygote:
    """One warm interpreter that forks the processes of calls (see the module's text).

    Use it as a context manager, or :meth:`close` it: its children are
    killed, it exits.  It also exits when this process does (its control
    socket reaches end of file).  Thread-safe: forks are serialised."""

    def __init__(self, path: Sequence[str] | None = None) -> None:
        from ..lowlevel import start

        self._lock = threading.Lock()
        self._bodies: dict[int, tuple[Plan, int]] = {}  # id(body): (body, key), the body kept alive
        mine, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET | socket.SOCK_CLOEXEC)
        self._control = mine
        search = [os.path.abspath(p) if p else os.getcwd() for p in (sys.path if path is None else path)]
        program = f"import sys; sys.path[:] = {search!r}\nfrom nsprim.call.zygote_process import main\nmain()\n"
        argv = [sys.executable, "-I", "-c", program]
        try:
            from ..plan import SetSid

            # Its own session (the terminal's ^C is the caller's to handle), fd 3 its control socket,
            # an empty environment (a call gets its template's).
            plan = Plan((SetSid(), FdMap(((theirs.fileno(), CONTROL_FD),)), Exec(argv[0], argv, {})))
            self._process = start(plan, clone_flags=0)
        except BaseException:
            mine.close()
            raise
        finally:
            theirs.close()

    @property
    def pid(self) -> int:
        """The zygote's pid."""
        return self._process.pid

    @property
    def alive(self) -> bool:
        """Whether the zygote still runs (it ends when closed, or if killed)."""
        return self._process.poll() is None

    def spawn_steps(self, child: ChildPlan, args: list[str], close_after: list[int]) -> Waits[Process]:
        """Start *child* as a fork of the zygote (a :data:`~nsprim.container.launch.Spawner`):
        the waits end with the process once its plan ran, or raise the
        :class:`~nsprim.errors.StepError` of the step that failed."""
        status_r = report_r = -1
        to_close = list(close_after)  # ours to close on every path, once: the child has its copies
        try:
            prefix, body, flags = _adapted(child)
            status_r, status_w = os.pipe2(os.O_CLOEXEC)
            to_close.append(status_w)
            report_r, report_w = os.pipe2(os.O_CLOEXEC)
            to_close.append(report_w)
            prefix = _with_report(prefix, report_w)
            pid, pidfd = self._fork(prefix, body, flags, status_w)
        except BaseException:
            for fd in (status_r, report_r):
                if fd >= 0:
                    os.close(fd)
            raise
        finally:
            for fd in to_close:
                with contextlib.suppress(OSError):
                    os.close(fd)
        proc = Process(pid, pidfd, args)
        proc.exit_link = _spawn.MonitorLink(status_r, pid, 0, self.pid, 0)
        try:
            yield report_r
            data = _read_report(report_r)
        except BaseException:
            proc.close()  # kills it, and reads its end from the zygote
            raise
        finally:
            os.close(report_r)
        if data == b"R":
            return proc
        steps = (*prefix.steps, *body.steps)  # (the exec, last, is not run)
        status = proc.wait()
        if len(data) != _FOUR.size:  # no report: it died during its setup
            sig = -status if status < 0 else None
            raise ChildDiedError(None, -1, signal=sig, exit_status=status if status >= 0 else None)
        index, kind, err, part = _FOUR.unpack(data)
        kinds = (*prefix.encoded.kinds, *body.encoded.kinds)
        if not (0 <= index < len(steps)) or kinds[index] != kind:
            detail = f"the zygote's child reported step {index}, which is not its plan's"
            raise SyscallError(err or errno.EIO, "spawn", detail=detail)
        step = steps[index]
        cls = ExecutableNotFoundError if isinstance(step, Exec) and err == errno.ENOENT else StepError
        raise cls(err, step, index, part)

    def _fork(self, prefix: Plan, body: Plan, flags: int, status_w: int) -> tuple[int, int]:
        fds = sorted(_descriptors(prefix.steps))
        with self._lock:
            if self._control.fileno() < 0:
                raise NsprimError("the zygote is closed")
            hit = self._bodies.get(id(body))
            if hit is None or hit[0] is not body:
                key = len(self._bodies)
                env = dict(_exec_env(body))
                raw = [s.lower() for s in body.steps[:-1]]
                for step, lowered in zip(body.steps, raw, strict=False):
                    if lowered.kind in _NEEDS_A_CLONE:
                        raise ConfigError(f"a zygote's child cannot run the step `{step.describe()}`")
                self._send(pickle.dumps(("body", key, raw, env)), [])
                self._bodies[id(body)] = (body, key)
            else:
                key = hit[1]
            raw = [s.lower() for s in prefix.steps]
            message = ("spawn", key, raw, fds, bool(flags & C.CLONE_NEWPID))
            self._send(pickle.dumps(message), [status_w, *fds])
            data, ancdata, _flags, _addr = self._control.recvmsg(4096, socket.CMSG_SPACE(4))
        if not data:
            raise NsprimError(f"the zygote (pid {self.pid}) ended")
        (pid,) = pickle.loads(data)  # the zygote is ours, started by us: trusted
        if pid < 0:
            raise SyscallError(-pid, "fork", detail="the zygote's fork of a call")
        pidfd = struct.unpack("i", ancdata[0][2][:4])[0]
        os.set_inheritable(pidfd, False)
        return pid, pidfd

    def _send(self, data: bytes, fds: list[int]) -> None:
        try:
            if fds:
                rights = [(socket.SOL_SOCKET, socket.SCM_RIGHTS, struct.pack(f"{len(fds)}i", *fds))]
                self._control.sendmsg([data], rights)
            else:
                self._control.sendmsg([data])
        except (BrokenPipeError, ConnectionResetError):
            raise NsprimError(f"the zygote (pid {self.pid}) ended") from None

    def close(self) -> None:
        """Kill the calls it forked that still run, and end the zygote (waits for it)."""
        with self._lock:
            if self._control.fileno() >= 0:
                self._control.close()
        self._process.wait()
        self._process.close()

    def __enter__(self) -> Zygote:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"<Zygote pid={self.pid}>"


def _adapted(child: ChildPlan) -> tuple[Plan, Plan, int]:
    """*child*'s plan as a fork runs it: the namespaces its clone would make, made by an unshare
    step first (but its pid namespace, made around the zygote's fork); the descriptors placed
    last (the namespaces' are needed until then); the body as it is (cached by the builder:
    sent to the zygote once), its exec left out there."""
    if child.actions or child.pidns_fd >= 0 or child.cgroup_fd >= 0:
        raise ConfigError("a zygote's child has no parent actions, joined pid namespace or clone into a cgroup")
    flags = child.clone_flags
    if flags & _REFUSED_FLAGS:
        raise ConfigError("a zygote's child cannot have a user or time namespace", what="namespaces")
    body = child.body.steps
    if not body or not isinstance(body[-1], Exec):
        raise ConfigError("a zygote's child plan ends in the exec it replaces")
    steps: list[Step] = []
    if flags & ~C.CLONE_NEWPID:  # what its clone would have made: the pid namespace is the zygote's fork's
        steps.append(Unshare(flags & ~C.CLONE_NEWPID))
    fdmap: FdMap | None = None
    for step in child.prefix.steps:
        if isinstance(step, FdMap):
            fdmap = step
        elif isinstance(step, (SetNs, WriteFile, Mount)):  # Mount: the own v1 groups' binds, in its mount namespace
            steps.append(step)
        else:
            raise ConfigError(f"a zygote's child cannot run the prefix step `{step.describe()}`")
    if fdmap is None:
        raise ConfigError("a zygote's child plan places its standard streams")
    steps.append(fdmap)  # last: the namespaces joined before it are open descriptors until then
    return Plan(tuple(steps)), child.body, flags


def _with_report(prefix: Plan, report_w: int) -> Plan:
    """The prefix's FdMap with the report pipe at :data:`REPORT_FD`, every other descriptor closed:
    without an exec, nothing close-on-exec would go (the namespaces' descriptors, the zygote's)."""
    *head, fdmap = prefix.steps
    assert isinstance(fdmap, FdMap)
    pairs = (*fdmap.pairs, (report_w, REPORT_FD))
    if any(dst == REPORT_FD for _src, dst in fdmap.pairs):
        raise ConfigError(f"pass_fds: fd {REPORT_FD} inside is the zygote's report pipe", what="pass_fds")
    return Plan((*head, replace(fdmap, pairs=pairs, keep_others=False, close_others=True, kept=())))


def _descriptors(steps: Sequence[Step]) -> set[int]:
    fds: set[int] = set()
    for step in steps:
        if isinstance(step, SetNs):
            fds.add(step.fd)
            if step.root_fd >= 0:
                fds.add(step.root_fd)
        elif isinstance(step, FdMap):
            fds.update(src for src, _dst in step.pairs)
    return fds


def _exec_env(body: Plan) -> dict[str, str]:
    last = body.steps[-1]
    assert isinstance(last, Exec)
    return dict(last.env or {})


def _read_report(fd: int) -> bytes:
    """``R`` (the plan ran), a failure's four ints, or what came before the end of file."""
    data = b""
    while len(data) < _FOUR.size and data != b"R":
        chunk = os.read(fd, _FOUR.size - len(data))
        if not chunk:
            break
        data += chunk
    return data
