"""Docker archives (``docker save``, ``podman save --format docker-archive``) into an image layout.

A docker archive is a tar of ``manifest.json`` (for each image: its
configuration's file, its tags, its layers' files, base first), the
configurations and the layers as uncompressed tars.  :func:`load_docker_archive`
copies each image into an :class:`~nsprim.image.ImageLayout` as an OCI image
under each of its tags: the layers are checked against the configuration's
diff IDs as they are copied (a mismatch is a
:class:`~nsprim.errors.BlobDigestError`), and only the files the manifest
names are read, never extracted: no path in the archive reaches the disk.
"""

from __future__ import annotations

import json
import os
import tarfile

from ..errors import BlobDigestError, ImageError, SpecError
from .layout import ImageLayout
from .model import ImageConfig, Manifest, MediaType

__all__ = ["load_docker_archive"]


def load_docker_archive(archive: str | os.PathLike[str], layout: ImageLayout) -> list[str]:
    """Copy every image of *archive* into *layout*; the tags it names them by (``name:tag``)."""
    path = os.fspath(archive)
    with _open_archive(path) as tar:
        entries = _manifest(tar, path)
        tags: list[str] = []
        for i, entry in enumerate(entries):
            where = f"manifest.json[{i}]"
            config_bytes = _member(tar, path, entry.get("Config"), f"{where}.Config")
            try:
                config = ImageConfig.loads(config_bytes, source=f"{path}: {where}.Config")
            except SpecError as exc:
                raise ImageError(f"docker archive `{path}`: {where}.Config: {exc}", blob=path) from None
            layer_files = entry.get("Layers")
            if not isinstance(layer_files, list) or len(layer_files) != len(config.rootfs.diff_ids):
                raise ImageError(
                    f"docker archive `{path}`: {where}.Layers: not one file per diff ID of its configuration", blob=path
                )
            layers = []
            for j, (name, diff_id) in enumerate(zip(layer_files, config.rootfs.diff_ids, strict=True)):
                f = _open(tar, path, name, f"{where}.Layers[{j}]")
                with f:
                    desc = layout.copy_blob(f, MediaType.OCI_LAYER)
                if desc.digest != diff_id:
                    raise BlobDigestError(
                        f"docker archive `{path}`: layer `{name}` is `{desc.digest}`, its diff ID `{diff_id}`",
                        blob=desc.digest,
                    )
                layers.append(desc)
            manifest = Manifest(
                schema_version=2,
                media_type=MediaType.OCI_MANIFEST,
                config=layout.write_blob(config_bytes, MediaType.OCI_CONFIG),
                layers=tuple(layers),
            )
            names = entry.get("RepoTags") or []
            if not isinstance(names, list) or not all(isinstance(n, str) for n in names):
                raise ImageError(f"docker archive `{path}`: {where}.RepoTags: not a list of names", blob=path)
            for name in names or [manifest.config.digest]:
                layout.add_image(manifest, name)
                tags.append(name)
        return tags


def _open_archive(path: str) -> tarfile.TarFile:
    try:
        return tarfile.open(path, "r:*")
    except (OSError, tarfile.TarError) as exc:
        raise ImageError(f"docker archive `{path}`: {exc}", blob=path) from None


def _manifest(tar: tarfile.TarFile, path: str) -> list[dict[str, object]]:
    data = _member(tar, path, "manifest.json", "manifest.json")
    try:
        entries = json.loads(data)
    except ValueError as exc:
        raise ImageError(f"docker archive `{path}`: manifest.json is not JSON ({exc})", blob=path) from None
    if not isinstance(entries, list) or not all(isinstance(e, dict) for e in entries):
        raise ImageError(f"docker archive `{path}`: manifest.json is not a list of images", blob=path)
    return entries


def _open(tar: tarfile.TarFile, path: str, name: object, field: str) -> tarfile.ExFileObject:
    if not isinstance(name, str):
        raise ImageError(f"docker archive `{path}`: {field}: not a file name", blob=path)
    try:
        f = tar.extractfile(name)  # read through the archive (its links resolved in it), never extracted
    except KeyError:
        f = None
    if f is None:
        raise ImageError(f"docker archive `{path}`: {field}: no file `{name}` in it", blob=path)
    return f  # type: ignore[return-value]


def _member(tar: tarfile.TarFile, path: str, name: object, field: str) -> bytes:
    with _open(tar, path, name, field) as f:
        return f.read()
