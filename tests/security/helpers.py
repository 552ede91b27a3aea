"""Run commands and escape probes in sandboxes with a given security policy."""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

import nsprim
from nsprim.plan import Step
from nsprim.security import Capabilities, SecurityPolicy
from nsprim.security.seccomp import native_arch

PROBE = Path(__file__).with_name("probe.py")
PYTHON = os.path.realpath(sys.executable)
#: Every escape attempt runs in these new namespaces at least.
SANDBOX = frozenset({"mnt", "pid", "net", "ipc", "uts"})

IS_ROOT = os.geteuid() == 0


def run(
    argv: Sequence[str],
    policy: SecurityPolicy | None = None,
    *,
    steps: Iterable[Step] = (),
    new: Iterable[str] = SANDBOX,
    uid: int | None = None,
    gid: int | None = None,
    **kwargs: Any,
) -> nsprim.CompletedRun:
    """Run *argv* in new namespaces with *policy*'s steps (and then *steps*)."""
    plan: list[Step] = list(policy.steps(uid=uid, gid=gid, groups=[] if gid is not None else None)) if policy else []
    plan += list(steps)
    kwargs.setdefault("capture_output", True)
    kwargs.setdefault("timeout", 30)
    return nsprim.run(list(argv), new=set(new), steps=plan, **kwargs)


def sh(script: str, policy: SecurityPolicy | None = None, **kwargs: Any) -> nsprim.CompletedRun:
    """``sh -c script`` in a sandbox."""
    return run(["/bin/sh", "-c", script], policy, **kwargs)


def probe(
    ops: Sequence[str],
    policy: SecurityPolicy | None,
    *,
    new: Iterable[str] = SANDBOX,
    fd: int = -1,
    pid: int = 0,
    **kwargs: Any,
) -> dict[str, int]:
    """Run the escape probe for *ops*; return op -> errno (0: it worked)."""
    conf = json.dumps({"nr": dict(native_arch().syscalls), "fd": fd, "pid": pid})
    if fd >= 0:
        kwargs["pass_fds"] = (fd,)
    r = run([PYTHON, "-S", "-E", str(PROBE), conf, *ops], policy, new=new, **kwargs)
    assert r.returncode == 0, (r.returncode, r.stdout, r.stderr)
    out = dict(line.split("=") for line in r.stdout.decode().split())
    return {k: int(v) for k, v in out.items()}


def status_caps(policy: SecurityPolicy | None, **kwargs: Any) -> Capabilities:
    """The five capability sets of a payload, from its /proc/self/status."""
    r = sh("cat /proc/self/status", policy, **kwargs)
    assert r.returncode == 0, r.stderr
    return Capabilities.from_status(r.stdout.decode())


def status_field(text: str, key: str) -> str:
    """One field of /proc/<pid>/status text."""
    for line in text.splitlines():
        k, _, v = line.partition(":")
        if k == key:
            return v.strip()
    raise KeyError(key)
