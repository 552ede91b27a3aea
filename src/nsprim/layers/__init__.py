"""Deprecated: ``nsprim.layers`` moved to :mod:`nsprim.fs.layers`; this name goes in the next release."""

import importlib as _importlib
import sys as _sys
import warnings

from ..fs.layers import *  # noqa: F403
from ..fs.layers import __all__ as _all0

# Old submodule paths (nsprim.layers.store, ...) name the same module objects.
for _name in ("digest", "limits", "members", "store", "tar", "tree"):
    _sys.modules[f"{__name__}.{_name}"] = _importlib.import_module(f"..fs.layers.{_name}", __name__)


__all__ = [*_all0]

warnings.warn(
    "nsprim.layers moved to nsprim.fs.layers",
    DeprecationWarning,
    stacklevel=2,
)
