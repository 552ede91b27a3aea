"""The generated system call tables: fresh from the headers, and in agreement with libseccomp."""

from __future__ import annotations

import ctypes
import ctypes.util
import subprocess
import sys
from pathlib import Path

import pytest

from nsprim.security.seccomp import ARCHES, native_arch
from nsprim.security.seccomp.arch import known_syscall

from ..tools import missing, need_tool

ROOT = Path(__file__).resolve().parents[2]


def _libseccomp() -> ctypes.CDLL:
    try:
        lib = ctypes.CDLL("libseccomp.so.2")
    except OSError:
        raise missing("libseccomp.so.2", "libseccomp2") from None
    lib.seccomp_syscall_resolve_name_arch.argtypes = [ctypes.c_uint32, ctypes.c_char_p]
    lib.seccomp_syscall_resolve_name_arch.restype = ctypes.c_int
    lib.seccomp_syscall_resolve_num_arch.argtypes = [ctypes.c_uint32, ctypes.c_int]
    lib.seccomp_syscall_resolve_num_arch.restype = ctypes.c_void_p
    return lib


def test_generated_tables_are_fresh() -> None:
    need_tool("cc", "gcc")
    if not Path("/usr/include/asm-generic/unistd.h").exists():
        raise missing("/usr/include/asm-generic/unistd.h", "linux-libc-dev")
    r = subprocess.run([sys.executable, str(ROOT / "tools" / "gen_syscalls.py"), "--check"], capture_output=True)
    assert r.returncode == 0, r.stderr.decode()


@pytest.mark.parametrize("arch", sorted(ARCHES))
def test_numbers_agree_with_libseccomp(arch: str) -> None:
    lib = _libseccomp()
    libc = ctypes.CDLL(None)
    libc.free.argtypes = [ctypes.c_void_p]
    a = ARCHES[arch]
    for name, nr in a.syscalls.items():
        theirs = lib.seccomp_syscall_resolve_name_arch(a.audit_arch, name.encode())
        # negative: newer than this libseccomp, or an i386 socketcall pseudo-number
        assert theirs < 0 or theirs == nr, (name, nr, theirs)
    for nr in range(0, 600):
        p = lib.seccomp_syscall_resolve_num_arch(a.audit_arch, nr)
        if p:
            name = ctypes.string_at(p).decode()
            libc.free(p)
            assert a.by_number.get(nr) == name, (nr, name)


def test_well_known_numbers() -> None:
    assert ARCHES["x86_64"].syscalls["mount"] == 165
    assert ARCHES["x86_64"].syscalls["clone3"] == 435
    assert ARCHES["aarch64"].syscalls["openat"] == 56
    assert "open" not in ARCHES["aarch64"].syscalls
    assert ARCHES["x86"].syscalls["socketcall"] == 102
    assert known_syscall("arm_fadvise64_64") and not known_syscall("frobnicate")
    assert native_arch().name in ARCHES
