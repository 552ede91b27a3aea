"""Run a Python snippet in a sandbox: no network, 128 MB, read-only root, a tmpfs /tmp.

Prints what the snippet sees against what this process sees, line by line.
Run as root (or see rootless.py): ``python examples/sandbox.py``.
"""

from __future__ import annotations

import os
import socket
import sys
from pathlib import Path

from nsprim.container import Container

# The interpreter itself, not a virtual environment's link to it: the link may
# live where the sandbox does not look (a venv under a /tmp the container replaces).
PYTHON = os.path.realpath(sys.executable)

SNIPPET = """
import os, socket
print(os.getpid()); print(socket.gethostname()); print(len(socket.if_nameindex()))
print([l for l in open('/proc/self/cgroup') if 'memory' in l or l.startswith('0::')][0].strip())
print(os.access('/usr', os.W_OK))
"""


def _memory_cgroup() -> str:
    lines = Path("/proc/self/cgroup").read_text().splitlines()
    return next(line for line in lines if "memory" in line or line.startswith("0::"))


def main() -> int:
    # The sandbox, in a few lines of nsprim:
    box = (
        Container([PYTHON, "-c", SNIPPET])
        .rootfs("/")  # the host's / as a read-only root
        .tmpfs("/tmp", size="16M")
        .network("none")
        .memory("128M")
        .hostname("sandbox")
    )
    result = box.run(capture_output=True)
    if result.returncode != 0:
        print((result.stderr or b"").decode(), file=sys.stderr)
        return 1
    inside = (result.stdout or b"").decode().split("\n")
    outside = [
        str(os.getpid()),
        socket.gethostname(),
        str(len(socket.if_nameindex())),
        _memory_cgroup(),
        str(os.access("/usr", os.W_OK)),
    ]
    labels = ["pid", "hostname", "network interfaces", "memory cgroup", "/usr writable"]
    width = max(len(x) for x in outside) + 2
    print(f"{'':20} {'this process':{width}} {'the sandbox'}")
    for label, before, after in zip(labels, outside, inside, strict=False):
        print(f"{label:20} {before:{width}} {after}")
    if result.stats is not None:
        print(f"\nthe sandbox used at most {result.stats.memory.peak / 2**20:.1f} MiB of its 128 MiB")
    return 0


if __name__ == "__main__":
    sys.exit(main())
