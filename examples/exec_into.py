"""Start a container, then run more commands inside it, as ``docker exec`` does.

Run as root: ``python examples/exec_into.py``.
"""

from __future__ import annotations

import sys

import nsprim
from nsprim.container import Container


def main() -> int:
    with Container(["sleep", "60"]).host_root().hostname("web").memory("64M").init().start() as box:
        print(f"container {box.id}: pid {box.pid} on the host")
        for cmd in (["hostname"], ["sh", "-c", "echo my pid is $$"], ["sh", "-c", "ls /proc | grep -c '^[0-9]'"]):
            proc = box.exec(cmd, stdout=nsprim.PIPE)
            out, _ = proc.communicate()
            print(f"$ {' '.join(cmd)}\n{(out or b'').decode().strip()}")
        print(f"memory in use: {box.stats().memory.current / 2**20:.1f} MiB")
    print(f"stopped and cleaned up; exit status {box.returncode}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
