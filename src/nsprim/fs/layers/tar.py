"""Deprecated: ``nsprim.fs.layers.tar`` is split into :mod:`~nsprim.fs.layers.extract` and
:mod:`~nsprim.fs.layers.commit`."""

import warnings

from .commit import *  # noqa: F403
from .commit import __all__ as _all0
from .extract import *  # noqa: F403
from .extract import __all__ as _all1
from .members import UnsafeTarEntry as UnsafeTarEntry  # the deprecated name this module had

__all__ = list(dict.fromkeys([*_all0, *_all1, "UnsafeTarEntry"]))

warnings.warn(
    "nsprim.fs.layers.tar moved to nsprim.fs.layers.extract and nsprim.fs.layers.commit",
    DeprecationWarning,
    stacklevel=2,
)
