"""Progress of long image work on a terminal: a line per blob and a total, with bytes and speed.

:func:`terminal_progress` is a :class:`~nsprim.image.progress.Progress` that
redraws those lines on standard error at most ten times a second, or ``None``
when standard error is not a terminal: a script's log stays quiet.
"""

from __future__ import annotations

import sys
import threading
import time
from typing import TextIO

from .._dataclass import dataclass

__all__ = ["TerminalProgress", "terminal_progress", "human_size"]

_REDRAW = 0.1


def human_size(n: float) -> str:
    """Bytes as podman shows them: ``0 B``, ``512 B``, ``1.2 kB``, ``34 MB`` (powers of 1000)."""
    if n < 1000:
        return f"{int(n)} B"
    for unit in ("kB", "MB", "GB", "TB", "PB"):
        n /= 1000
        shown = f"{n:.3g}"
        if float(shown) < 1000 or unit == "PB":  # 999.5 MB is shown as 1 GB, not as 1e+03 MB
            return f"{shown} {unit}"
    raise AssertionError("unreachable")


@dataclass
class _Row:
    what: str
    size: int | None
    done: int = 0
    ended: bool = False


class TerminalProgress:
    """What a pull does, blob by blob, redrawn in place on *stream* (a terminal)."""

    def __init__(self, stream: TextIO) -> None:
        self._stream = stream
        self._lock = threading.Lock()
        self._rows: dict[str, _Row] = {}
        self._drawn = 0
        self._last = 0.0
        self._start = time.monotonic()

    def begin(self, digest: str, size: int | None, what: str) -> None:
        with self._lock:
            self._rows[digest] = _Row(what, size)
            self._draw(force=False)

    def advance(self, digest: str, nbytes: int) -> None:
        with self._lock:
            row = self._rows.get(digest)
            if row is not None:
                row.done += nbytes
            self._draw(force=False)

    def end(self, digest: str) -> None:
        with self._lock:
            row = self._rows.get(digest)
            if row is not None:
                row.ended = True
            self._draw(force=True)

    def close(self) -> None:
        """Draw the last state (the lines stay on the terminal)."""
        with self._lock:
            self._draw(force=True)

    def _draw(self, *, force: bool) -> None:
        now = time.monotonic()
        if not force and now - self._last < _REDRAW:
            return
        self._last = now
        lines = []
        total = done = 0
        for digest, row in self._rows.items():
            total += row.size or 0
            done += row.done
            state = "done" if row.ended else row.what
            of = f" / {human_size(row.size)}" if row.size is not None else ""
            lines.append(f"{digest.partition(':')[2][:12]}  {state:6} {human_size(row.done)}{of}")
        speed = done / max(now - self._start, 1e-3)
        lines.append(f"{'total':12}  {len(self._rows)} blobs {human_size(done)} / {human_size(total)}  "
                     f"{human_size(speed)}/s")  # fmt: skip
        up = f"\x1b[{self._drawn}F" if self._drawn else ""
        self._stream.write(up + "".join(f"\x1b[2K{line}\n" for line in lines))
        self._stream.flush()
        self._drawn = len(lines)


def terminal_progress(stream: TextIO | None = None) -> TerminalProgress | None:
    """A :class:`TerminalProgress` on *stream* (default: standard error) if it is a terminal, else ``None``."""
    stream = stream if stream is not None else sys.stderr
    try:
        tty = stream.isatty()
    except (AttributeError, ValueError):
        tty = False
    return TerminalProgress(stream) if tty else None
