"""Functions the zygote tests run inside calls: importable, stdlib only."""

from __future__ import annotations

import os
import socket
from pathlib import Path

#: Set at run time by a test, in the caller only: a call, forked from the zygote, must not see it.
SECRET: str | None = None


def identity_of_the_call() -> dict[str, object]:
    """What a call sees of its process, namespaces, descriptors and environment; then it leaves a file."""
    seen = {
        "pid": os.getpid(),
        "hostname": socket.gethostname(),
        "ns": {t: os.readlink(f"/proc/self/ns/{t}") for t in ("mnt", "uts", "ipc", "net", "pid", "cgroup")},
        "procs": sorted(int(p) for p in os.listdir("/proc") if p.isdigit()),
        "cgroup": Path("/proc/self/cgroup").read_text(),
        "fds": sorted(int(fd) for fd in os.listdir("/proc/self/fd")),
        "env": dict(os.environ),
        "secret": SECRET,
        "wrote": os.path.exists("/tmp/written-by-a-call"),
    }
    with open("/tmp/written-by-a-call", "w") as f:
        f.write("x")
    return seen


def listen_on(port: int) -> bool:
    """Bind *port* on the loopback and leave it listening: the next call's network must not have it."""
    s = socket.socket()
    try:
        s.bind(("127.0.0.1", port))
    except OSError:
        return False
    s.listen()
    s.detach()
    return True


def namespaces_after(seconds: float) -> dict[str, str]:
    """The call's namespaces, once *seconds* passed (while another call runs)."""
    import time

    time.sleep(seconds)
    return {t: os.readlink(f"/proc/self/ns/{t}") for t in ("mnt", "uts", "ipc", "net", "pid", "cgroup")}
