"""Image layers: OCI layer tars, whiteout conversion and a content-addressed store.

* :mod:`nsprim.fs.layers.tar`: :func:`commit` an overlay upper dir to an OCI
  layer tar, :func:`extract_layer` a tar into an overlay layer directory,
  :func:`apply_layer` a tar onto a plain tree, within :class:`ExtractLimits`.
* :mod:`nsprim.fs.layers.store`: :class:`LayerStore` of immutable layers named
  by the sha256 of their tar, :class:`Image` as an ordered list of layers,
  and :class:`ContainerRoot` (an image plus a fresh upper dir, mounted).
"""

from ...errors import UnsafeTarEntry as UnsafeTarEntry  # deprecated alias, kept for one release
from ...errors import UnsafeTarEntryError
from .digest import Digest, parse_digest
from .limits import ExtractLimits
from .store import ContainerRoot, Image, Layer, LayerStore, disk_usage
from .tar import LayerStats, apply_layer, commit, extract_layer

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
