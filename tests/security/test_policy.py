"""SecurityPolicy: step order, no_new_privs against setuid and file capabilities,
a non-dumpable setup (CVE-2019-5736 class), and descriptor hygiene (CVE-2024-21626 class)."""

from __future__ import annotations

import errno
import os
import shutil
import struct
import tempfile
import time
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

import pytest

import nsprim
import nsprim.lowlevel
from nsprim.errors import StepError
from nsprim.idmap import IdMap, write_id_maps
from nsprim.plan import Exec, NoNewPrivs, Plan, SetGid, SetGroups, SetUid, Sync, Umask
from nsprim.security import (
    Capabilities,
    CapabilitySet,
    CapsPhase,
    LoadSeccomp,
    SecurityPolicy,
    SetCapabilities,
    SetDumpable,
)
from nsprim.security.seccomp import native_arch

from .conftest import get_dumpable
from .helpers import IS_ROOT, PYTHON, run, sh, status_caps

root = pytest.mark.skipif(not IS_ROOT, reason="needs root")

# ---- order -------------------------------------------------------------------------------------


def _kinds(steps: tuple[object, ...]) -> list[str]:
    return [type(s).__name__ for s in steps]


def test_default_order() -> None:
    steps = SecurityPolicy().steps()
    assert _kinds(steps) == [
        "SetDumpable",
        "Umask",
        "SetCapabilities",
        "SetCapabilities",
        "NoNewPrivs",
        "LoadSeccomp",
    ]
    assert isinstance(steps[0], SetDumpable) and not steps[0].dumpable
    assert steps[1] == Umask(0o022)
    assert isinstance(steps[2], SetCapabilities) and steps[2].phase == CapsPhase.BOUNDING | CapsPhase.KEEP
    assert isinstance(steps[3], SetCapabilities) and steps[3].phase == CapsPhase.SETS | CapsPhase.CLAMP


def test_order_with_a_user_switch() -> None:
    steps = SecurityPolicy(umask=None).steps(uid=1000, gid=100, groups=[10])
    assert _kinds(steps) == [
        "SetDumpable",
        "SetCapabilities",  # bounding set; keep permitted across the switch
        "SetGroups",
        "SetGid",
        "SetUid",  # still has CAP_SETUID
        "SetCapabilities",  # the sets of the new user
        "NoNewPrivs",
        "LoadSeccomp",  # last
    ]
    assert steps[2] == SetGroups((10,)) and steps[3] == SetGid(100) and steps[4] == SetUid(1000)
    sets = steps[5]
    assert isinstance(sets, SetCapabilities) and not sets.caps.effective  # Docker: none for a non-root user


def test_order_without_no_new_privs_loads_the_filter_while_it_still_has_cap_sys_admin() -> None:
    kinds = _kinds(SecurityPolicy(no_new_privs=False, umask=None).steps(uid=1000, gid=1000))
    assert kinds == ["SetDumpable", "SetCapabilities", "LoadSeccomp", "SetGid", "SetUid", "SetCapabilities"]


def test_unconfined_and_prologue_epilogue() -> None:
    policy = SecurityPolicy(seccomp=None, dumpable=True)
    assert policy.prologue() == ()
    assert not any(isinstance(s, LoadSeccomp) for s in policy.epilogue())
    assert SecurityPolicy().unconfined().program() is None
    assert NoNewPrivs() not in SecurityPolicy().unconfined().steps()


def test_program_is_compiled_against_the_policys_capabilities() -> None:
    arch = native_arch()
    admin = SecurityPolicy(Capabilities.docker_default().add("SYS_ADMIN")).program()
    plain = SecurityPolicy().program()
    assert admin is not None and plain is not None
    assert admin.run(arch.audit_arch, arch.syscalls["mount"]) == 0x7FFF0000
    assert plain.run(arch.audit_arch, arch.syscalls["mount"]) == 0x50001


@root
def test_rlimits_umask_and_filter_flags_reach_the_payload() -> None:
    import resource

    from nsprim.security.seccomp import Seccomp

    profile = replace(Seccomp.deny("keyctl"), flags=2)  # SECCOMP_FILTER_FLAG_LOG
    policy = SecurityPolicy(seccomp=profile, rlimits=((resource.RLIMIT_NOFILE, 256, 512),), umask=0o077)
    assert any(isinstance(s, LoadSeccomp) and s.flags == 2 for s in policy.steps())
    r = sh("ulimit -n; ulimit -Hn; umask", policy)
    assert r.stdout.split() == [b"256", b"512", b"0077"], r.stderr


# ---- no_new_privs: exec cannot regain privileges -----------------------------------------------------


@pytest.fixture
def bindir() -> Iterator[Path]:
    d = Path(tempfile.mkdtemp(prefix="nsprim-sec-", dir="/tmp"))
    d.chmod(0o755)
    try:
        yield d
    finally:
        shutil.rmtree(d)


def _file_caps(permitted: CapabilitySet) -> bytes:
    # struct vfs_cap_data, revision 2, with the effective flag: lo/hi of permitted and inheritable
    lo, hi = permitted.mask & 0xFFFFFFFF, permitted.mask >> 32
    return struct.pack("<IIIII", 0x02000000 | 1, lo, 0, hi, 0)


