"""Deprecated: ``nsprim.layers`` moved to :mod:`nsprim.fs.layers`; this name goes in the next release."""

import importlib as _importlib
import sys as _sys
import warnings

from ..fs.layers import *  # noqa: F403
from ..fs.layers import __all__ as _all0

# Old submodule paths (nsprim.layers.store, ...) name the same module objects.
for _name in ("commit", "digest", "extract", "limits", "members", "store", "tree"):
    _sys.modules[f"{__name__}.{_name}"] = _importlib.import_module(f"..fs.layers.{_name}", __name__)
with warnings.catch_warnings():  # this package's own warning below says it
    warnings.simplefilter("ignore", DeprecationWarning)
    _sys.modules[f"{__name__}.tar"] = _importlib.import_module("..fs.layers.tar", __name__)


__all__ = [*_all0]

warnings.warn(
    "nsprim.layers moved to nsprim.fs.layers",
    DeprecationWarning,
    stacklevel=2,
)
