"""Containers of the images of an image store: :func:`container_of` and :func:`from_image`.

The container's root is an overlay of the image's extracted layers (read-only,
shared with every other container and image that has them) under an upper
dir of its own: ephemeral (a tmpfs, gone when it ends) unless *upper* is
given.  Its settings are the image configuration's (see
:mod:`nsprim.image.runconfig`).  :meth:`Container.from_image
<nsprim.container.Container.from_image>` is :func:`from_image`.
"""

from __future__ import annotations

import os
from collections.abc import Sequence

from ..container import Container
from ..errors import ImageNotFoundError
from .model import Platform
from .progress import Progress
from .runconfig import configured
from .store import ImageStore, StoredImage

__all__ = ["container_of", "from_image"]


def container_of(
    store: ImageStore,
    image: StoredImage | str,
    command: Sequence[str] = (),
    *,
    entrypoint: Sequence[str] | None = None,
    upper: str | os.PathLike[str] | None = None,
) -> Container:
    """The container of *image* (of *store*) as its configuration says; *command* replaces its
    ``Cmd``, *entrypoint* its ``Entrypoint``; *upper* keeps its changes in that directory."""
    img = store.image(image) if isinstance(image, str) else image
    lower = store.lower_dirs(img)
    return configured(Container().image(lower, upper=upper), img.config, lower, command, entrypoint=entrypoint)


def from_image(
    ref: str,
    command: Sequence[str] = (),
    *,
    store: ImageStore | str | os.PathLike[str] | None = None,
    entrypoint: Sequence[str] | None = None,
    upper: str | os.PathLike[str] | None = None,
    pull: bool = True,
    tls_verify: bool = True,
    platform: Platform | None = None,
    progress: Progress | None = None,
) -> Container:
    """The container of the image *ref* of *store* (an :class:`ImageStore` or its root; default
    :func:`~nsprim.image.store.default_root`), pulled from its registry first if the store has not
    got it, unless *pull* is false (then :class:`~nsprim.errors.ImageNotFoundError`)."""
    images = store if isinstance(store, ImageStore) else ImageStore(store)
    try:
        image = images.image(ref)
    except ImageNotFoundError:
        if not pull:
            raise
        image = images.pull(ref, tls_verify=tls_verify, platform=platform, progress=progress)
    return container_of(images, image, command, entrypoint=entrypoint, upper=upper)
