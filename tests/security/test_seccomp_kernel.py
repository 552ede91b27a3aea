"""seccomp filters in the kernel: denied calls fail with EPERM, allowed ones work, programs run."""

from __future__ import annotations

import errno
import json
import os
from pathlib import Path

import pytest

from nsprim.errors import StepError
from nsprim.security import Capabilities, LoadSeccomp, SecurityPolicy
from nsprim.security.seccomp import Action, Profile, Rule, Seccomp, compile_profile, load_profile, native_arch
from nsprim.security.seccomp.bpf import Insn, Program

from .helpers import IS_ROOT, PYTHON, probe, run, sh, status_field

pytestmark = pytest.mark.skipif(not IS_ROOT, reason="needs root")


def test_default_profile_is_installed_with_no_new_privs() -> None:
    r = sh("cat /proc/self/status", SecurityPolicy())
    text = r.stdout.decode()
    assert status_field(text, "Seccomp") == "2"
    assert status_field(text, "Seccomp_filters") == "1"
    assert status_field(text, "NoNewPrivs") == "1"


def test_default_profile_lets_common_programs_run() -> None:
    script = "set -e; ls / >/dev/null; echo a | grep -q a; cat /etc/hostname >/dev/null; sleep 0; date >/dev/null"
    r = sh(script, SecurityPolicy())
    assert r.returncode == 0, r.stderr
    code = "import json, os, socket, subprocess, tempfile, threading; json.dumps({}); print('py ok')"
    r = run([PYTHON, "-c", code], SecurityPolicy())
    assert r.returncode == 0 and r.stdout == b"py ok\n", r.stderr
    # fork + exec + threads + pipes in the payload
    r = run([PYTHON, "-c", "import subprocess; print(subprocess.run(['true']).returncode)"], SecurityPolicy())
    assert r.stdout == b"0\n", r.stderr


def test_denied_call_fails_with_eperm_allowed_one_works() -> None:
    out = probe(["mount", "keyctl", "getpid", "chroot"], SecurityPolicy())
    assert out == {"mount": errno.EPERM, "keyctl": errno.EPERM, "getpid": 0, "chroot": 0}


def test_clone3_fails_with_enosys_and_unshare_with_eperm() -> None:
    out = probe(["clone3", "unshare_mnt"], SecurityPolicy())
    assert out == {"clone3": errno.ENOSYS, "unshare_mnt": errno.EPERM}
    r = sh("unshare -U true", SecurityPolicy())
    assert r.returncode != 0 and b"Operation not permitted" in r.stderr


def test_personality_arguments() -> None:
    assert probe(["personality"], SecurityPolicy()) == {"personality": errno.EPERM}


def test_simple_deny() -> None:
    policy = SecurityPolicy(Capabilities.all(), Seccomp.deny("mount", "keyctl"))
    out = probe(["mount", "keyctl", "getpid", "chroot"], policy)
    assert out == {"mount": errno.EPERM, "keyctl": errno.EPERM, "getpid": 0, "chroot": 0}


def test_custom_errno_and_custom_json_profile(tmp_path: Path) -> None:
    doc = {
        "defaultAction": "SCMP_ACT_ALLOW",
        "syscalls": [
            {"names": ["chroot"], "action": "SCMP_ACT_ERRNO", "errnoRet": errno.EROFS},
            {"names": ["getpid"], "action": "SCMP_ACT_ERRNO", "errnoRet": errno.EXDEV},
        ],
    }
    path = tmp_path / "profile.json"
    path.write_text(json.dumps(doc))
    policy = SecurityPolicy(seccomp=load_profile(path))
    assert probe(["chroot", "getpid", "keyctl"], policy) == {"chroot": errno.EROFS, "getpid": errno.EXDEV, "keyctl": 0}


def test_kill_action_kills_with_sigsys() -> None:
    killing = Profile(Action.allow(), (Rule(("getppid",), Action.kill_process()),), enosys_newer=False)
    r = run([PYTHON, "-c", "import os; os.getppid(); print('alive')"], SecurityPolicy(seccomp=killing))
    assert r.returncode == -31 and r.stdout == b""  # SIGSYS


