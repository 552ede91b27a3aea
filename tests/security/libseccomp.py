"""A reference: build a profile with libseccomp (ctypes, no headers needed) and export its BPF.

Used to check nsprim's compiler against the library runc and crun use.  Only
the subset where the two agree by design: one architecture (the native one),
no ENOSYS stub for newer calls (runc adds that itself), and at most one
rule per system call (libseccomp merges overlapping rules its own way).
"""

from __future__ import annotations

import ctypes
import os
import tempfile

from nsprim.security.seccomp import ActionKind, Op, Profile, Program

SCMP_FLTATR_ACT_BADARCH = 2
_OPS = {Op.NE: 1, Op.LT: 2, Op.LE: 3, Op.EQ: 4, Op.GE: 5, Op.GT: 6, Op.MASKED_EQ: 7}


class ArgCmpC(ctypes.Structure):
    _fields_ = [
        ("arg", ctypes.c_uint),
        ("op", ctypes.c_int),
        ("datum_a", ctypes.c_uint64),
        ("datum_b", ctypes.c_uint64),
    ]


class LibseccompError(Exception):
    """libseccomp refused the profile."""


def load() -> ctypes.CDLL | None:
    """libseccomp.so.2, or None."""
    try:
        lib = ctypes.CDLL("libseccomp.so.2")
    except OSError:
        return None
    lib.seccomp_init.restype = ctypes.c_void_p
    lib.seccomp_init.argtypes = [ctypes.c_uint32]
    lib.seccomp_release.argtypes = [ctypes.c_void_p]
    lib.seccomp_attr_set.argtypes = [ctypes.c_void_p, ctypes.c_int, ctypes.c_uint32]
    lib.seccomp_rule_add_array.argtypes = [
        ctypes.c_void_p,
        ctypes.c_uint32,
        ctypes.c_int,
        ctypes.c_uint,
        ctypes.POINTER(ArgCmpC),
    ]
    lib.seccomp_syscall_resolve_name.argtypes = [ctypes.c_char_p]
    lib.seccomp_export_bpf.argtypes = [ctypes.c_void_p, ctypes.c_int]
    return lib


def build(lib: ctypes.CDLL, profile: Profile) -> Program:
    """Compile *profile* (resolved, native arch only) with libseccomp."""
    ctx = lib.seccomp_init(profile.default_action.ret)
    if not ctx:
        raise LibseccompError("seccomp_init")
    try:
        rc = lib.seccomp_attr_set(ctx, SCMP_FLTATR_ACT_BADARCH, profile.foreign_action.ret)
        if rc < 0:
            raise LibseccompError(f"seccomp_attr_set: {os.strerror(-rc)}")
        for rule in profile.effective_rules():
            if rule.action.kind is ActionKind.USER_NOTIF:
                raise LibseccompError("notify")
            args = (ArgCmpC * max(1, len(rule.args)))()
            for i, c in enumerate(rule.args):
                args[i] = ArgCmpC(c.index, _OPS[c.op], c.value, c.value_two)
            for name in rule.names:
                nr = lib.seccomp_syscall_resolve_name(name.encode())
                if nr < 0:
                    continue  # not on this architecture
                rc = lib.seccomp_rule_add_array(ctx, rule.action.ret, nr, len(rule.args), args)
                if rc < 0:
                    raise LibseccompError(f"seccomp_rule_add {name}: {os.strerror(-rc)}")
        with tempfile.TemporaryFile() as f:
            rc = lib.seccomp_export_bpf(ctx, f.fileno())
            if rc < 0:
                raise LibseccompError(f"seccomp_export_bpf: {os.strerror(-rc)}")
            f.seek(0)
            return Program.from_bytes(f.read())
    finally:
        lib.seccomp_release(ctx)
