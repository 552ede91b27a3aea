"""The errors of image layers, images and registries."""

from __future__ import annotations

from .base import ConfigError, NsprimError

TYPE_CHECKING = False  # typing is not imported at run time
if TYPE_CHECKING:
    from typing import Any

__all__ = [
    "LayerError",
    "ImageError",
    "BlobDigestError",
    "ImageNotFoundError",
    "ImageReferenceError",
    "RegistryError",
    "RegistryAuthError",
    "RegistryNotFoundError",
    "RegistryUnavailableError",
    "RegistryDigestError",
    "CorruptLayerError",
    "LayerLimitError",
    "UnsafeTarEntryError",
]


class LayerError(ConfigError):
    """A layer tar that cannot be extracted as given.

    ``layer`` names the tar (its path, or its digest in a layer store) and
    ``entry`` the member, where known.  Extraction into a new layer is all or
    nothing, so nothing is left behind when one is raised.
    """

    def __init__(self, message: str, *, layer: str | None = None, entry: str | None = None) -> None:
        super().__init__(message, what="layer")
        self.layer = layer
        self.entry = entry
        self.path = entry
        self._reason = message

    def in_layer(self, layer: str) -> LayerError:
        """Name *layer* in the message, as "extract layer `layer`: ...", unless one is named already."""
        if self.layer is None:
            self.layer = layer
            self.args = (f"extract layer `{layer}`: {self._reason}",)
        return self

    def __reduce__(self) -> tuple[Any, ...]:  # subclasses take other arguments: keep the state as it is
        return (_rebuild_layer_error, (type(self), self.args, dict(self.__dict__)))


def _rebuild_layer_error(cls: type[LayerError], args: tuple[Any, ...], state: dict[str, Any]) -> LayerError:
    err = Exception.__new__(cls)
    err.args = args
    err.__dict__.update(state)
    return err


class ImageError(NsprimError):
    """An image (a layout, an archive, a registry's answer) that cannot be used as given.

    ``blob`` names the blob or document (its digest, or its path), where known.
    """

    def __init__(self, message: str, *, blob: str | None = None) -> None:
        super().__init__(message)
        self.blob = blob
        self.path = blob

    def __reduce__(self) -> tuple[Any, ...]:  # subclasses take other arguments: keep the state as it is
        return (_rebuild_layer_error, (type(self), self.args, dict(self.__dict__)))


class BlobDigestError(ImageError):
    """A blob's content is not what its digest or size says: corrupt, truncated or tampered with."""


class ImageNotFoundError(ImageError, LookupError):
    """No image of that name (a tag in a layout, a reference in a store)."""


class ImageReferenceError(ImageError, ValueError):
    """Not an image reference (``registry/repository:tag@digest``): ``reference`` is the text,
    ``what`` the part that is wrong (``registry``, ``repository``, ``tag``, ``digest``)."""

    def __init__(self, message: str, *, reference: str = "", what: str | None = None) -> None:
        super().__init__(message)
        self.reference, self.what = reference, what


class RegistryError(ImageError):
    """A registry (the OCI distribution spec) refused or failed a request: ``registry`` and
    ``repository`` say where, ``digest`` which blob or manifest (or tag), ``status`` the HTTP status,
    ``code`` the first code of the registry's error body (``MANIFEST_UNKNOWN``...), where known."""

    def __init__(self, message: str, *, registry: str = "", repository: str | None = None,
                 digest: str | None = None, status: int | None = None, code: str | None = None) -> None:  # fmt: skip
        super().__init__(message, blob=digest)
        self.registry, self.repository, self.digest, self.status, self.code = registry, repository, digest, status, code


class RegistryAuthError(RegistryError):
    """The registry wants credentials that were not found, or refused those given (401, 403)."""


class RegistryNotFoundError(RegistryError, LookupError):
    """The registry has no such repository, manifest, tag or blob (404)."""


class RegistryUnavailableError(RegistryError):
    """The registry cannot be reached: no server there, a TLS failure, a connection lost for good."""


class RegistryDigestError(RegistryError, BlobDigestError):
    """What the registry sent is not what its digest or size says; nothing of it was kept."""


class CorruptLayerError(LayerError):
    """The tar cannot be read: not a tar (or of an unknown compression), truncated, or malformed."""


class LayerLimitError(LayerError):
    """A layer tar goes over one of its extraction limits (``nsprim.fs.layers.ExtractLimits``):
    ``limit`` is the name of the limit (a field of ``ExtractLimits``, such as ``"max_size"``),
    ``value`` what the tar needed and ``maximum`` the limit."""

    def __init__(
        self,
        message: str,
        *,
        limit: str,
        value: float,
        maximum: float,
        layer: str | None = None,
        entry: str | None = None,
    ) -> None:
        super().__init__(message, layer=layer, entry=entry)
        self.limit = limit
        self.value = value
        self.maximum = maximum


class UnsafeTarEntryError(LayerError):
    """A tar entry that would write outside the layer, that this format cannot hold, or that is refused here.

    ``entry`` is the entry's name as found in the tar.
    """

    def __init__(self, entry: str, reason: str) -> None:
        super().__init__(f"tar entry `{entry}`: {reason}", entry=entry)
        self.what = "tar entry"


UnsafeTarEntry = UnsafeTarEntryError
"""Deprecated alias of :class:`UnsafeTarEntryError`, kept for one release."""

# One module to the user (see the package): named, printed and pickled as nsprim.errors.X.
for _name in __all__:
    globals()[_name].__module__ = "nsprim.errors"
del _name
