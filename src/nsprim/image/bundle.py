"""An OCI runtime bundle of an image, for ``nsprim-runtime`` (or runc, crun): :func:`image_bundle`.

``DIR/rootfs`` is the image's layers applied one on another, base first (a
private copy: whiteouts delete, opaque directories empty), as ``umoci
unpack`` makes it; ``DIR/config.json`` is what ``nsprim-runtime spec`` writes
with the image configuration's process: ``Entrypoint`` + ``Cmd`` (or the
command given), ``Env`` over the defaults, ``WorkingDir``, ``User`` resolved
in the image's ``/etc/passwd`` and ``/etc/group``, and ``StopSignal`` as the
``org.opencontainers.image.stopSignal`` annotation engines read.  The root is
writable: the copy is the bundle's own.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import BinaryIO, cast

from ..errors import ConfigError, ImageError
from ..fs.layers import apply_layer
from ..oci.generate import default_spec
from .compression import decompressed
from .model import MediaType
from .runconfig import parse_stop_signal, resolve_user
from .store import ImageStore, StoredImage

__all__ = ["image_bundle", "STOP_SIGNAL_ANNOTATION"]

#: The annotation a bundle's ``StopSignal`` is written as (containerd's and CRI-O's name for it).
STOP_SIGNAL_ANNOTATION = "org.opencontainers.image.stopSignal"


def image_bundle(
    store: ImageStore,
    image: StoredImage | str,
    dest: str | os.PathLike[str],
    command: Sequence[str] = (),
    *,
    entrypoint: Sequence[str] | None = None,
) -> Path:
    """Write the bundle of *image* at *dest* (a directory that does not exist, or is empty);
    *command* replaces the image's ``Cmd``, *entrypoint* its ``Entrypoint``.  On an error nothing
    of the bundle is left."""
    img = store.image(image) if isinstance(image, str) else image
    target = Path(dest)
    if target.exists() and (not target.is_dir() or any(target.iterdir())):
        raise ConfigError(f"bundle `{target}`: exists and is not an empty directory", what="dest")
    settings = img.config.config
    argv = settings.argv(command, entrypoint)
    if not argv:
        raise ImageError(f"image `{img.name}`: no Entrypoint or Cmd: give a command", blob=img.digest)
    created = not target.exists()
    rootfs = target / "rootfs"
    try:
        rootfs.mkdir(parents=True)
        for blob in img.manifest.layers:
            compression = MediaType.LAYERS[blob.media_type]
            # the tar read through once, into a file: extraction reads it twice (checks, then writes)
            with tempfile.TemporaryFile(dir=target) as plain:
                with (
                    store.layout.open_blob(blob.digest, blob.size) as raw,
                    decompressed(cast(BinaryIO, raw), compression, f"layer `{blob.digest}`") as tar,
                ):
                    shutil.copyfileobj(tar, plain, 1 << 20)
                    while raw.read(1 << 20):  # the compressed blob's end: its digest is checked there
                        pass
                plain.seek(0)
                apply_layer(plain, rootfs, preserve_special=True, label=blob.digest)
        user = resolve_user(settings.user, [rootfs])
        spec = default_spec(args=tuple(argv), terminal=False)
        assert spec.process is not None and spec.root is not None
        env = _variables(spec.process.env)
        if user.home:
            env["HOME"] = user.home
        env.update(_variables(settings.env))
        process = spec.process.replace(
            env=tuple(f"{k}={v}" for k, v in env.items()),
            cwd=settings.working_dir or "/",
            user=spec.process.user.replace(uid=user.uid, gid=user.gid, additional_gids=user.groups),
        )
        annotations = dict(spec.annotations)
        if settings.stop_signal:
            annotations[STOP_SIGNAL_ANNOTATION] = str(parse_stop_signal(settings.stop_signal))
        spec = spec.replace(process=process, root=spec.root.replace(readonly=False), annotations=annotations)
        spec.save(target / "config.json")
    except BaseException:
        if created:
            shutil.rmtree(target, ignore_errors=True)
        else:
            for child in target.iterdir():
                if child.is_dir() and not child.is_symlink():
                    shutil.rmtree(child, ignore_errors=True)
                else:
                    child.unlink()
        raise
    return target


def _variables(items: Sequence[str]) -> dict[str, str]:
    return {key: value for key, _, value in (item.partition("=") for item in items)}
