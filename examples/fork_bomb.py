"""A fork bomb meets a pids limit: the container stops at 64 processes, the host is fine.

Run as root: ``python examples/fork_bomb.py``.
"""

from __future__ import annotations

import os
import sys

from nsprim.container import Container

# The interpreter itself, not a virtual environment's link to it: the link may
# live where the sandbox does not look (a venv under a /tmp the container replaces).
PYTHON = os.path.realpath(sys.executable)

BOMB = """
import os, time
n = 0
while True:
    try:
        if os.fork() == 0:
            time.sleep(30); os._exit(0)
        n += 1
    except OSError as e:
        print(f"fork number {n + 1} failed: {e.strerror}"); break
"""


def main() -> int:
    result = Container([PYTHON, "-c", BOMB]).host_root().pids(64).run(capture_output=True, timeout=120)
    print((result.stdout or b"").decode().strip())
    if result.stats is not None and result.stats.pids is not None:
        print(f"processes at the peak: {result.stats.pids.peak} (limit {result.stats.pids.max})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
