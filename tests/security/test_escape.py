"""Escape attempts at the capabilities/seccomp level, each with a control run.

Every attempt runs in a child with new mount, pid, net, ipc and uts
namespaces (ptrace: without the pid namespace, to see its target), so a
"deny" that failed could not reach the host: mounts land in the child's
private mount namespace, the module call gets an invalid descriptor, the
setns target is the host's own network namespace.

Four configurations: the defaults (capabilities *and* seccomp), seccomp alone
(all capabilities), capabilities alone (no filter), and the control with
everything relaxed — proving that each attempt is otherwise possible, so the
denials are the policy's doing and not the sandbox's.
"""

from __future__ import annotations

import errno
import os
import subprocess
from collections.abc import Iterator

import pytest

from nsprim.security import DOCKER_DEFAULT_CAPS, Capabilities, SecurityPolicy
from nsprim.security.seccomp import compile_profile, docker_default_profile

from .helpers import IS_ROOT, probe

pytestmark = pytest.mark.skipif(not IS_ROOT, reason="needs root")

EPERM = errno.EPERM
DEFAULT = SecurityPolicy()
SECCOMP_ONLY = SecurityPolicy(Capabilities.all(), compile_profile(docker_default_profile(), caps=DOCKER_DEFAULT_CAPS))
CAPS_ONLY = SecurityPolicy(seccomp=None)
CONTROL = SecurityPolicy().unconfined()

# The attempts that change the probe's own state (namespaces) come last.
OPS = ["mount", "finit_module", "keyctl", "unshare_mnt", "unshare_user"]


def test_defaults_deny_every_attempt() -> None:
    assert probe(OPS, DEFAULT) == dict.fromkeys(OPS, EPERM)


def test_seccomp_alone_denies_them_even_with_all_capabilities() -> None:
    assert probe(OPS, SECCOMP_ONLY) == dict.fromkeys(OPS, EPERM)


def test_capabilities_alone_deny_the_privileged_ones() -> None:
    out = probe(OPS, CAPS_ONLY)
    assert out["mount"] == out["unshare_mnt"] == EPERM
    # CAP_SYS_MODULE is checked by the module loader; a kernel without one says ENOSYS first.
    assert out["finit_module"] in (EPERM, errno.ENOSYS)
    # Not guarded by a capability: only the filter stops these two.
    assert out["keyctl"] != EPERM and out["unshare_user"] == 0


def test_control_every_attempt_would_succeed() -> None:
    out = probe(OPS, CONTROL)
    assert out["mount"] == 0
    assert out["finit_module"] in (errno.EBADF, errno.ENOSYS)  # reached the module loader (or there is none)
    assert out["keyctl"] != EPERM
    assert out["unshare_mnt"] == 0 and out["unshare_user"] == 0


@pytest.fixture
def host_netns() -> Iterator[int]:
    fd = os.open("/proc/self/ns/net", os.O_RDONLY | os.O_CLOEXEC)
    try:
        yield fd
    finally:
        os.close(fd)


@pytest.mark.parametrize(
    ("policy", "expected"),
    [(DEFAULT, EPERM), (SECCOMP_ONLY, EPERM), (CAPS_ONLY, EPERM), (CONTROL, 0)],
    ids=["defaults", "seccomp-only", "caps-only", "control"],
)
def test_setns_into_a_host_namespace_through_a_passed_fd(
    host_netns: int, policy: SecurityPolicy, expected: int
) -> None:
    assert probe(["setns"], policy, fd=host_netns) == {"setns": expected}


@pytest.fixture
def outsider() -> Iterator[int]:
    """A process outside the sandbox, with all of root's capabilities."""
    proc = subprocess.Popen(["sleep", "60"])
    try:
        yield proc.pid
    finally:
        proc.kill()
        proc.wait()


@pytest.mark.parametrize(
    ("policy", "expected"),
    # Docker's filter allows ptrace on kernels >= 4.8; the capability check stops it.
    [(DEFAULT, EPERM), (SECCOMP_ONLY, 0), (CAPS_ONLY, EPERM), (CONTROL, 0)],
    ids=["defaults", "seccomp-only", "caps-only", "control"],
)
def test_ptrace_a_process_outside(outsider: int, policy: SecurityPolicy, expected: int) -> None:
    # No pid namespace here: the target must be visible.  PTRACE_SEIZE does not stop it.
    assert probe(["ptrace"], policy, pid=outsider, new={"mnt", "net", "ipc", "uts"}) == {"ptrace": expected}


def test_raw_socket_needs_cap_net_raw() -> None:
    without = SecurityPolicy(Capabilities.docker_default().drop("NET_RAW"))
    assert probe(["raw_socket"], without) == {"raw_socket": EPERM}
    # control: Docker's default set has CAP_NET_RAW
    assert probe(["raw_socket"], DEFAULT) == {"raw_socket": 0}


@pytest.mark.parametrize(
    ("policy", "expected"), [(DEFAULT, b"m=32\nu=1\n"), (CONTROL, b"m=0\nu=0\n")], ids=["defaults", "control"]
)
def test_inside_a_user_namespace(policy: SecurityPolicy, expected: bytes) -> None:
    # Root of a user namespace mapped to an unprivileged host uid: capabilities are the
    # namespace's, and the same defaults deny the same operations.
    from nsprim import IdMap

    from .helpers import SANDBOX, sh, status_caps

    ids = IdMap.single(0, 100000)
    kw = {"new": SANDBOX | {"user"}, "uid_map": ids, "gid_map": ids}
    if policy is DEFAULT:
        assert status_caps(policy, **kw) == Capabilities.docker_default()
    r = sh("mount -t tmpfs x /mnt; echo m=$?; unshare -U true; echo u=$?", policy, **kw)
    assert r.stdout == expected, r.stderr
