"""Deprecated: ``nsprim.mount`` moved to :mod:`nsprim.fs.mount` and :mod:`nsprim.fs.mountinfo`."""

import warnings

from .fs.mount import *  # noqa: F403
from .fs.mount import __all__ as _all0
from .fs.mountinfo import *  # noqa: F403
from .fs.mountinfo import __all__ as _all1

__all__ = [*_all0, *_all1]

warnings.warn(
    "nsprim.mount moved to nsprim.fs.mount and nsprim.fs.mountinfo",
    DeprecationWarning,
    stacklevel=2,
)
