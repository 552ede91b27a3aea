"""The handle of a process started in namespaces: :class:`Process`, and what :func:`~nsprim.spawning.run` returns.

The process is made by :func:`nsprim.spawning.spawn` (or, from a plan, by
:func:`nsprim.lowlevel.start`); this module holds what the caller keeps of it:
its pid, a pidfd immune to pid reuse, its pipes.  ``nsprim.process.spawn``,
``run``, ``start``, ``open_streams``, ``join_namespaces`` and ``Streams``
still name those functions here.
"""

from __future__ import annotations

import contextlib
import errno
import importlib
import os
import select
import time
from collections.abc import Sequence
from types import TracebackType
from typing import IO, Any

from . import _sys
from ._dataclass import dataclass
from ._readiness import readable_async, ready_async, wait_readable
from ._sys import spawn as _spawn
from .errors import SyscallError, TimeoutExpired
from .namespace import Namespace, NamespaceId, NamespaceType, namespace_ids

TYPE_CHECKING = False
if TYPE_CHECKING:
    import signal as _signal
else:
    import _signal  # the same constants as plain ints: `signal` makes three enum classes at import

__all__ = [
    "CommandArg",
    "Process",
    "CompletedRun",
    "TimeOffsets",
    "PIPE",
    "DEVNULL",
    "STDOUT",
]

#: One word of a command line, as :func:`subprocess.Popen` takes it.
CommandArg = str | bytes | os.PathLike[str]

# subprocess's values, written out: importing subprocess costs a command line ~3 ms.
PIPE = -1
DEVNULL = -3
STDOUT = -2

# clone(2) time namespace offsets apply to these clocks only.
_CLOCK_MONOTONIC = 1
_CLOCK_BOOTTIME = 7


@dataclass(frozen=True)
class TimeOffsets:
    """Offsets, in seconds, of a new time namespace's clocks from the host's."""

    monotonic: float = 0.0
    boottime: float = 0.0

    def render(self) -> bytes:
        """The text for ``/proc/<pid>/timens_offsets``."""
        lines = []
        for clock, value in ((_CLOCK_MONOTONIC, self.monotonic), (_CLOCK_BOOTTIME, self.boottime)):
            ns = round(value * 1_000_000_000)
            secs, nsec = divmod(ns, 1_000_000_000)
            lines.append(f"{clock} {secs} {nsec}\n")
        return "".join(lines).encode()


