"""The escape battery inside a default ``Container``, each attempt with a control run.

Every attempt runs in ``Container([...])`` with its defaults (the security
policy, the masked and read-only paths of its root, the minimal ``/dev``,
descriptor hygiene) and must fail with the expected error.  The control runs
the same attempt with the defaults relaxed — ``SecurityPolicy().unconfined()``,
and for the path tests no masked or read-only paths (see :func:`no_masks`) —
and shows that it would have worked, so each denial is the defaults' doing.

Nothing here touches the host, the controls included: every run has new
mount, pid (but one, which shares the host's to see its target), net, ipc,
uts and cgroup namespaces; mounts land in the container's mount namespace;
``finit_module`` gets an invalid descriptor; the hostname written through
``/proc/sys`` is the container's own uts namespace's; ``/proc/sysrq-trigger``
is only checked for writability (``access(2)`` and mountinfo), never opened
for writing in a control; ptrace is a ``PTRACE_SEIZE`` (the target is not
stopped) of a ``sleep`` the test started; device nodes are opened without
reading or writing.
"""

from __future__ import annotations

import errno
import json
import os
import shutil
import socket
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

import nsprim.container.rootfs as container_rootfs
from nsprim.container import Container
from nsprim.fs.rootfs import RootFS
from nsprim.namespace import NamespaceType
from nsprim.security import Capabilities, SecurityPolicy
from nsprim.security.seccomp import native_arch

from ..conftest import requires_root
from ..security.helpers import PROBE
from .conftest import MINIMAL_DEV

pytestmark = requires_root

PYTHON = os.path.realpath(sys.executable)
EPERM = errno.EPERM
UNCONFINED = SecurityPolicy().unconfined()


@pytest.fixture
def no_masks(monkeypatch: pytest.MonkeyPatch) -> None:
    """Containers started in this test get no masked and no read-only paths (controls only)."""

    def bare(*args: Any, **kwargs: Any) -> RootFS:
        return RootFS(*args, **{**kwargs, "masked_paths": (), "readonly_paths": ()})

    monkeypatch.setattr(container_rootfs, "RootFS", bare)


@pytest.fixture
def outsider() -> Iterator[subprocess.Popen[bytes]]:
    """A process on the host, outside every container, with all of root's capabilities."""
    proc = subprocess.Popen(["sleep", "60"], stdin=subprocess.DEVNULL)
    try:
        yield proc
    finally:
        proc.kill()
        proc.wait()


def probe(box: Container, ops: list[str], *, fd: int = -1, pid: int = 0, **stdio: Any) -> dict[str, int]:
    """Run tests/security/probe.py's *ops* in *box* (host's python, source passed inline); op -> errno."""
    conf = json.dumps({"nr": dict(native_arch().syscalls), "fd": fd, "pid": pid})
    argv = [PYTHON, "-S", "-E", "-c", PROBE.read_text(), conf, *ops]
    r = box.command(*argv).run(capture_output=True, timeout=30, **stdio)
    assert r.returncode == 0, (r.returncode, r.stdout, r.stderr)
    return {k: int(v) for k, v in (line.split("=") for line in r.stdout.decode().split())}


def py(box: Container, code: str, *args: str) -> Any:
    """Run Python *code* in *box*; it prints one JSON value, returned."""
    r = box.command(PYTHON, "-S", "-E", "-c", textwrap.dedent(code), *args).run(capture_output=True, timeout=30)
    assert r.returncode == 0, (r.returncode, r.stdout, r.stderr)
    return json.loads(r.stdout)


def default() -> Container:
    return Container().host_root()


def control() -> Container:
    return Container().host_root().security(UNCONFINED)


# ---- system calls: mount, user namespaces, modules, keyrings ------------------------------------

KERNEL_OPS = ["mount", "finit_module", "keyctl", "unshare_mnt", "unshare_user"]


def test_kernel_calls_are_denied_by_default() -> None:
    assert probe(default(), KERNEL_OPS) == dict.fromkeys(KERNEL_OPS, EPERM)


def test_control_kernel_calls_would_succeed() -> None:
    out = probe(control(), KERNEL_OPS)
    assert out["mount"] == 0  # (a tmpfs on /mnt of the container's own mount namespace)
    assert out["finit_module"] in (errno.EBADF, errno.ENOSYS)  # reached the module loader (fd -1), loads nothing
    assert out["keyctl"] != EPERM
    assert out["unshare_mnt"] == 0 and out["unshare_user"] == 0


