"""The container format: the OCI runtime specification as typed Python values.

:class:`Spec` is a whole ``config.json``; :func:`default_spec` is what
``runc spec`` writes.  The runtime that runs these bundles is
``nsprim-runtime`` (:mod:`nsprim.oci.runtime`).
"""

from .spec import *  # noqa: F403
from .spec import __all__ as _spec_all

__all__ = list(_spec_all)