class Process:
    """A child started by :func:`spawn`: its pid, a pidfd, and its pipes.

    The pidfd makes :meth:`send_signal` and :meth:`wait` immune to pid reuse.
    As a context manager it closes the pipes and, if the child still runs,
    kills and reaps it: no zombie is left behind.
    """

    def __init__(
        self,
        pid: int,
        pidfd: int,
        args: Sequence[CommandArg],
        *,
        stdin: IO[bytes] | None = None,
        stdout: IO[bytes] | None = None,
        stderr: IO[bytes] | None = None,
    ) -> None:
        self.pid = pid
        self.args = list(args)
        self.stdin = stdin
        self.stdout = stdout
        self.stderr = stderr
        self.returncode: int | None = None
        self._pidfd = pidfd
        #: µs each setup step took in the child, when :func:`start` was asked for ``timings``:
        #: the clone itself first, then one entry per step (the exec last: until it returned).
        self.setup_us: tuple[float, ...] = ()
        #: The descriptors :class:`~nsprim.plan.KeepFd` steps left, by slot (``start(keep_fds=N)``; -1: none).
        self.kept_fds: tuple[int, ...] = ()
        #: With ``start(monitor=...)``: the link to the monitor that is the process's parent (we
        #: are not): waiting asks it, and :meth:`close` lets the process go on instead of killing it.
        self.monitor: _spawn.MonitorLink | None = None
        #: The link to a parent of ours that reports how the process ended (a zygote, which
        #: forked it): waiting asks it; :meth:`close` still kills the process.
        self.exit_link: _spawn.MonitorLink | None = None

    def __repr__(self) -> str:
        state = "running" if self.returncode is None else f"returncode={self.returncode}"
        return f"<nsprim.Process pid={self.pid} {state} args={self.args!r}>"

    @property
    def pidfd(self) -> int:
        """The process file descriptor (``-1`` once the process was reaped)."""
        return self._pidfd

    # ---- waiting ---------------------------------------------------------------

    def _reap(self, options: int) -> int | None:
        if self.returncode is not None:
            return self.returncode
        link = self.monitor or self.exit_link
        if link is not None:
            status = link.exit_status(block=not options & os.WNOHANG)
            if status is not None:
                self.returncode = status
                self._close_pidfd()
            return status
        try:
            res = os.waitid(os.P_PIDFD, self._pidfd, os.WEXITED | options)
        except ChildProcessError:  # reaped elsewhere (a SIGCHLD handler, say)
            self.returncode = 255
            self._close_pidfd()
            return self.returncode
        if res is None:
            return None
        if res.si_code == os.CLD_EXITED:
            self.returncode = res.si_status
        else:  # CLD_KILLED / CLD_DUMPED
            self.returncode = -res.si_status
        self._close_pidfd()
        return self.returncode

    def poll(self) -> int | None:
        """The exit status if the process has exited (reaping it), else ``None``."""
        return self._reap(os.WNOHANG)

    def exit_fd(self) -> int:
        """The descriptor that becomes readable once the process has ended for us
        (its pidfd; a monitored process' link to its monitor, which speaks after
        its cleanup); ``-1`` once the status is collected.  After it is readable,
        :meth:`poll` returns the status."""
        if self.returncode is not None:
            return -1
        link = self.monitor or self.exit_link
        if link is not None and link.fd >= 0:
            return link.fd
        return self._pidfd

    def wait(self, timeout: float | None = None) -> int:
        """Wait for the process to exit; return its status (``-N`` for signal N).

        Raises :class:`~nsprim.errors.TimeoutExpired` after *timeout* seconds.
        """
        deadline = None if timeout is None else time.monotonic() + timeout
        while (status := self.poll()) is None:
            left = None if deadline is None else deadline - time.monotonic()
            if left is not None and left <= 0:
                raise TimeoutExpired(self.pid, timeout or 0.0)
            fd = self.exit_fd()
            if fd < 0:  # pragma: no cover - poll() collected it meanwhile
                continue
            wait_readable(fd, left)
        return status

    async def wait_async(self, timeout: float | None = None) -> int:
        """Wait in the running event loop (asyncio or trio) for the process to exit; return its
        status.  Raises :class:`~nsprim.errors.TimeoutExpired` after *timeout* seconds.

        The exit descriptor is watched by the loop (no thread); the status is
        collected by the same code as :meth:`wait`.  Cancelling the awaiting
        task stops the wait and leaves the process as it was (still ours to
        wait for, kill or close)."""
        deadline = None if timeout is None else time.monotonic() + timeout
        while (status := self.poll()) is None:
            if deadline is not None and time.monotonic() >= deadline:
                raise TimeoutExpired(self.pid, timeout or 0.0)
            fd = self.exit_fd()
            if fd >= 0:
                await readable_async(fd, deadline=deadline)
        return status

    def communicate(
        self, input: bytes | None = None, timeout: float | None = None
    ) -> tuple[bytes | None, bytes | None]:
        """Send *input*, read stdout and stderr to the end, and wait (as Popen does)."""
        out_fd = self.stdout.fileno() if self.stdout is not None else -1
        err_fd = self.stderr.fileno() if self.stderr is not None else -1
        chunks: dict[int, list[bytes]] = {fd: [] for fd in (out_fd, err_fd) if fd >= 0}
        readers = {f.fileno(): f for f in (self.stdout, self.stderr) if f is not None}
        writer = self.stdin
        data = memoryview(input or b"")
        if writer is not None and not data:
            writer.close()
            writer = None
        deadline = None if timeout is None else time.monotonic() + timeout
        while readers or writer is not None:
            left = None if deadline is None else deadline - time.monotonic()
            if left is not None and left <= 0:
                raise TimeoutExpired(self.pid, timeout or 0.0)
            wlist = [writer.fileno()] if writer is not None else []
            ready_r, ready_w, _ = select.select(list(readers), wlist, [], left)
            for fd in ready_r:
                chunk = os.read(fd, 65536)
                if chunk:
                    chunks[fd].append(chunk)
                else:
                    readers.pop(fd).close()
            if ready_w and writer is not None:
                try:
                    data = data[os.write(writer.fileno(), data[:65536]) :]
                except BrokenPipeError:
                    data = data[:0]
                if not data:
                    writer.close()
                    writer = None
        self.wait(None if deadline is None else max(0.0, deadline - time.monotonic()))
        out = b"".join(chunks[out_fd]) if out_fd >= 0 else None
        err = b"".join(chunks[err_fd]) if err_fd >= 0 else None
        return out, err

    async def communicate_async(
        self, input: bytes | None = None, timeout: float | None = None
    ) -> tuple[bytes | None, bytes | None]:
        """:meth:`communicate` in the running event loop (asyncio or trio): send *input*, read
        stdout and stderr to the end, and wait; every pipe is watched by the loop (no
        thread).  After *timeout* seconds, :class:`~nsprim.errors.TimeoutExpired` (the
        process goes on).

        Cancelled, or timed out, the pipes are closed and the process is left as
        it was."""
        deadline = None if timeout is None else time.monotonic() + timeout
        out, err = await self._exchange_until(input, deadline, timeout)
        left = None if deadline is None else max(0.0, deadline - time.monotonic())
        try:
            await self.wait_async(left)
        except TimeoutExpired:
            raise TimeoutExpired(self.pid, timeout or 0.0) from None
        return out, err

    async def exchange_async(
        self, input: bytes | None = None, timeout: float | None = None
    ) -> tuple[bytes | None, bytes | None]:
        """The pipe half of :meth:`communicate_async`: send *input* (then close stdin) and
        read stdout and stderr until they end, without waiting for the process (after
        *timeout* seconds, :class:`~nsprim.errors.TimeoutExpired`)."""
        return await self._exchange_until(input, None if timeout is None else time.monotonic() + timeout, timeout)

    async def _exchange_until(
        self, input: bytes | None, deadline: float | None, timeout: float | None
    ) -> tuple[bytes | None, bytes | None]:
        """One task pumps every pipe: the loop says which is ready, the rest is :meth:`communicate`'s."""
        out_fd = self.stdout.fileno() if self.stdout is not None else -1
        err_fd = self.stderr.fileno() if self.stderr is not None else -1
        chunks: dict[int, list[bytes]] = {}
        readers: dict[int, IO[bytes]] = {}
        for f in (self.stdout, self.stderr):
            if f is not None:
                readers[f.fileno()] = f
                chunks[f.fileno()] = []
        writer = self.stdin
        data = memoryview(input or b"")
        try:
            for fd in readers:
                os.set_blocking(fd, False)
            if writer is not None:
                os.set_blocking(writer.fileno(), False)
            while readers or writer is not None:
                if writer is not None and not data:
                    writer.close()
                    writer = None
                    continue
                if deadline is not None and time.monotonic() >= deadline:
                    raise TimeoutExpired(self.pid, timeout or 0.0)
                ready_r, ready_w = await ready_async(
                    readers, [writer.fileno()] if writer is not None else [], deadline=deadline
                )
                for fd in ready_r:
                    try:
                        chunk = os.read(fd, 65536)
                    except BlockingIOError:
                        continue
                    if chunk:
                        chunks[fd].append(chunk)
                    else:
                        readers.pop(fd).close()
                if ready_w and writer is not None:
                    try:
                        data = data[os.write(writer.fileno(), data[:65536]) :]
                    except BlockingIOError:
                        pass
                    except BrokenPipeError:
                        data = data[:0]  # the reader went away: the rest is dropped, as communicate does
        except BaseException:
            for f in (*readers.values(), writer):
                if f is not None:
                    with contextlib.suppress(OSError):
                        f.close()
            raise
        out = b"".join(chunks[out_fd]) if out_fd >= 0 else None
        err = b"".join(chunks[err_fd]) if err_fd >= 0 else None
        return out, err

    # ---- signals ---------------------------------------------------------------

    def send_signal(self, sig: int) -> None:
        """Send *sig* through the pidfd; a no-op once the process was reaped."""
        if self.returncode is not None or self._pidfd < 0:
            return
        try:
            _sys.pidfd_send_signal(self._pidfd, sig)
        except SyscallError as exc:
            if exc.errno != errno.ESRCH:  # exited, not yet reaped
                raise

    def terminate(self) -> None:
        """Send SIGTERM."""
        self.send_signal(_signal.SIGTERM)

    def kill(self) -> None:
        """Send SIGKILL."""
        self.send_signal(_signal.SIGKILL)

    # ---- namespaces ------------------------------------------------------------

    def namespace_ids(self) -> dict[NamespaceType, NamespaceId]:
        """The identity of each of the process' namespaces."""
        return namespace_ids(self.pid)

    def namespace(self, nstype: NamespaceType | str) -> Namespace:
        """Open one of the process' namespaces (keeps it alive while open)."""
        return Namespace.of_pid(self.pid, nstype)

    # ---- lifetime ----------------------------------------------------------------

    def _close_pidfd(self) -> None:
        if self._pidfd >= 0:
            fd, self._pidfd = self._pidfd, -1
            os.close(fd)

    def close(self) -> None:
        """Close the pipes; kill and reap the process if it still runs (a monitored
        process goes on: only our descriptors are closed)."""
        if self.monitor is not None:
            self.release()
            return
        self._close_pipes()
        if self.returncode is None and self._pidfd >= 0:
            self.kill()
            self.wait()

    def release(self) -> None:
        """Let the process go: close our descriptors without waiting for it or reaping it.

        For a process another parent collects: when this one exits, the kernel
        hands its children to the nearest subreaper (an engine's conmon or
        shim), which reaps them and reads their exit status.  Reaping it here,
        even one already ended, would take that status away."""
        self._close_pipes()
        if self.monitor is not None:
            self.monitor.close()
        if self.exit_link is not None:
            self.exit_link.close()
        self._close_pidfd()

    def _close_pipes(self) -> None:
        for f in (self.stdin, self.stdout, self.stderr):
            if f is not None:
                with contextlib.suppress(OSError):
                    f.close()

    def __enter__(self) -> Process:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    def __del__(self) -> None:
        # Never kill from a finaliser; just do not leak the descriptor.
        with contextlib.suppress(Exception):
            if self.monitor is not None:
                self.monitor.close()
            elif self.returncode is None and self._pidfd >= 0 and self.exit_link is None:
                self.poll()
            if self.exit_link is not None:
                self.exit_link.close()
            self._close_pidfd()


@dataclass(frozen=True)
class CompletedRun:
    """What :func:`run` returns."""

    args: list[CommandArg]
    returncode: int
    stdout: bytes | None
    stderr: bytes | None

    def check_returncode(self) -> None:
        """Raise :class:`subprocess.CalledProcessError` for a non-zero status."""
        if self.returncode:
            import subprocess

            raise subprocess.CalledProcessError(self.returncode, self.args, self.stdout, self.stderr)


# Process creation lives in nsprim.spawning and nsprim.lowlevel, which import this module: these
# names, long public here, resolve there on first use.
_CREATION = {
    "spawn": "spawning",
    "run": "spawning",
    "open_streams": "spawning",
    "join_namespaces": "spawning",
    "Streams": "spawning",
    "StdioArg": "spawning",
    "start": "lowlevel",
    "ParentAction": "lowlevel",
}


def __getattr__(name: str) -> Any:
    module = _CREATION.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(importlib.import_module(f"nsprim.{module}"), name)
