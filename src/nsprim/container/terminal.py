"""The caller's side of an interactive container: its terminal, and the signals it forwards.

A container made with :meth:`Container.tty() <nsprim.container.Container.tty>`
gets a pseudo-terminal of its own, as ``docker run -t`` gives one.  The child
opens it from the container's ``/dev/ptmx`` (its own ``devpts``) once the root
is entered, makes the slave its controlling terminal and fds 0-2, and sends
the master back over a socket (:class:`OpenTerminal`); the window size travels
the other way on the same socket, written before the clone.  The payload never
holds a descriptor of the caller's terminal, so nothing it does (``TIOCSTI``
included) can reach it.

:func:`relay` then copies between the caller's terminal and the master in the
calling thread, with ``poll``: no thread per container.  :class:`RawMode`
puts the caller's terminal in raw mode for that time and restores its modes on
the way out, whatever the way out is; :class:`WindowSize` keeps the
container's window size in step with the caller's (``SIGWINCH``).
:class:`SignalForwarder` passes the signals a ``docker run`` forwards on to
the container instead of dying of them.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import os
import select
import signal
import struct
import termios
import time
from collections.abc import Callable, Iterable
from types import FrameType, TracebackType
from typing import Any, ClassVar, Protocol

from .._dataclass import dataclass
from .._sys.spawn import RawStep, StepKind
from ..errors import ConfigError, SyscallError
from ..plan import Step

__all__ = [
    "TERMINAL_FD",
    "FORWARDED_SIGNALS",
    "OpenTerminal",
    "TerminalChannel",
    "RawMode",
    "WindowSize",
    "SignalForwarder",
    "relay",
    "attach",
    "terminal_size",
    "set_terminal_size",
]

#: Where the child finds its end of the terminal socket (placed by the prefix's FdMap, closed by the step).
TERMINAL_FD = 3

#: The signals ``nsprim run`` passes on to the container, as ``docker run`` does (SIGWINCH only without a tty).
FORWARDED_SIGNALS = (
    signal.SIGTERM,
    signal.SIGINT,
    signal.SIGHUP,
    signal.SIGQUIT,
    signal.SIGUSR1,
    signal.SIGUSR2,
    signal.SIGWINCH,
)

_WINSIZE = struct.Struct("HHHH")  # struct winsize: rows, columns, x and y pixels


@dataclass(frozen=True)
class OpenTerminal(Step):
    """Give the payload a new pseudo-terminal (see ``NSP_STEP_TERMINAL`` in ``_native/nsprim.h``).

    The slave is chowned to *uid*/*gid* (-1: left as made), so the payload
    owns its terminal as a login would give it.
    """

    socket_fd: int = TERMINAL_FD
    uid: int = -1
    gid: int = -1
    operation: ClassVar[str] = "open terminal"

    @property
    def path(self) -> str | None:
        return "/dev/ptmx"

    def describe(self) -> str:
        return "open a terminal on `/dev/ptmx`"

    def lower(self) -> RawStep:
        return RawStep(StepKind.TERMINAL, a=self.socket_fd, b=self.uid, c=self.gid)


def terminal_size(fd: int) -> tuple[int, int] | None:
    """(rows, columns) of the terminal on *fd*, or ``None`` if *fd* is no terminal."""
    try:
        rows, cols, _, _ = _WINSIZE.unpack(fcntl.ioctl(fd, termios.TIOCGWINSZ, bytes(_WINSIZE.size)))
    except OSError:
        return None
    return rows, cols


def set_terminal_size(fd: int, rows: int, cols: int) -> None:
    """Set the window size of the terminal on *fd* (the kernel signals its foreground with SIGWINCH)."""
    check_size((rows, cols))
    try:
        fcntl.ioctl(fd, termios.TIOCSWINSZ, _WINSIZE.pack(rows, cols, 0, 0))
    except OSError as exc:
        raise SyscallError(exc.errno, "ioctl TIOCSWINSZ", detail="set the window size") from None


def check_size(size: object) -> tuple[int, int]:
    """A window size the kernel takes: (rows, columns), each from 1 to 65535."""
    items = tuple(size) if isinstance(size, (tuple, list)) else ()
    if len(items) != 2 or not all(isinstance(n, int) and not isinstance(n, bool) and 0 < n < 1 << 16 for n in items):
        raise ConfigError(f"terminal size {size!r}: expected (rows, columns), each 1..65535", what="tty")
    return int(items[0]), int(items[1])


class TerminalChannel:
    """The socket pair a container's terminal comes back on.

    The window size is written into it before the clone, so the child reads
    it without waiting; :meth:`receive` takes the master once the child exec'd.
    """

    def __init__(self, size: tuple[int, int] | None) -> None:
        import socket  # only here: a container without a terminal does not pay for its enums

        self._ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
        self.child_fd = theirs.detach()  # close-on-exec: only the plan's FdMap places it
        rows, cols = check_size(size) if size is not None and all(size) else (0, 0)  # 0 x 0: not set
        self._ours.sendall(_WINSIZE.pack(rows, cols, 0, 0))

    def child_started(self) -> None:
        """The child has its copy: close ours of its end."""
        if self.child_fd >= 0:
            os.close(self.child_fd)
            self.child_fd = -1

    def receive(self) -> int:
        """The master side of the terminal (the child sent it before it exec'd)."""
        import socket

        try:
            _, fds, _, _ = socket.recv_fds(self._ours, 1, 1, socket.MSG_DONTWAIT)
        except OSError as exc:
            err = exc.errno or errno.EPROTO
            raise SyscallError(err, "recvmsg", detail="receive the container's terminal") from None
        if len(fds) != 1:
            for fd in fds:
                os.close(fd)
            raise SyscallError(errno.EPROTO, "recvmsg", detail="receive the container's terminal")
        return fds[0]

    def close(self) -> None:
        """Close both ends still open here."""
        self.child_started()
        self._ours.close()


class RawMode:
    """The terminal on *fd* in raw mode (as ``docker run -it`` puts it) until exit; its modes come back
    on every way out.  Nothing happens when *fd* is no terminal."""

    def __init__(self, fd: int) -> None:
        self.fd = fd
        self._saved: list[Any] | None = None

    def __enter__(self) -> RawMode:
        try:
            self._saved = termios.tcgetattr(self.fd)
        except termios.error:
            return self  # not a terminal
        import tty

        tty.setraw(self.fd, termios.TCSADRAIN)
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        if self._saved is not None:
            with contextlib.suppress(termios.error):
                termios.tcsetattr(self.fd, termios.TCSADRAIN, self._saved)
            self._saved = None


class WindowSize:
    """Keep the window size of terminal *target* equal to that of *source* (on SIGWINCH).

    The handler only writes to a pipe that :func:`relay` polls: it runs in the
    main thread, and from another thread (where Python cannot take signals)
    the size is set once only.
    """

    def __init__(self, source: int, target: int) -> None:
        self.source = source
        self.target = target
        self.wake_fd = -1
        self._write_fd = -1
        self._old: Callable[[int, FrameType | None], object] | int | None = None
        self._installed = False

    def sync(self) -> None:
        """Copy the size over now (a no-op when the source is no terminal)."""
        size = terminal_size(self.source)
        if size is not None and all(size):
            set_terminal_size(self.target, *size)

    def __enter__(self) -> WindowSize:
        self.sync()
        import threading  # only here: a container without a terminal imports no threading

        if terminal_size(self.source) is None or threading.current_thread() is not threading.main_thread():
            return self
        self.wake_fd, self._write_fd = os.pipe2(os.O_CLOEXEC | os.O_NONBLOCK)
        write_fd = self._write_fd

        def on_winch(signum: int, frame: FrameType | None) -> None:
            with contextlib.suppress(OSError):  # a full pipe: a wake-up is pending anyway
                os.write(write_fd, b"w")

        self._old = signal.signal(signal.SIGWINCH, on_winch)
        self._installed = True
        return self

    def woken(self) -> None:
        """The wake pipe was readable: empty it and sync."""
        with contextlib.suppress(OSError):
            os.read(self.wake_fd, 512)
        self.sync()

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        if self._installed:
            signal.signal(signal.SIGWINCH, self._old if self._old is not None else signal.SIG_DFL)
            self._installed = False
        for fd in (self.wake_fd, self._write_fd):
            if fd >= 0:
                os.close(fd)
        self.wake_fd = self._write_fd = -1


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        try:
            view = view[os.write(fd, view) :]
        except BlockingIOError:
            select.select([], [fd], [])


def relay(
    master: int,
    pidfd: int,
    *,
    source: int | None = None,
    sink: int | None = None,
    data: bytes = b"",
    collect: list[bytes] | None = None,
    window: WindowSize | None = None,
    timeout: float | None = None,
) -> bool:
    """Copy between a container's terminal (*master*) and this process until the container's
    pid 1 exits (*pidfd* readable), then what it still wrote; ``False`` if *timeout* seconds
    passed first.

    Input is *data* and then what *source* gives; when it ends (and *source*
    is no terminal, whose end would come as the ``^D`` it types) the
    terminal's end-of-file character is sent, as a pipe's end would be seen.
    Output goes to *sink* and/or into *collect*.  *window*'s wake-ups resize.
    """
    deadline = None if timeout is None else time.monotonic() + timeout
    os.set_blocking(master, False)
    pending = bytearray(data)
    reading = source is not None
    at_end = source is None and bool(data)  # input given as data only: end it once written
    master_open = True

    def output(chunk: bytes) -> None:
        if sink is not None:
            _write_all(sink, chunk)
        if collect is not None:
            collect.append(chunk)

    def drain() -> bool:
        """Read what the master has; False once the terminal's slaves are all closed."""
        while True:
            try:
                chunk = os.read(master, 65536)
            except BlockingIOError:
                return True
            except OSError as exc:
                if exc.errno == errno.EIO:  # every slave closed: the kernel's end of file
                    return False
                raise
            if not chunk:
                return False
            output(chunk)

    poller = select.poll()
    while True:
        watched: dict[int, int] = {pidfd: select.POLLIN}
        if master_open:
            watched[master] = select.POLLIN | (select.POLLOUT if pending else 0)
        if reading and not pending and source is not None:
            watched[source] = select.POLLIN
        if window is not None and window.wake_fd >= 0:
            watched[window.wake_fd] = select.POLLIN
        for fd in list(watched):
            poller.register(fd, watched[fd])
        left = None if deadline is None else max(0.0, deadline - time.monotonic())
        try:
            events = dict(poller.poll(None if left is None else left * 1000))
        finally:
            for fd in watched:
                poller.unregister(fd)
        if not events and left is not None and left <= 0:
            return False
        if master_open and events.get(master, 0) & (select.POLLIN | select.POLLHUP | select.POLLERR):
            master_open = drain()
        if pidfd in events:
            if master_open:
                drain()
            return True
        if window is not None and window.wake_fd in events:
            window.woken()
        if source is not None and reading and source in events:
            try:
                chunk = os.read(source, 65536)
            except OSError as exc:
                if exc.errno != errno.EIO:  # EIO: the caller's terminal hung up
                    raise
                chunk = b""
            if chunk:
                pending += chunk
            else:
                reading = False
                at_end = not os.isatty(source)
        if master_open and pending and events.get(master, 0) & select.POLLOUT:
            with contextlib.suppress(BlockingIOError):
                del pending[: os.write(master, pending[:4096])]
        if at_end and not pending and master_open:
            at_end = False
            with contextlib.suppress(termios.error, OSError):
                eof = termios.tcgetattr(master)[6][termios.VEOF]
                _write_all(master, bytes([eof]) if isinstance(eof, int) else eof)


def attach(master: int, pidfd: int, stdin: int | None, stdout: int | None, *, timeout: float | None = None) -> bool:
    """:func:`relay` between this process' *stdin*/*stdout* and a container's terminal, with
    a terminal on *stdin* in raw mode meanwhile and the window size kept in step."""
    size_from = next((fd for fd in (stdout, stdin) if fd is not None and os.isatty(fd)), None)
    with contextlib.ExitStack() as stack:
        if stdin is not None:
            stack.enter_context(RawMode(stdin))
        window = stack.enter_context(WindowSize(size_from, master)) if size_from is not None else None
        return relay(master, pidfd, source=stdin, sink=stdout, window=window, timeout=timeout)


class _Signalable(Protocol):
    def send_signal(self, sig: int) -> None: ...


class SignalForwarder:
    """Forward *signals* to a container instead of dying of them, as ``docker run`` does.

    Installed on enter (main thread only); until :attr:`target` is set (the
    container started), arriving signals wait and are then delivered in order.
    The previous handlers come back on exit.
    """

    def __init__(self, signals: Iterable[int] = FORWARDED_SIGNALS) -> None:
        self.signals = tuple(signals)
        self._target: _Signalable | None = None
        self._queued: list[int] = []
        self._old: dict[int, Callable[[int, FrameType | None], object] | int | None] = {}

    @property
    def target(self) -> _Signalable | None:
        """What signals go to (a :class:`~nsprim.container.RunningContainer`)."""
        return self._target

    @target.setter
    def target(self, value: _Signalable | None) -> None:
        self._target = value
        queued, self._queued = self._queued, []
        if value is not None:
            for sig in queued:
                value.send_signal(sig)

    def _handle(self, signum: int, frame: FrameType | None) -> None:
        if self._target is None:
            self._queued.append(signum)
        else:
            self._target.send_signal(signum)

    def __enter__(self) -> SignalForwarder:
        for sig in self.signals:
            self._old[sig] = signal.signal(sig, self._handle)
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        for sig, old in self._old.items():
            signal.signal(sig, old if old is not None else signal.SIG_DFL)
        self._old.clear()
