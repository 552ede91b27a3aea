"""An image from a layout into a :class:`~nsprim.fs.layers.LayerStore`, and a container of it.

:func:`unpack` adds each layer to the store once, keyed by its diff ID (the
digest of the uncompressed tar): the compressed blob is verified against its
digest while it is read, the tar against the configuration's diff ID once
extracted; a layer the store has already (another image's) is not read at
all.  :func:`image_container` makes the :class:`~nsprim.container.Container`
the image's configuration describes: its layers under an overlay, its
entrypoint and command, environment, working directory and user.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, BinaryIO, cast

from ..errors import BlobDigestError, ImageError
from ..fs.layers import Image, LayerStore
from .compression import decompressed
from .layout import ImageLayout
from .model import ImageConfig, Manifest, MediaType, Platform
from .runconfig import configured

if TYPE_CHECKING:
    from ..container import Container
    from .model import Descriptor

__all__ = ["unpack", "add_layer", "checked_config", "image_container"]


def checked_config(layout: ImageLayout, manifest: Manifest, name: str, platform: Platform | None) -> ImageConfig:
    """The config of *manifest*, checked: for *platform* (default this host), and with one diff ID per layer."""
    config = layout.config(manifest)
    wanted = platform or Platform.host()
    if not config.platform.matches(wanted):
        raise ImageError(f"image `{name}` is for {config.platform}, not {wanted}", blob=manifest.config.digest)
    if len(config.rootfs.diff_ids) != len(manifest.layers):
        raise ImageError(
            f"image `{name}`: {len(manifest.layers)} layers but {len(config.rootfs.diff_ids)} diff IDs",
            blob=manifest.config.digest,
        )
    return config


def unpack(
    layout: ImageLayout, tag: str | None, store: LayerStore, name: str, platform: Platform | None = None
) -> tuple[Image, ImageConfig]:
    """Add the image *tag* of *layout* (for *platform*, default this host) to *store* as *name*."""
    manifest = layout.manifest(tag, platform)
    config = checked_config(layout, manifest, str(tag), platform)
    for blob, diff_id in zip(manifest.layers, config.rootfs.diff_ids, strict=True):
        if not store.has_layer(diff_id):
            add_layer(layout, blob, diff_id, store)
    return store.save_image(name, list(config.rootfs.diff_ids)), config


def add_layer(layout: ImageLayout, blob: Descriptor, diff_id: str, store: LayerStore, *, keep_tar: bool = True) -> None:
    """Extract the layer blob *blob* of *layout* into *store*: the blob verified against its digest
    as it is read, the tar against *diff_id* once extracted (a :class:`~nsprim.errors.BlobDigestError`
    if either is wrong, nothing kept); the tar is kept in the store too unless *keep_tar* is false."""
    compression = MediaType.LAYERS[blob.media_type]
    with layout.open_blob(blob.digest, blob.size) as raw:
        stream = cast(BinaryIO, raw)  # it has the read() these need
        with decompressed(stream, compression, f"layer `{blob.digest}`") as tar:
            layer = store.add_tar(tar, keep_tar=keep_tar)
        while raw.read(1 << 20):  # the compressed blob's end: its digest is checked there
            pass
        raw.verify()
    if layer.digest != diff_id:
        store.remove_layer(layer.digest)
        raise BlobDigestError(f"layer `{blob.digest}`: its tar is `{layer.digest}`, not `{diff_id}`", blob=blob.digest)


def image_container(
    store: LayerStore,
    image: Image | str,
    config: ImageConfig,
    command: Sequence[str] = (),
    *,
    entrypoint: Sequence[str] | None = None,
) -> Container:
    """The container of *image*: its layers (read-only, under an ephemeral upper) and *config*'s
    settings (see :func:`~nsprim.image.runconfig.configured`); *command* replaces the image's
    ``Cmd``, *entrypoint* its ``Entrypoint``."""
    lower = store.lower_dirs(image)
    from ..container import Container  # not needed by what only pulls and unpacks

    return configured(Container().image(lower), config, lower, command, entrypoint=entrypoint)
