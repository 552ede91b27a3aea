"""Docker archives (``docker save``, ``podman save --format docker-archive``) into an image layout, and out.

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

import hashlib
import io
import json
import os
import secrets
import tarfile
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import BinaryIO, cast

from ..errors import BlobDigestError, ImageError, SpecError
from .compression import decompressed
from .layout import ImageLayout
from .model import Descriptor, ImageConfig, Manifest, MediaType

__all__ = ["load_docker_archive", "write_docker_archive"]


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


def write_docker_archive(
    layout: ImageLayout, images: Sequence[tuple[str, Manifest]], path: str | os.PathLike[str]
) -> None:
    """Write the images (a name, the manifest of one in *layout*) as a docker archive at *path*,
    as ``docker load`` and ``podman load`` read it: each configuration as it is in the layout (the
    image ID is kept), each layer uncompressed and checked against its diff ID.  The archive is
    written beside *path* and renamed over it once whole."""
    target = Path(path)
    temporary = target.with_name(f".tmp-{target.name}-{secrets.token_hex(4)}")
    try:
        with tarfile.open(temporary, "w", format=tarfile.PAX_FORMAT) as tar:
            entries: list[dict[str, object]] = []
            written: set[str] = set()
            for name, manifest in images:
                config_bytes = layout.read_blob(manifest.config.digest, manifest.config.size)
                config = ImageConfig.loads(config_bytes, source=manifest.config.digest)
                config_name = manifest.config.digest.partition(":")[2] + ".json"
                if config_name not in written:
                    _add_bytes(tar, config_name, config_bytes)
                    written.add(config_name)
                files = []
                for blob, diff_id in zip(manifest.layers, config.rootfs.diff_ids, strict=True):
                    file = f"{diff_id.partition(':')[2]}/layer.tar"
                    if file not in written:
                        _add_layer(tar, layout, blob, diff_id, file)
                        written.add(file)
                    files.append(file)
                entries.append({"Config": config_name, "RepoTags": [_short_name(name)], "Layers": files})
            _add_bytes(tar, "manifest.json", json.dumps(entries).encode())
        os.replace(temporary, target)
    except BaseException:
        temporary.unlink(missing_ok=True)
        raise


def _short_name(name: str) -> str:
    """*name* as docker writes it: ``docker.io/library/busybox:1`` is ``busybox:1``."""
    for prefix in ("docker.io/library/", "docker.io/"):
        if name.startswith(prefix):
            return name[len(prefix) :]
    return name


def _add_bytes(tar: tarfile.TarFile, name: str, data: bytes) -> None:
    info = tarfile.TarInfo(name)
    info.size, info.mode, info.mtime = len(data), 0o644, 0
    tar.addfile(info, io.BytesIO(data))


def _add_layer(tar: tarfile.TarFile, layout: ImageLayout, blob: Descriptor, diff_id: str, file: str) -> None:
    """The layer *blob*, uncompressed into a temporary file (its size goes first in the archive) and
    checked against *diff_id*, as *file*."""
    compression = MediaType.LAYERS.get(blob.media_type)
    if compression is None:
        message = f"layer `{blob.digest}`: a {blob.media_type} layer is not written to archives"
        raise ImageError(message, blob=blob.digest)
    with layout.open_blob(blob.digest, blob.size) as raw, tempfile.TemporaryFile() as plain:
        digest = hashlib.sha256()
        with decompressed(cast(BinaryIO, raw), compression, f"layer `{blob.digest}`") as source:
            while chunk := source.read(1 << 20):
                digest.update(chunk)
                plain.write(chunk)
        while raw.read(1 << 20):  # the compressed blob's end: its digest is checked there
            pass
        if f"sha256:{digest.hexdigest()}" != diff_id:
            raise BlobDigestError(f"layer `{blob.digest}`: its tar is not its diff ID `{diff_id}`", blob=blob.digest)
        info = tarfile.TarInfo(file)
        info.size, info.mode, info.mtime = plain.tell(), 0o644, 0
        plain.seek(0)
        tar.addfile(info, plain)
