"""Everything as an unprivileged user: a user namespace makes you root inside, yourself outside.

Run it as any user (as root it first drops to `nobody` to show the point):
``python examples/rootless.py``.
"""

from __future__ import annotations

import ctypes
import os
import sys

import nsprim


def drop_to_nobody() -> None:
    os.setgroups([])
    os.setresgid(65534, 65534, 65534)
    os.setresuid(65534, 65534, 65534)
    ctypes.CDLL(None).prctl(4, 1, 0, 0, 0)  # PR_SET_DUMPABLE: as a real unprivileged process is


def main() -> int:
    if os.geteuid() == 0:
        drop_to_nobody()
        os.chdir("/")
    print(f"outside: uid {os.geteuid()}")
    r = nsprim.run(
        ["sh", "-c", "echo inside: uid $(id -u), pid $$, host $(hostname); cat /proc/self/uid_map"],
        new={"user", "pid", "mnt", "uts", "ipc", "net"},
        hostname="rootless",
        mount_proc=True,
        capture_output=True,
    )
    print((r.stdout or b"").decode().strip())
    return r.returncode


if __name__ == "__main__":
    sys.exit(main())
