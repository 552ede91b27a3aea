"""Measurements that must run in a process of their own: :func:`forked`.

A scratch mount namespace (overlay mounts) or another memory cgroup (kernel
memory: the kernel charges the process that allocates) must not become the
caller's.  The child sends back only JSON, never pickled objects.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
from collections.abc import Callable, Iterator

from ..errors import NsprimError

__all__ = ["forked"]


@contextlib.contextmanager
def forked(work: Callable[[], dict[str, object]]) -> Iterator[Callable[[], dict[str, object]]]:
    """Run *work* in a forked child; the callable this yields waits for it and returns its result.

    The child never returns into the caller's code: it ends with ``os._exit``.
    Leaving the ``with`` block kills a child still running, and reaps it.
    """
    r, w = os.pipe2(os.O_CLOEXEC)
    pid = os.fork()
    if pid == 0:  # pragma: no cover - the child's side
        status = 1
        try:
            os.close(r)
            try:
                sent: dict[str, object] = {"ok": work()}
                status = 0
            except BaseException as exc:  # everything goes back to the parent
                sent = {"error": f"{type(exc).__name__}: {exc}"}
            data = memoryview(json.dumps(sent).encode())
            while data:
                data = data[os.write(w, data) :]
        finally:
            os._exit(status)
    os.close(w)
    reader = os.fdopen(r, "rb")
    reaped = False

    def result() -> dict[str, object]:
        nonlocal reaped
        data = reader.read()
        os.waitpid(pid, 0)
        reaped = True
        decoded = json.loads(data or b"{}")
        if not isinstance(decoded, dict) or not isinstance(decoded.get("ok"), dict):
            error = decoded.get("error", "no result") if isinstance(decoded, dict) else "no result"
            raise NsprimError(f"measure: the measuring child failed: {error}")
        out: dict[str, object] = decoded["ok"]
        return out

    try:
        yield result
    finally:
        reader.close()
        if not reaped:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
            os.waitpid(pid, 0)
