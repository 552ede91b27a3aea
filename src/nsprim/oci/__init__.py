"""The container format: the OCI runtime specification as typed Python values.

:class:`Spec` is a whole ``config.json``; :func:`default_spec` is what
``runc spec`` writes; :class:`State` is what ``state ID`` prints.
"""

from .generate import DEFAULT_MASKED_PATHS, DEFAULT_READONLY_PATHS, default_spec
from .spec import *  # noqa: F403
from .spec import __all__ as _spec_all
from .state import State, Status

__all__ = [*_spec_all, "DEFAULT_MASKED_PATHS", "DEFAULT_READONLY_PATHS", "default_spec", "State", "Status"]
