"""Image layers: OCI layer tars, whiteout conversion and a content-addressed store.

* :mod:`nsprim.fs.layers.commit`: :func:`commit` an overlay upper dir to an
  OCI layer tar.
* :mod:`nsprim.fs.layers.extract`: :func:`extract_layer` a tar into an overlay
  layer directory, :func:`apply_layer` a tar onto a plain tree, within
  :class:`ExtractLimits`.
* :mod:`nsprim.fs.layers.store`: :class:`LayerStore` of immutable layers named
  by the sha256 of their tar, :class:`Image` as an ordered list of layers,
  and :class:`ContainerRoot` (an image plus a fresh upper dir, mounted).
"""

from ...errors import UnsafeTarEntry as UnsafeTarEntry  # deprecated alias, kept for one release
from ...errors import UnsafeTarEntryError
from .commit import commit
from .digest import Digest, parse_digest
from .extract import apply_layer, extract_layer
from .limits import ExtractLimits
from .members import LayerStats
from .store import ContainerRoot, Image, Layer, LayerStore, disk_usage

__all__ = [
    "Digest",
    "parse_digest",
    "LayerStats",
    "ExtractLimits",
    "UnsafeTarEntryError",
    "commit",
    "extract_layer",
    "apply_layer",
    "Layer",
    "Image",
    "LayerStore",
    "ContainerRoot",
    "disk_usage",
]