@root
def test_setuid_binary_cannot_give_root(bindir: Path) -> None:
    ident = bindir / "id"
    shutil.copy("/usr/bin/id", ident)
    ident.chmod(0o4755)  # setuid root
    r = run([str(ident), "-u"], SecurityPolicy(), uid=1000, gid=1000)
    assert r.stdout == b"1000\n", r.stderr
    # control: without no_new_privs the setuid bit works
    r = run([str(ident), "-u"], SecurityPolicy(seccomp=None, no_new_privs=False), uid=1000, gid=1000)
    assert r.stdout == b"0\n", r.stderr


@root
def test_file_capabilities_cannot_give_capabilities(bindir: Path) -> None:
    cat = bindir / "cat"
    shutil.copy("/bin/cat", cat)
    nbs = CapabilitySet.of("NET_BIND_SERVICE")
    try:
        os.setxattr(cat, "security.capability", _file_caps(nbs))
    except OSError as exc:
        pytest.skip(f"no file capabilities here: {exc}")

    def caps(policy: SecurityPolicy) -> Capabilities:
        r = run([str(cat), "/proc/self/status"], policy, uid=1000, gid=1000)
        assert r.returncode == 0, r.stderr
        return Capabilities.from_status(r.stdout.decode())

    assert not caps(SecurityPolicy()).permitted  # no_new_privs: file capabilities ignored
    assert caps(SecurityPolicy(seccomp=None, no_new_privs=False)).permitted == nbs  # control
    # Without no_new_privs, the bounding set still caps what a file can grant: the kernel
    # refuses to start a binary whose file capabilities it cannot grant in full.
    os.setxattr(cat, "security.capability", _file_caps(CapabilitySet.of("SYS_ADMIN", "NET_BIND_SERVICE")))
    with pytest.raises(StepError) as info:
        caps(SecurityPolicy(seccomp=None, no_new_privs=False))
    assert info.value.errno == errno.EPERM and info.value.operation == "exec"


@root
def test_root_payload_gets_no_more_than_the_bounding_set_across_exec() -> None:
    # sh execs cat: the capabilities after a second exec are still the requested ones.
    caps = Capabilities.docker_default().drop("chown")
    got = status_caps(SecurityPolicy(caps))
    assert got == caps


# ---- dumpable -------------------------------------------------------------------------------------


def _setup_owner(dumpable: bool) -> tuple[int, int, int]:
    """(owner of /proc/<pid> during setup, status of an outsider's ``open`` of its exe, owner after exec).

    The child is root in a new user namespace mapped to host uid 100000; the
    outsider is another process of that user namespace (what a container process is).
    """
    outside = 100000
    seen: list[int] = []

    def maps(pid: int) -> None:
        write_id_maps(pid, IdMap.single(0, outside), IdMap.single(0, outside), deny_setgroups=False)

    def look(pid: int) -> None:
        # The parent does not learn when the child reaches the next Sync: wait until it
        # sits in read() (on the sync pipe) with its new uid, i.e. past SetDumpable.
        read_nr = native_arch().syscalls["read"]
        for _ in range(2000):
            with open(f"/proc/{pid}/status") as f:
                uid = f.read().split("\nUid:")[1].split()[0]
            with open(f"/proc/{pid}/syscall") as f:
                current = f.read().split()[0]
            if uid == str(outside) and current == str(read_nr):
                break
            time.sleep(0.001)
        seen.append(os.stat(f"/proc/{pid}/status").st_uid)
        # A process of the container: root in its user namespace (CVE-2019-5736's attacker).
        with nsprim.Namespace.of_pid(pid, "user") as userns:
            r = nsprim.run(
                ["/bin/sh", "-c", f"exec 3< /proc/{pid}/exe"], join=[userns], uid=0, gid=0, stderr=nsprim.DEVNULL
            )
        seen.append(r.returncode)

    plan = Plan(
        (
            Sync("id maps"),
            SetGroups(()),
            SetGid(0),
            SetUid(0),
            SetDumpable(dumpable),
            Sync("look at the setup process"),
            Exec("/bin/sleep", ("sleep", "5")),
        )
    )
    flags = nsprim.NamespaceType.mask({nsprim.NamespaceType.USER, nsprim.NamespaceType.PID})
    with nsprim.lowlevel.start(plan, args=["sleep"], clone_flags=flags, parent_actions=[maps, look]) as proc:
        for _ in range(200):  # until exec has happened
            if os.readlink(f"/proc/{proc.pid}/exe").endswith("sleep"):
                break
        seen.append(os.stat(f"/proc/{proc.pid}/status").st_uid)
    return seen[0], seen[1], seen[2]


@root
def test_setup_process_is_not_dumpable() -> None:
    owner, exe_status, after = _setup_owner(False)
    assert owner == 0  # /proc/<pid>/* belong to root while the setup runs
    assert exe_status != 0  # a container process cannot open /proc/<pid>/exe
    assert after == 100000  # exec made the payload dumpable again


