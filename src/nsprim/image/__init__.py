"""Images: the OCI image specification's documents (:mod:`nsprim.image.model`) and image layouts on
disk (:mod:`nsprim.image.layout`), every blob verified against its digest as it is read; an image
unpacked into a layer store and run (:mod:`nsprim.image.unpack`); images kept by name, each layer
once (:mod:`nsprim.image.store`)."""

from __future__ import annotations

from .archive import load_docker_archive
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
from .store import ImageStore
from .unpack import image_container, unpack

__all__ = [
    "ImageLayout",
    "ImageStore",
    "load_docker_archive",
    "unpack",
    "image_container",
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
