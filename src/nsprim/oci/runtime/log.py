"""The runtime's log: ``--log FILE``, ``--log-format text|json``, ``--debug``.

Engines read it: containerd's runc shim passes ``--log FILE --log-format
json`` and reports the ``msg`` of the last ``"level":"error"`` line when a
command fails; conmon and podman read standard error.  So, as runc does:

* every error is one line on standard error, and also a line in the log when
  ``--log`` names a file (other than standard error itself);
* json lines are ``{"level": ..., "msg": ..., "time": ...}`` (logrus's
  format, keys sorted), text lines ``time="..." level=error msg="..."``;
* without ``--log`` the log is standard error: an error is then one json
  line with ``--log-format json``, else the plain message;
* ``--debug`` adds ``debug`` lines to the log.
"""

from __future__ import annotations

import os
import sys
import time

__all__ = ["Log", "FORMATS"]

FORMATS = ("text", "json")


def _now() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())


class Log:
    """Where the runtime's messages go."""

    def __init__(self, path: str | None = None, fmt: str = "text", debug: bool = False) -> None:
        self.configure(path, fmt, debug)

    def configure(self, path: str | None, fmt: str, debug: bool) -> None:
        """Set the destination (None: standard error), the format and whether debug lines are written."""
        self.path = path
        self.format = fmt
        self.debug_enabled = debug
        self._to_stderr = path is None or _is_stderr(path)

    def line(self, level: str, msg: str) -> str:
        """One log line (without newline) in this log's format."""
        from .jsonio import dumps

        if self.format == "json":
            return dumps({"level": level, "msg": msg, "time": _now()}, compact=True)
        return f'time="{_now()}" level={level} msg={dumps(msg)}'

    def _write_log(self, level: str, msg: str) -> bool:
        """Append a line to the log file; False if there is none or it cannot be written."""
        if self.path is None or self._to_stderr:
            return False
        try:
            flags = os.O_WRONLY | os.O_CREAT | os.O_APPEND | os.O_CLOEXEC
            fd = os.open(self.path, flags, 0o644)
        except OSError:
            return False
        try:
            os.write(fd, (self.line(level, msg) + "\n").encode())
        except OSError:
            return False
        finally:
            os.close(fd)
        return True

    def _stderr(self, text: str) -> None:
        try:
            sys.stderr.write(text + "\n")
            sys.stderr.flush()
        except (OSError, ValueError):
            pass

    def error(self, msg: str) -> None:
        """Report an error: one line on standard error, and one in the log file if there is one."""
        msg = " ".join(msg.splitlines()) or "error"
        if self._to_stderr and self.format == "json":
            self._stderr(self.line("error", msg))
            return
        self._write_log("error", msg)
        self._stderr(msg)

    def warning(self, msg: str) -> None:
        """A warning: a line in the log (standard error without ``--log``)."""
        self._emit("warning", msg)

    def debug(self, msg: str) -> None:
        """A debug line, with ``--debug`` only."""
        if self.debug_enabled:
            self._emit("debug", msg)

    def _emit(self, level: str, msg: str) -> None:
        msg = " ".join(msg.splitlines())
        if self._to_stderr:
            self._stderr(self.line(level, msg) if self.format == "json" else f"{level}: {msg}")
        else:
            self._write_log(level, msg)


def _is_stderr(path: str) -> bool:
    if path in ("/dev/stderr", "/proc/self/fd/2", "/dev/fd/2"):
        return True
    try:
        a, b = os.stat(path), os.fstat(2)
    except OSError:
        return False
    return (a.st_dev, a.st_ino) == (b.st_dev, b.st_ino)
