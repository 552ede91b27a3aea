"""Configuration errors of the security layer.

All are :class:`~nsprim.errors.ConfigError` subclasses (hence also
:class:`ValueError`), raised before anything reaches the kernel.  ``what``
names the offending entry, in the profile's own terms
("syscalls[3].names[1]").
"""

from __future__ import annotations

from ..errors import ConfigError

__all__ = ["SecurityConfigError", "UnknownCapabilityError", "SeccompProfileError", "UnknownSyscallError", "BPFError"]


class SecurityConfigError(ConfigError):
    """Base of the security layer's configuration errors."""


class UnknownCapabilityError(SecurityConfigError):
    """A capability name that is not one of the kernel's (``CAP_FOO``)."""

    def __init__(self, name: str, *, where: str | None = None) -> None:
        prefix = f"{where}: " if where else ""
        super().__init__(f"{prefix}unknown capability `{name}`", what=where or name)
        self.name = name


class SeccompProfileError(SecurityConfigError):
    """A malformed seccomp profile; the message starts with the entry's path."""

    def __init__(self, where: str, reason: str) -> None:
        super().__init__(f"seccomp profile: {where}: {reason}" if where else f"seccomp profile: {reason}", what=where)
        self.where = where
        self.reason = reason


class UnknownSyscallError(SeccompProfileError):
    """A system call name unknown for the filter's architectures."""

    def __init__(self, name: str, arch: str, where: str = "") -> None:
        super().__init__(where, f"unknown syscall `{name}` for {arch}")
        self.name = name
        self.arch = arch


class BPFError(SecurityConfigError):
    """A classic-BPF program the kernel's checker would refuse (a jump out of the
    program, an instruction seccomp does not allow, a bad load offset)."""

    def __init__(self, reason: str) -> None:
        super().__init__(f"BPF program: {reason}", what="program")
        self.reason = reason
