"""The program of a zygote: a warm interpreter that forks each call's process.

It runs as ``python -I -c`` (see :class:`nsprim.call.zygote.Zygote`), started
by the caller and trusted by it: it imports nsprim's native core and the
payload program once, then serves its control socket (:data:`CONTROL_FD`, a
``SOCK_SEQPACKET`` socket) until the caller closes it.  The caller's
messages are pickles (caller to zygote only, as a call's request):

``("body", key, raw_steps, env)``
    a plan body (without its exec) and the environment its exec would give,
    encoded once and kept under *key*;
``("spawn", key, raw_prefix, host_fds, new_pid_ns)``
    with descriptors (``SCM_RIGHTS``): the write end of the call's status
    pipe, then one descriptor for each number in *host_fds* (the caller's
    numbers the prefix steps name).  The zygote forks a child — pid 1 of a
    new pid namespace with *new_pid_ns* — and answers ``(pid,)`` with the
    child's pidfd (``(-errno,)`` if the fork failed).

The child runs the prefix (the descriptors renumbered to its own) and the
body with :func:`nsprim._sys.spawn.run_here`, as a cloned child would run
them before its exec: namespaces, cgroup, root, security.  Instead of an
exec it writes ``R`` on :data:`REPORT_FD` and goes on as the call's payload
(:func:`nsprim.call.payload.main`), with the environment the body's exec
would have given.  A failed step is written there instead (four ints:
index, kind, errno, part), and the child exits with 127.  When a child
ends, the zygote writes its ``waitid`` code and status on its status pipe.

Nothing of one call passes through the zygote: its request and answer go
straight between the caller and the call's process, on the call's socket.
"""

from __future__ import annotations

import contextlib
import os
import pickle
import select
import signal
import socket
import struct
import sys

from .._dataclass import replace
from .._sys import C, setns, unshare
from .._sys import spawn as _spawn
from . import payload, wire

__all__ = ["CONTROL_FD", "REPORT_FD", "main"]

#: The zygote's end of its control socket.
CONTROL_FD = 3
#: Where a call's process writes ``R`` or its failure (then closed): placed by the prefix's FdMap.
REPORT_FD = 4

_FOUR = struct.Struct("iiii")
_MAX_FDS = 64


def _renumbered(raw: _spawn.RawStep, mapping: dict[int, int]) -> _spawn.RawStep:
    """*raw* with the caller's descriptor numbers replaced by ours (SETNS and FDMAP carry them)."""
    if raw.kind == _spawn.StepKind.SETNS:
        root = mapping[raw.c - 1] + 1 if raw.c > 0 else 0
        return replace(raw, a=mapping[raw.a], c=root)
    if raw.kind == _spawn.StepKind.FDMAP and raw.ints:
        ints = list(raw.ints)
        npaired = len(ints) - raw.c
        for i in range(0, npaired, 2):
            ints[i] = mapping[ints[i]]
        return replace(raw, ints=tuple(ints))
    return raw


def _run_child(
    prefix: _spawn.EncodedPlan, body: _spawn.EncodedPlan, env: dict[str, str], report_fd: int, fdmap_at: int
) -> None:
    """In the forked child: the plan, then the payload; never returns."""
    try:
        report = _spawn.run_here(body, prefix=prefix)
        if report is not None:
            fd = REPORT_FD if report.index > fdmap_at else report_fd
            os.write(fd, _FOUR.pack(report.index, report.kind, report.errno, report.part))
            os._exit(127)
        os.environ.clear()
        os.environ.update(env)
        os.write(REPORT_FD, b"R")
        os.close(REPORT_FD)
        payload.main(wire)
    finally:
        os._exit(127)