def test_arguments_are_compared() -> None:
    # socket(AF_VSOCK) is denied by the default profile, other families are fine.
    code = (
        "import socket\n"
        "socket.socket(socket.AF_INET, socket.SOCK_STREAM).close()\n"
        "try:\n socket.socket(40, socket.SOCK_STREAM)\n"
        "except OSError as e: print(e.errno)\n"
    )
    r = run([PYTHON, "-c", code], SecurityPolicy())
    assert r.stdout == b"1\n", r.stderr


def test_filter_is_the_last_step_and_still_allows_exec() -> None:
    # A filter that allows only what exec and a tiny payload need.
    allowed = (
        "execve brk arch_prctl mmap munmap mprotect openat read write close fstat newfstatat access "
        "pread64 set_tid_address set_robust_list rseq prlimit64 getrandom exit_group exit futex lseek "
        "rt_sigaction rt_sigprocmask getuid geteuid getgid getegid getpid getppid ioctl fcntl uname "
        "readlink stat lstat dup2 getcwd chdir wait4 clone vfork fork sysinfo statfs statx faccessat2 "
        "getdents64 sigaltstack rt_sigreturn"
    )
    profile = Profile.allow_only(*allowed.split())
    r = sh("echo hi; mkdir /tmp/nsprim-denied-dir || echo denied", SecurityPolicy(seccomp=profile))
    assert r.stdout == b"hi\ndenied\n", r.stderr


def test_invalid_program_is_a_step_error() -> None:
    bad = Program((Insn(0x05, 0, 0, 10),))  # a jump out of the program
    with pytest.raises(StepError) as info:
        sh("true", steps=[LoadSeccomp(bad)])
    assert info.value.errno == errno.EINVAL and "load seccomp filter" in str(info.value)


def test_without_no_new_privs_the_filter_is_loaded_before_caps_drop() -> None:
    policy = SecurityPolicy(no_new_privs=False)
    r = sh("cat /proc/self/status", policy)
    text = r.stdout.decode()
    assert status_field(text, "NoNewPrivs") == "0" and status_field(text, "Seccomp") == "2"


def test_filter_for_every_arch_loads() -> None:
    prog = compile_profile(Seccomp.default(), arches=["x86_64", "x86", "aarch64"])
    r = sh("echo ok", steps=[])  # control
    assert r.stdout == b"ok\n"
    r = sh("echo ok", SecurityPolicy(seccomp=prog))
    assert r.stdout == b"ok\n", r.stderr
    assert native_arch().name in ("x86_64", "aarch64")


@pytest.mark.parametrize(
    ("profile", "uname_errno"),
    [
        (Seccomp.default().denying("uname"), errno.EPERM),  # the default's own errno
        (Seccomp.default().denying("uname", errno=errno.EACCES), errno.EACCES),
        (Seccomp.deny("mount").denying("uname"), errno.EPERM),  # allowing by default
        (Seccomp.deny("uname", "mount").with_rules(Rule(("uname",), Action.allow())), 0),  # allowed, then denied
    ],
    ids=["default-eperm", "default-eacces", "allowing-deny", "allowing-allow-first"],
)
def test_rules_take_effect_in_a_container(profile: Profile, uname_errno: int) -> None:
    from nsprim.container import Container

    code = "import os\ntry:\n os.uname(); print(0)\nexcept OSError as e: print(e.errno)\n"
    policy = SecurityPolicy(Capabilities.docker_default(), profile)
    r = Container([PYTHON, "-c", code]).host_root().security(policy).run(capture_output=True)
    assert (r.returncode, r.stdout) == (0, f"{uname_errno}\n".encode()), r.stderr
    r = Container(["uname", "-s"]).host_root().security(policy).run(capture_output=True)
    if uname_errno:
        assert r.returncode != 0 and os.strerror(uname_errno).encode() in r.stderr, r.stderr
    else:
        assert (r.returncode, r.stdout) == (0, b"Linux\n"), r.stderr
