"""A memory hog under a 64 MB limit: the kernel kills it, and nsprim says so.

Run as root: ``python examples/oom.py``.
"""

from __future__ import annotations

import os
import signal
import sys

from nsprim.container import Container

# The interpreter itself, not a virtual environment's link to it: the link may
# live where the sandbox does not look (a venv under a /tmp the container replaces).
PYTHON = os.path.realpath(sys.executable)

HOG = "chunks = []\nwhile True: chunks.append(bytearray(8 * 1024 * 1024))"


def main() -> int:
    result = Container([PYTHON, "-c", HOG]).host_root().memory("64M").run()
    how = f"signal {signal.Signals(result.signal).name}" if result.signal else f"status {result.returncode}"
    print(f"the hog ended with {how}; OOM-killed: {result.oom_killed}")
    if result.stats is not None:
        print(f"its memory peaked at {result.stats.memory.peak / 2**20:.1f} MiB")
    return 0 if result.oom_killed else 1


if __name__ == "__main__":
    sys.exit(main())
