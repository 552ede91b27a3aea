"""Images: the OCI image specification's documents (:mod:`nsprim.image.model`) and image layouts on
disk (:mod:`nsprim.image.layout`), every blob verified against its digest as it is read."""

from __future__ import annotations

from .layout import ImageLayout
from .model import (
    ContainerSettings,
    Descriptor,
    History,
    ImageConfig,
    ImageRootFS,
    Index,
    Manifest,
    MediaType,
    Platform,
)

__all__ = [
    "ImageLayout",
    "ContainerSettings",
    "Descriptor",
    "History",
    "ImageConfig",
    "Index",
    "Manifest",
    "MediaType",
    "Platform",
    "ImageRootFS",
]