@root
def test_setup_process_control_dumpable() -> None:
    owner, exe_status, _ = _setup_owner(True)
    assert owner == 100000 and exe_status == 0


@root
def test_parent_dumpability_is_restored_by_the_tests() -> None:
    # Documented hazard: in vfork mode the child shares the parent's memory map.
    assert get_dumpable() == 1


# ---- descriptors -----------------------------------------------------------------------------------


@root
def test_inherited_host_directory_descriptor_is_not_reachable() -> None:
    fd = os.open("/", os.O_RDONLY | os.O_DIRECTORY)
    os.set_inheritable(fd, True)  # leaked on purpose, as in CVE-2024-21626
    try:
        code = (
            "import os, sys\n"
            f"fd = {fd}\n"
            "try: os.fstat(fd); print('fstat ok')\n"
            "except OSError as e: print('fstat', e.errno)\n"
            "try: os.listdir(f'/proc/self/fd/{fd}'); print('proc ok')\n"
            "except OSError as e: print('proc', e.errno)\n"
            "print(sorted(int(x) for x in os.listdir('/proc/self/fd')))\n"
        )
        r = run([PYTHON, "-S", "-c", code], SecurityPolicy())
        lines = r.stdout.decode().splitlines()
        assert lines[0] == f"fstat {errno.EBADF}" and lines[1] == f"proc {errno.ENOENT}", r.stderr
        assert fd not in eval(lines[2])  # only 0, 1, 2 and listdir's own
        # control: explicitly passed, it is reachable
        r = run([PYTHON, "-S", "-c", code], SecurityPolicy(), pass_fds=(fd,))
        assert r.stdout.decode().splitlines()[:2] == ["fstat ok", "proc ok"]
    finally:
        os.close(fd)


@root
def test_cwd_through_a_leaked_descriptor_path_fails() -> None:
    fd = os.open("/", os.O_RDONLY | os.O_DIRECTORY)
    os.set_inheritable(fd, True)
    try:
        r = sh(f"cd /proc/self/fd/{fd} && echo escaped || echo contained", SecurityPolicy())
        assert r.stdout == b"contained\n"
    finally:
        os.close(fd)


# ---- OCI ---------------------------------------------------------------------------------------------


def test_policy_from_an_oci_bundle_config() -> None:
    import resource

    from nsprim.security import SecurityConfigError, UnknownCapabilityError

    names = ["CAP_CHOWN", "CAP_KILL"]
    process = {
        "capabilities": {"bounding": names, "effective": names, "permitted": names},
        "noNewPrivileges": True,
        "rlimits": [{"type": "RLIMIT_NOFILE", "soft": 1024, "hard": 2048}],
    }
    linux = {
        "seccomp": {"defaultAction": "SCMP_ACT_ALLOW", "syscalls": [{"names": ["keyctl"], "action": "SCMP_ACT_ERRNO"}]}
    }
    policy = SecurityPolicy.from_oci(process, linux)
    assert policy.caps == Capabilities.of("chown", "kill")
    assert policy.no_new_privs and policy.rlimits == ((resource.RLIMIT_NOFILE, 1024, 2048),)
    assert policy.caps.to_oci()["bounding"] == names
    assert SecurityPolicy.from_oci({}).caps == Capabilities.none() and SecurityPolicy.from_oci({}).seccomp is None
    with pytest.raises(
        UnknownCapabilityError, match=r"process.capabilities.effective\[1\]: unknown capability `CAP_NOPE`"
    ):
        SecurityPolicy.from_oci({"capabilities": {"effective": ["CAP_KILL", "CAP_NOPE"]}})
    with pytest.raises(SecurityConfigError, match=r"process.rlimits\[0\].type: unknown rlimit `RLIMIT_FOO`"):
        SecurityPolicy.from_oci({"rlimits": [{"type": "RLIMIT_FOO", "soft": 1, "hard": 1}]})


@root
def test_oci_policy_in_the_kernel() -> None:
    names = ["CAP_CHOWN", "CAP_KILL"]
    process = {"capabilities": {"bounding": names, "effective": names, "permitted": names}, "noNewPrivileges": True}
    linux = {
        "seccomp": {"defaultAction": "SCMP_ACT_ALLOW", "syscalls": [{"names": ["chroot"], "action": "SCMP_ACT_ERRNO"}]}
    }
    policy = SecurityPolicy.from_oci(process, linux)
    r = sh("grep -E 'CapBnd|NoNewPrivs' /proc/self/status; chroot / true || echo denied", policy)
    assert r.stdout.split() == [b"CapBnd:", b"0000000000000021", b"NoNewPrivs:", b"1", b"denied"], r.stderr


@pytest.mark.parametrize(
    "kwargs",
    [{"caps": "ALL"}, {"seccomp": "default"}, {"seccomp_flags": -1}, {"umask": 0o1000}, {"umask": "022"}],
)
def test_a_policy_of_wrong_parts_is_a_typed_error(kwargs: dict[str, object]) -> None:
    from nsprim.security import SecurityConfigError

    with pytest.raises(SecurityConfigError):
        SecurityPolicy(**kwargs)  # type: ignore[arg-type]