class _Zygote:
    def __init__(self, control: socket.socket) -> None:
        self.control = control
        self.bodies: dict[int, tuple[_spawn.EncodedPlan, dict[str, str]]] = {}
        self.children: dict[int, tuple[int, int]] = {}  # pidfd: (pid, status pipe)
        self.poll = select.poll()
        self.poll.register(control.fileno(), select.POLLIN)
        self.own_pidns = os.open("/proc/self/ns/pid", os.O_RDONLY | os.O_CLOEXEC)

    def serve(self) -> None:
        while True:
            for fd, _events in self.poll.poll():
                if fd == self.control.fileno():
                    if not self._message():
                        self._end()
                        return
                else:
                    self._reap(fd)

    def _message(self) -> bool:
        data, ancdata, _flags, _addr = self.control.recvmsg(1 << 20, socket.CMSG_SPACE(_MAX_FDS * 4))
        fds: list[int] = []
        for level, kind, cdata in ancdata:
            if level == socket.SOL_SOCKET and kind == socket.SCM_RIGHTS:
                fds += struct.unpack(f"{len(cdata) // 4}i", cdata[: len(cdata) - len(cdata) % 4])
        if not data:
            return False
        message = pickle.loads(data)  # the caller's, who trusts us; a call's process never writes here
        if message[0] == "body":
            _, key, raw, env = message
            self.bodies[key] = (_spawn.encode(raw), env)
            return True
        _, key, raw_prefix, host_fds, new_pid_ns = message
        self._spawn(key, raw_prefix, host_fds, new_pid_ns, fds)
        return True

    def _spawn(
        self,
        key: int,
        raw_prefix: list[_spawn.RawStep],
        host_fds: list[int],
        new_pid_ns: bool,
        fds: list[int],
    ) -> None:
        status_fd, theirs = fds[0], fds[1:]
        mapping = dict(zip(host_fds, theirs, strict=True))
        body, env = self.bodies[key]
        renumbered = [_renumbered(raw, mapping) for raw in raw_prefix]
        fdmap_at = next(i for i, raw in enumerate(renumbered) if raw.kind == _spawn.StepKind.FDMAP)
        ints = renumbered[fdmap_at].ints or ()
        pairs = ints[: len(ints) - renumbered[fdmap_at].c]  # (src, dst, ...), then the kept ones
        report_fd = next(pairs[i] for i in range(0, len(pairs), 2) if pairs[i + 1] == REPORT_FD)
        prefix = _spawn.encode(renumbered)
        try:
            pid, pidfd = self.fork(new_pid_ns)
        except OSError as exc:
            os.close(status_fd)
            pid, pidfd = -(exc.errno or 1), -1
        if pid == 0:
            self.control.detach()  # its number may be another's after the plan's FdMap
            _run_child(prefix, body, env, report_fd, fdmap_at)
        for fd in theirs:  # the child has its copies
            os.close(fd)
        if pid < 0:
            self.control.sendmsg([pickle.dumps((pid,))])  # -errno
            return
        self.children[pidfd] = (pid, status_fd)
        self.poll.register(pidfd, select.POLLIN)
        self.control.sendmsg([pickle.dumps((pid,))], [(socket.SOL_SOCKET, socket.SCM_RIGHTS, struct.pack("i", pidfd))])

    def fork(self, new_pid_ns: bool) -> tuple[int, int]:
        """``os.fork``: with *new_pid_ns*, the child is pid 1 of a new pid namespace (ours is ours
        again at once).  Returns ``(0, -1)`` in the child, ``(pid, pidfd)`` here."""
        if new_pid_ns:
            unshare(C.CLONE_NEWPID)
        pid = -1
        try:
            pid = os.fork()
        finally:
            if new_pid_ns and pid != 0:  # (the child's namespaces are its own)
                setns(self.own_pidns, C.CLONE_NEWPID)
        if pid == 0:
            return 0, -1
        return pid, os.pidfd_open(pid)

    def _reap(self, pidfd: int) -> None:
        self.poll.unregister(pidfd)
        _pid, status_fd = self.children.pop(pidfd)
        res = os.waitid(os.P_PIDFD, pidfd, os.WEXITED)
        code, status = (res.si_code, res.si_status) if res is not None else (0, 255)
        with contextlib.suppress(OSError):  # the caller no longer listens
            os.write(status_fd, _FOUR.pack(code, status, 0, 0))
        os.close(status_fd)
        os.close(pidfd)

    def _end(self) -> None:
        """The caller is gone or done: no call outlives it."""
        for pidfd in list(self.children):
            with contextlib.suppress(OSError):  # it ended: reaped next
                signal.pidfd_send_signal(pidfd, signal.SIGKILL)
            self._reap(pidfd)


def main() -> None:
    """Serve the control socket on fd :data:`CONTROL_FD` until the caller closes it."""
    control = socket.socket(fileno=CONTROL_FD)
    _Zygote(control).serve()
    sys.stdout.flush()
    os._exit(0)