def test_busybox_mount_is_denied(busybox_root: Path) -> None:
    script = "mount -t tmpfs x /mnt; echo rc=$?"
    r = Container(["/bin/sh", "-c", script]).rootfs(busybox_root).run(capture_output=True, timeout=30)
    assert r.stdout == b"rc=1\n" and b"permi" in (r.stderr or b"").lower(), r  # EPERM
    c = Container(["/bin/sh", "-c", script]).rootfs(busybox_root).security(UNCONFINED)
    assert c.run(capture_output=True, timeout=30).stdout == b"rc=0\n"


# ---- descriptors: setns, fchdir, pidfd_getfd --------------------------------------------------


@pytest.fixture
def host_netns() -> Iterator[int]:
    fd = os.open("/proc/self/ns/net", os.O_RDONLY)
    os.set_inheritable(fd, True)  # a leak: no O_CLOEXEC
    try:
        yield fd
    finally:
        os.close(fd)


def test_leaked_namespace_fd_is_closed(host_netns: int) -> None:
    # Even unconfined: the descriptor never reaches the payload (the filter would answer setns with
    # EPERM before looking at it, so the probe looks at the descriptor itself).
    assert probe(default(), ["fstat"], fd=host_netns) == {"fstat": errno.EBADF}
    assert probe(control(), ["fstat", "setns"], fd=host_netns) == {"fstat": errno.EBADF, "setns": errno.EBADF}


@pytest.mark.parametrize(("box", "expected"), [(default, EPERM), (control, 0)], ids=["defaults", "control"])
def test_setns_to_the_host_through_a_passed_fd(host_netns: int, box: Any, expected: int) -> None:
    # Passed on purpose (as stdin): only the policy stands between the payload and the host's namespace.
    assert probe(box(), ["setns"], fd=0, stdin=host_netns) == {"setns": expected}


@pytest.fixture
def host_dir(tmp_path: Path) -> Iterator[int]:
    (tmp_path / "host-marker").write_text("outside\n")
    fd = os.open(tmp_path, os.O_RDONLY | os.O_DIRECTORY)
    os.set_inheritable(fd, True)  # the CVE-2024-21626 leak
    try:
        yield fd
    finally:
        os.close(fd)


def test_leaked_host_directory_fd_is_no_way_out(busybox_root: Path, host_dir: int) -> None:
    script = f"cd /proc/self/fd/{host_dir} && cat host-marker; echo rc=$?"
    for policy in (None, UNCONFINED):
        box = Container(["/bin/sh", "-c", script]).rootfs(busybox_root)
        if policy is not None:
            box = box.security(policy)
        r = box.run(capture_output=True, timeout=30)
        assert b"outside" not in (r.stdout or b"") and b"rc=0" not in (r.stdout or b""), r
        assert b"can't cd" in (r.stderr or b""), r


def test_control_a_passed_host_directory_fd_is_a_way_out(busybox_root: Path, host_dir: int) -> None:
    # Passed on purpose (as stdin), the same descriptor leads outside the root: what the hygiene prevents.
    r = (
        Container(["/bin/sh", "-c", "cd /proc/self/fd/0 && cat host-marker"])
        .rootfs(busybox_root)
        .run(capture_output=True, timeout=30, stdin=host_dir)
    )
    assert r.stdout == b"outside\n", r


@pytest.mark.parametrize(("box", "expected"), [(default, EPERM), (control, 0)], ids=["defaults", "control"])
def test_pidfd_getfd_from_a_host_process(outsider: subprocess.Popen[bytes], box: Any, expected: int) -> None:
    # A pidfd of a host process, passed in: pidfd_getfd needs ptrace rights (CAP_SYS_PTRACE against a
    # root target), and the pid namespace is no obstacle to it — the denial is the policy's.
    pidfd = os.pidfd_open(outsider.pid)
    try:
        assert probe(box(), ["pidfd_getfd"], fd=0, stdin=pidfd) == {"pidfd_getfd": expected}
    finally:
        os.close(pidfd)


# ---- ptrace ------------------------------------------------------------------------------


