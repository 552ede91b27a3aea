"""Plan steps that hand a child over to another process before its exec.

An OCI runtime's ``create`` sets a container up and exits; later commands
(``start``), and the engine's console, take over.  Two steps serve that:

* :class:`WaitStart`: the child reports on the spawn's report pipe that its
  setup succeeded (the parent's :func:`nsprim.lowlevel.start` returns), then
  blocks in ``accept`` on a listening ``AF_UNIX`` socket it was given.  One
  byte from the connection is the start; the connection then carries the
  failure record of any later step (the exec, say), and the exec closes it
  (close-on-exec): end of file on it means the program runs.  See
  :func:`read_start_report`.
* :class:`SendTerminal`: the child's own pseudo-terminal from the
  container's devpts, made its controlling terminal and fds 0-2, the master
  sent over an engine's connected console socket (``SCM_RIGHTS``, with the
  pty's name as data, as runc sends it), the window size set first.
"""

from __future__ import annotations

from typing import ClassVar

from ._dataclass import dataclass
from ._start_report import REPORT_SIZE, StartReport, read_start_report  # apart: `start` reads it alone
from ._sys.spawn import RawStep, StepKind, TerminalFlag
from .checks import check_id
from .errors import ConfigError
from .plan import Step

__all__ = ["WaitStart", "SendTerminal", "StartReport", "read_start_report", "REPORT_SIZE"]


@dataclass(frozen=True)
class WaitStart(Step):
    """Report "ready", then wait for the start on the listening socket *listen_fd*.

    The descriptor must stay open in the child up to this step: give a number
    above every descriptor an :class:`~nsprim.plan.FdMap` places.  The child
    closes it once a start arrived, so a second start finds nobody listening.
    """

    listen_fd: int
    operation: ClassVar[str] = "wait for start"
    vfork_ok: ClassVar[bool] = False

    def __post_init__(self) -> None:
        if self.listen_fd < 0:
            raise ConfigError(f"wait for start: negative descriptor {self.listen_fd}", what="listen_fd")

    def lower(self) -> RawStep:
        return RawStep(StepKind.WAIT_START, a=self.listen_fd)


@dataclass(frozen=True)
class SendTerminal(Step):
    """A new pseudo-terminal from ``/dev/ptmx``: its master sent over the connected socket *socket_fd*.

    *size* (rows, columns) is set on it first (``None``: left as made); the
    slave is chowned to *uid*/*gid* (-1: left as made) and becomes the
    controlling terminal and fds 0-2.
    """

    socket_fd: int
    size: tuple[int, int] | None = None
    uid: int = -1
    gid: int = -1
    operation: ClassVar[str] = "open terminal"

    def __post_init__(self) -> None:
        if self.socket_fd < 0:
            raise ConfigError(f"open terminal: negative descriptor {self.socket_fd}", what="console socket")
        if self.size is not None and not all(0 <= n <= 0xFFFF for n in self.size):
            raise ConfigError(f"terminal size {self.size}: rows and columns are 0 to 65535", what="consoleSize")
        for value, what in ((self.uid, "uid"), (self.gid, "gid")):
            if value != -1:
                check_id(value, what)

    @property
    def path(self) -> str | None:
        return "/dev/ptmx"

    def describe(self) -> str:
        return "open a terminal on `/dev/ptmx` for the console socket"

    def lower(self) -> RawStep:
        ints = tuple(self.size) if self.size is not None else None
        return RawStep(
            StepKind.TERMINAL, flags=TerminalFlag.CONSOLE, a=self.socket_fd, b=self.uid, c=self.gid, ints=ints
        )
