"""The program of a zygote: a warm interpreter that forks each call's process.

It runs as ``python -I -c`` (see :class:`nsprim.call.zygote.Zygote`), started
by the caller and trusted by it: it imports nsprim's native core and the
payload program once, then serves its control socket (:data:`CONTROL_FD`, a
``SOCK_SEQPACKET`` socket) until the caller closes it.  The caller's
messages are pickles (caller to zygote only, as a call's request):

``("body", key, raw_steps, env)``
    a plan body (without its exec) and the environment its exec would give,
    encoded once and kept under *key*;
``("spawn", key, raw_prefix, host_fds, clone_flags, with_cgroup)``
    with descriptors (``SCM_RIGHTS``): the write end of the call's status
    pipe, the cgroup v2 directory to be born in (*with_cgroup*), then one
    descriptor for each number in *host_fds* (the caller's numbers the
    prefix steps name).  The zygote forks a child with ``clone3`` — into the
    namespaces of *clone_flags* and the cgroup, as the core clones a
    container's child — and answers ``(pid,)`` with the child's pidfd.

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
import ctypes
import os
import pickle
import select
import signal
import socket
import struct
import sys

from .._dataclass import replace
from .._sys import spawn as _spawn
from . import payload, wire

__all__ = ["CONTROL_FD", "REPORT_FD", "main"]

#: The zygote's end of its control socket.
CONTROL_FD = 3
#: Where a call's process writes ``R`` or its failure (then closed): placed by the prefix's FdMap.
REPORT_FD = 4

_FOUR = struct.Struct("iiii")
_MAX_FDS = 64
_SYS_CLONE3 = 435  # the same on every architecture
_CLONE_PIDFD = 0x1000
_CLONE_INTO_CGROUP = 0x200000000


class _CloneArgs(ctypes.Structure):
    """``struct clone_args`` up to ``cgroup`` (``CLONE_ARGS_SIZE_VER2``)."""

    _fields_ = [
        (name, ctypes.c_uint64)
        for name in (
            "flags",
            "pidfd",
            "child_tid",
            "parent_tid",
            "exit_signal",
            "stack",
            "stack_size",
            "tls",
            "set_tid",
            "set_tid_size",
            "cgroup",
        )
    ]


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
        self.api = ctypes.pythonapi
        self.libc = ctypes.PyDLL(None, use_errno=True)
        self.libc.syscall.restype = ctypes.c_long
        self.clone_args = _CloneArgs()
        self.pidfd_slot = ctypes.c_int(-1)

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
        _, key, raw_prefix, host_fds, clone_flags, with_cgroup = message
        self._spawn(key, raw_prefix, host_fds, clone_flags, with_cgroup, fds)
        return True

    def _spawn(
        self,
        key: int,
        raw_prefix: list[_spawn.RawStep],
        host_fds: list[int],
        clone_flags: int,
        with_cgroup: bool,
        fds: list[int],
    ) -> None:
        status_fd, theirs = fds[0], fds[1:]
        cgroup_fd = -1
        if with_cgroup:
            cgroup_fd, theirs = theirs[0], theirs[1:]
        mapping = dict(zip(host_fds, theirs, strict=True))
        body, env = self.bodies[key]
        renumbered = [_renumbered(raw, mapping) for raw in raw_prefix]
        fdmap_at = next(i for i, raw in enumerate(renumbered) if raw.kind == _spawn.StepKind.FDMAP)
        report_fd = next(
            renumbered[fdmap_at].ints[i]  # type: ignore[index]
            for i in range(0, len(renumbered[fdmap_at].ints or ()) - renumbered[fdmap_at].c, 2)
            if (renumbered[fdmap_at].ints or ())[i + 1] == REPORT_FD
        )
        prefix = _spawn.encode(renumbered)
        passed = theirs if cgroup_fd < 0 else [cgroup_fd, *theirs]
        try:
            pid, pidfd = self.fork(clone_flags, cgroup_fd)
        except OSError as exc:
            os.close(status_fd)
            pid, pidfd = -(exc.errno or 1), -1
        if pid == 0:
            self.control.detach()  # its number may be another's after the plan's FdMap
            _run_child(prefix, body, env, report_fd, fdmap_at)
        for fd in passed:  # the child has its copies
            os.close(fd)
        if pid < 0:
            self.control.sendmsg([pickle.dumps((pid,))])  # -errno
            return
        self.children[pidfd] = (pid, status_fd)
        self.poll.register(pidfd, select.POLLIN)
        self.control.sendmsg([pickle.dumps((pid,))], [(socket.SOL_SOCKET, socket.SCM_RIGHTS, struct.pack("i", pidfd))])

    def fork(self, flags: int, cgroup_fd: int) -> tuple[int, int]:
        """``os.fork`` by ``clone3``: the child in new namespaces (*flags*) and, unless -1, born
        in the cgroup v2 directory *cgroup_fd* (moving it there later would take the kernel's
        global lock on thread groups, which waits out an RCU grace period: milliseconds).
        Returns ``(0, -1)`` in the child, ``(pid, pidfd)`` here."""
        args = self.clone_args
        args.flags = flags | _CLONE_PIDFD | (_CLONE_INTO_CGROUP if cgroup_fd >= 0 else 0)
        args.pidfd = ctypes.addressof(self.pidfd_slot)
        args.exit_signal = signal.SIGCHLD
        args.cgroup = max(cgroup_fd, 0)
        # What os.fork does around fork(2), with the GIL held throughout (a PyDLL call keeps it).
        self.api.PyOS_BeforeFork()
        pid = self.libc.syscall(_SYS_CLONE3, ctypes.byref(args), ctypes.sizeof(args))
        if pid == 0:
            self.api.PyOS_AfterFork_Child()
            return 0, -1
        err = ctypes.get_errno()
        self.api.PyOS_AfterFork_Parent()
        if pid < 0:
            raise OSError(err, f"clone3: {os.strerror(err)}")
        return pid, self.pidfd_slot.value

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