def test_ptrace_host_process_is_invisible_in_the_pid_namespace(outsider: subprocess.Popen[bytes]) -> None:
    visible = py(control(), "import os, sys; print(int(os.path.exists(f'/proc/{sys.argv[1]}')))", str(outsider.pid))
    if visible:
        pytest.skip("the host pid happens to exist in the container's pid namespace")
    assert probe(control(), ["ptrace"], pid=outsider.pid) == {"ptrace": errno.ESRCH}


@pytest.mark.parametrize(("policy", "expected"), [(None, EPERM), (UNCONFINED, 0)], ids=["defaults", "control"])
def test_ptrace_in_a_shared_pid_namespace(
    outsider: subprocess.Popen[bytes], policy: SecurityPolicy | None, expected: int
) -> None:
    # Sharing the host's pid namespace, the target is visible: the capability (and filter) must stop it.
    box = Container().host_root().namespaces("mnt", "net", "ipc", "uts")
    if policy is not None:
        box = box.security(policy)
    assert probe(box, ["ptrace"], pid=outsider.pid) == {"ptrace": expected}


# ---- raw sockets -------------------------------------------------------------------------


def test_raw_socket_needs_cap_net_raw() -> None:
    without = default().security(SecurityPolicy(Capabilities.docker_default().drop("NET_RAW")))
    assert probe(without, ["raw_socket"]) == {"raw_socket": EPERM}
    # Docker's default set keeps CAP_NET_RAW: a raw socket, but in the container's own network namespace.
    assert probe(default(), ["raw_socket"]) == {"raw_socket": 0}


# ---- /proc: read-only and masked paths ----------------------------------------------------

PROC_CHECK = """
import json, os, socket, stat, sys
def err(f):
    try:
        f()
        return 0
    except OSError as e:
        return e.errno
def write_hostname():
    with open('/proc/sys/kernel/hostname', 'w') as f:  # uts-namespaced: the container's own name
        f.write('escaped')
def open_sysrq():  # run only where it must fail (the defaults); if it opened, nothing is written
    os.close(os.open('/proc/sysrq-trigger', os.O_WRONLY))
mounts = {}
for line in open('/proc/self/mountinfo'):
    f = line.split()
    mounts[f[4]] = f[5].split(',')
res = {
    'sys_write': err(write_hostname),
    'hostname': socket.gethostname(),
    'sysrq_exists': os.path.exists('/proc/sysrq-trigger'),  # (a kernel without CONFIG_MAGIC_SYSRQ has none)
    'sysrq_writable': os.access('/proc/sysrq-trigger', os.W_OK),
    'sysrq_ro_mount': 'ro' in mounts.get('/proc/sysrq-trigger', []),
    'proc_sys_ro_mount': 'ro' in mounts.get('/proc/sys', []),
    'sysrq_open': err(open_sysrq) if sys.argv[1] == 'defaults' and os.path.exists('/proc/sysrq-trigger') else None,
}
for p in ('/proc/keys', '/proc/timer_list', '/proc/kcore'):
    if not os.path.exists(p):  # (a kernel without CONFIG_PROC_KCORE: nothing to mask)
        res[p] = None
        continue
    st = os.stat(p)
    res[p] = {'null': stat.S_ISCHR(st.st_mode) and st.st_rdev == os.makedev(1, 3),
              'size': len(open(p, 'rb').read(4096)) if p != '/proc/kcore' else st.st_size}
print(json.dumps(res))
"""


def test_proc_sys_and_sysrq_are_read_only_and_kernel_files_masked() -> None:
    host_name = socket.gethostname()
    res = py(default(), PROC_CHECK, "defaults")
    assert res["sys_write"] == errno.EROFS
    assert res["proc_sys_ro_mount"]
    assert res["sysrq_writable"] is False
    if res["sysrq_exists"]:
        assert res["sysrq_ro_mount"] and res["sysrq_open"] == errno.EROFS
    else:
        assert not os.path.exists("/proc/sysrq-trigger")
    for p in ("/proc/keys", "/proc/timer_list", "/proc/kcore"):
        assert res[p] == {"null": True, "size": 0} or (res[p] is None and not os.path.exists(p)), p
    assert socket.gethostname() == host_name


