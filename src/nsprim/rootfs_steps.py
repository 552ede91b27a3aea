"""Deprecated: ``nsprim.rootfs_steps`` moved to :mod:`nsprim.fs.steps`; this name goes in the next release."""

import warnings

from .fs.steps import *  # noqa: F403
from .fs.steps import __all__ as _all0

__all__ = [*_all0]

warnings.warn(
    "nsprim.rootfs_steps moved to nsprim.fs.steps",
    DeprecationWarning,
    stacklevel=2,
)
