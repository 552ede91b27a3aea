"""Deprecated: ``nsprim.overlay`` moved to :mod:`nsprim.fs.overlay`; this name goes in the next release."""

import warnings

from .fs.overlay import *  # noqa: F403
from .fs.overlay import __all__ as _all0

__all__ = [*_all0]

warnings.warn(
    "nsprim.overlay moved to nsprim.fs.overlay",
    DeprecationWarning,
    stacklevel=2,
)