def test_control_without_masks_the_kernel_files_are_there(no_masks: None) -> None:
    host_name = socket.gethostname()
    box = control()
    assert NamespaceType.UTS in box.config.namespaces  # the hostname write stays in the container
    res = py(box, PROC_CHECK, "control")
    assert res["sys_write"] == 0 and res["hostname"] == "escaped"
    assert not res["proc_sys_ro_mount"] and not res["sysrq_ro_mount"]
    if res["sysrq_exists"]:
        assert res["sysrq_writable"] is True  # (checked with access(2) only: never opened for writing)
    assert not res["/proc/keys"]["null"] and not res["/proc/timer_list"]["null"]
    assert res["/proc/timer_list"]["size"] > 0
    assert socket.gethostname() == host_name


# ---- /proc/self/exe --------------------------------------------------------------------------


@pytest.mark.parametrize("policy", [None, UNCONFINED], ids=["defaults", "unconfined"])
def test_proc_self_exe_cannot_be_opened_for_writing(policy: SecurityPolicy | None) -> None:
    # The running binary is text-busy whatever the policy (ETXTBSY; a read-only root says EROFS);
    # that the setup's own exe is out of reach is SetDumpable's part (tests/security/test_policy.py).
    box = default() if policy is None else default().security(policy)
    before = os.stat(PYTHON)
    assert probe(box, ["exe_write"])["exe_write"] in (errno.ETXTBSY, errno.EROFS, errno.EACCES)
    after = os.stat(PYTHON)
    assert (after.st_mtime_ns, after.st_size) == (before.st_mtime_ns, before.st_size)


# ---- devices ----------------------------------------------------------------------------------


def test_dev_holds_only_the_minimal_set(busybox_root: Path) -> None:
    r = Container(["/bin/ls", "/dev"]).rootfs(busybox_root).run(capture_output=True, timeout=30)
    assert set(r.stdout.split()) == {n.encode() for n in MINIMAL_DEV}


def test_mknod_of_a_block_device_without_cap_mknod(busybox_root: Path) -> None:
    script = "mknod /dev/sdz b 8 0; echo rc=$?"
    no_mknod = SecurityPolicy(Capabilities.docker_default().drop("MKNOD"))
    r = Container(["/bin/sh", "-c", script]).rootfs(busybox_root).security(no_mknod).run(capture_output=True)
    assert r.stdout == b"rc=1\n" and b"Operation not permitted" in (r.stderr or b""), r


# Host devices to try, opened without reading or writing: (name, major, minor, open flags).
HOST_DEVICES = [
    ("kvm", 10, 232, os.O_RDONLY),
    ("tty1", 4, 1, os.O_RDONLY | os.O_NOCTTY | os.O_NONBLOCK),
    ("kmsg", 1, 11, os.O_WRONLY),
]


def test_a_default_container_cannot_open_host_devices() -> None:
    present = [d for d in HOST_DEVICES if os.path.exists(f"/dev/{d[0]}")]
    if not present:
        pytest.skip("none of the probe devices exists on this host")
    code = """
    import json, os, stat, sys
    out = {}
    for name, major, minor, flags in json.loads(sys.argv[1]):
        path = '/dev/' + name + '-probe'  # /dev/shm is nodev; /dev is not
        try:
            os.mknod(path, stat.S_IFCHR | 0o600, os.makedev(major, minor))
            os.close(os.open(path, flags))  # opened only: nothing read or written
            out[name] = 0
        except OSError as e:
            out[name] = e.errno
    print(json.dumps(out))
    """
    res = py(default(), code, json.dumps(present))
    assert all(v != 0 for v in res.values()), res


def test_a_device_node_in_the_image_cannot_be_opened(busybox_root: Path, tmp_path: Path) -> None:
    if not os.path.exists("/dev/kvm"):
        pytest.skip("no /dev/kvm to stand for a host device")
    image = tmp_path / "image"
    shutil.copytree(busybox_root, image, symlinks=True)
    os.mknod(image / "evil", 0o020600, os.makedev(10, 232))  # S_IFCHR: what a layer's tar entry becomes
    # `: < file` opens for reading and closes: nothing is read or written.
    r = Container(["/bin/sh", "-c", ": < /evil; echo rc=$?"]).rootfs(image).run(capture_output=True, timeout=30)
    assert r.stdout != b"rc=0\n", r
