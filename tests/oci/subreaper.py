"""A stand-in engine: becomes a child subreaper (as conmon and the containerd shim are),
runs ``sh -c SCRIPT``, then reaps every orphan that ends up with it (the containers'
inits, once ``create`` exited) and prints ``reaped PID STATUS`` for each.

Usage: python subreaper.py SCRIPT [TIMEOUT]; exits with the script's status.
"""

from __future__ import annotations

import ctypes
import os
import subprocess
import sys
import time

PR_SET_CHILD_SUBREAPER = 36


def main() -> int:
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) != 0:
        raise OSError(ctypes.get_errno(), "prctl PR_SET_CHILD_SUBREAPER")
    script = sys.argv[1]
    timeout = float(sys.argv[2]) if len(sys.argv) > 2 else 30.0
    shell = subprocess.Popen(["sh", "-c", script])
    status = shell.wait()
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            pid, raw = os.waitpid(-1, os.WNOHANG)
        except ChildProcessError:
            break
        if pid == 0:
            time.sleep(0.02)
            continue
        code = os.waitstatus_to_exitcode(raw)
        print(f"reaped {pid} {code}", flush=True)
    return status


if __name__ == "__main__":
    sys.exit(main())
