"""Escape attempts, run *inside* a sandbox: ``python probe.py '<json>' op...``.

The JSON argument gives system call numbers (name -> nr) for this machine and
optional parameters (``fd`` for setns, pidfd_getfd and fchdir, ``pid`` for
ptrace).  Each operation
prints ``op=errno`` (0: it worked).  Nothing here can harm the host when run
in the namespaces the tests use: mounts land in a private mount namespace,
``finit_module`` gets an invalid descriptor, keyctl only looks a keyring up,
PTRACE_SEIZE does not stop the tracee and ends with the probe, pidfd_getfd
only copies a descriptor, exe_write opens without writing.
"""

import ctypes
import json
import os
import socket
import sys

libc = ctypes.CDLL(None, use_errno=True)
libc.syscall.restype = ctypes.c_long
CONF = json.loads(sys.argv[1])
NR = CONF["nr"]

CLONE_NEWUSER = 0x10000000
CLONE_NEWNS = 0x00020000
PTRACE_SEIZE = 0x4206
KEYCTL_GET_KEYRING_ID = 0
KEY_SPEC_SESSION_KEYRING = -3


def sc(name, *args):
    ctypes.set_errno(0)
    r = libc.syscall(ctypes.c_long(NR[name]), *args)
    return 0 if r >= 0 else ctypes.get_errno()


def op_mount():
    return sc("mount", b"none", b"/mnt", b"tmpfs", ctypes.c_ulong(0), None)


def op_unshare_user():
    return sc("unshare", ctypes.c_int(CLONE_NEWUSER))


def op_unshare_mnt():
    return sc("unshare", ctypes.c_int(CLONE_NEWNS))


def op_finit_module():
    return sc("finit_module", ctypes.c_int(-1), b"", ctypes.c_int(0))


def op_keyctl():
    return sc("keyctl", ctypes.c_int(KEYCTL_GET_KEYRING_ID), ctypes.c_int(KEY_SPEC_SESSION_KEYRING), ctypes.c_int(0))


def op_raw_socket():
    try:
        socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_ICMP).close()
    except OSError as exc:
        return exc.errno
    return 0


def op_setns():
    return sc("setns", ctypes.c_int(CONF["fd"]), ctypes.c_int(0))


def op_ptrace():
    return sc("ptrace", ctypes.c_long(PTRACE_SEIZE), ctypes.c_long(CONF["pid"]), None, None)


def op_pidfd_getfd():
    # Take a copy of descriptor 0 of the process CONF["fd"] (a pidfd) is open on.
    return sc("pidfd_getfd", ctypes.c_int(CONF["fd"]), ctypes.c_int(0), ctypes.c_uint(0))


def op_exe_write():
    # CVE-2019-5736's move: open the binary we run, through /proc, for writing (nothing is written).
    try:
        os.close(os.open("/proc/self/exe", os.O_WRONLY))
    except OSError as exc:
        return exc.errno
    return 0


def op_fchdir():
    # CVE-2024-21626's move: a directory descriptor from outside the root as the way out.
    try:
        os.fchdir(CONF["fd"])
        os.listdir(".")
    except OSError as exc:
        return exc.errno
    return 0


def op_fstat():
    # Is descriptor CONF["fd"] open here?
    try:
        os.fstat(CONF["fd"])
    except OSError as exc:
        return exc.errno
    return 0


def op_chroot():
    return sc("chroot", b"/")


def op_personality():
    return sc("personality", ctypes.c_ulong(0x0400000))  # READ_IMPLIES_EXEC


def op_clone3():
    return sc("clone3", None, ctypes.c_size_t(0))


def op_getpid():
    return sc("getpid")


def op_setuid0():
    return sc("setresuid", ctypes.c_int(0), ctypes.c_int(0), ctypes.c_int(0))


for name in sys.argv[2:]:
    print(f"{name}={globals()['op_' + name]()}", flush=True)
os._exit(0)
