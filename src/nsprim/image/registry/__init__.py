"""A client of the OCI distribution spec: :func:`pull` an image from a registry into an image layout,
:func:`push` one of a layout to a registry.

Built on the standard library (:mod:`http.client`, :mod:`ssl`,
:mod:`concurrent.futures`): :mod:`~nsprim.image.registry.client` speaks to a
registry (connections, redirects, errors), :mod:`~nsprim.image.registry.auth`
finds credentials and reads challenges, :mod:`~nsprim.image.registry.pull`
fetches images and :mod:`~nsprim.image.registry.push` sends them, some blobs
at once (:mod:`~nsprim.image.registry.jobs`).
"""

from __future__ import annotations

from .auth import Credentials, find_credentials
from .client import RegistryClient
from .pull import MANIFEST_TYPES, fetch_manifest, pull
from .push import push

__all__ = ["pull", "push", "fetch_manifest", "MANIFEST_TYPES", "RegistryClient", "Credentials", "find_credentials"]
