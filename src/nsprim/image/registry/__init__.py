"""A client of the OCI distribution spec: :func:`pull` an image from a registry into an image layout.

Built on the standard library (:mod:`http.client`, :mod:`ssl`,
:mod:`concurrent.futures`): :mod:`~nsprim.image.registry.client` speaks to a
registry (connections, redirects, errors), :mod:`~nsprim.image.registry.auth`
finds credentials and reads challenges, :mod:`~nsprim.image.registry.pull`
fetches images (pushing is not built yet).
"""

from __future__ import annotations

from .auth import Credentials, find_credentials
from .client import RegistryClient
from .pull import MANIFEST_TYPES, fetch_manifest, pull

__all__ = ["pull", "fetch_manifest", "MANIFEST_TYPES", "RegistryClient", "Credentials", "find_credentials"]
