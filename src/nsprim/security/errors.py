"""Configuration errors of the security layer, defined in :mod:`nsprim.errors`.

All are :class:`~nsprim.errors.ConfigError` subclasses (hence also
:class:`ValueError`), raised before anything reaches the kernel.  ``what``
names the offending entry, in the profile's own terms
("syscalls[3].names[1]").  This module re-exports them where the security
layer's users have always imported them from.
"""

from __future__ import annotations

from ..errors import BPFError, SeccompProfileError, SecurityConfigError, UnknownCapabilityError, UnknownSyscallError

__all__ = ["SecurityConfigError", "UnknownCapabilityError", "SeccompProfileError", "UnknownSyscallError", "BPFError"]
