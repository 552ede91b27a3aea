"""Deprecated: ``nsprim.rootfs`` moved to :mod:`nsprim.fs.rootfs`; this name goes in the next release."""

import warnings

from .fs.rootfs import *  # noqa: F403
from .fs.rootfs import __all__ as _all0

__all__ = [*_all0]

warnings.warn(
    "nsprim.rootfs moved to nsprim.fs.rootfs",
    DeprecationWarning,
    stacklevel=2,
)
