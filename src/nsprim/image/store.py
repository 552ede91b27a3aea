"""A store of images: names → manifests → configurations → layers, each layer kept once.

Layout of an :class:`ImageStore` at ``ROOT`` (``$NSPRIM_STORE``, else ``/var/lib/nsprim/images``)::

    ROOT/oci/           an OCI image layout: every image's manifest, configuration and
                        compressed layer blobs; its index.json names the images
                        (by their canonical reference, ``127.0.0.1:5000/busybox:latest``)
    ROOT/layers/        a LayerStore: each layer extracted once, under its diff ID,
                        shared by every image that has it (its tar is not kept)
    ROOT/locks/         one lock file per layer being extracted
    ROOT/lock           shared by pulls and loads, exclusive for gc
    ROOT/tmp/           staging of loaded archives and commits
    ROOT/containers/    containers that keep their changes (:mod:`nsprim.image.containers`),
                        whose images gc keeps

A layer's bytes are kept once in each form a store needs: the compressed blob
(what a push or a save sends, whose digest the manifest names) and the
extracted directory (what an overlay stacks); the uncompressed tar between
them is not kept.  Two images that share a base layer share its blob and its
directory: :meth:`ImageStore.usage` measures what that saves.

An image appears under its name only once all its blobs are in the layout and
all its layers are extracted: a pull or a load works under a temporary name,
renamed at the end.  Pulls and loads hold the store's lock shared, so any
number run at once (two that extract the same layer take turns on its lock
file: the second finds it there); :meth:`ImageStore.gc` holds it exclusive,
and removes what no image names, leftovers of pulls that died included.
A layer no image names that a mounted overlay stacks (a running container of
a removed image: its root is an overlay in its own mount namespace, found in
``/proc/PID/mountinfo``) is kept until a later ``gc``; its blobs go.
"""

from __future__ import annotations

import contextlib
import datetime
import fcntl
import gzip
import os
import shutil
import uuid
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import BinaryIO, cast

from .._dataclass import dataclass
from ..errors import ConfigError, ImageError, ImageNotFoundError, ImageReferenceError, SpecError
from ..fs.layers import ExtractLimits, LayerStore, disk_usage
from ..fs.layers.store import private_root
from .containers import ContainerEntries
from .inuse import layers_in_use
from .layout import ImageLayout
from .model import ContainerSettings, Descriptor, History, ImageConfig, Index, Manifest, MediaType, Platform
from .progress import Progress
from .reference import ImageReference
from .unpack import add_layer, checked_config

__all__ = [
    "ImageStore",
    "StoredImage",
    "ImageUsage",
    "StoreUsage",
    "Collected",
    "DEFAULT_ROOT",
    "default_root",
    "load_name",
]

#: Where a store is when neither a root nor ``$NSPRIM_STORE`` is given.
DEFAULT_ROOT = Path("/var/lib/nsprim/images")
# names of images not yet complete (a pull or load under way, or one that died)
_INCOMPLETE = ".incomplete/"
_CHUNK = 1 << 20


def default_root() -> Path:
    """``$NSPRIM_STORE`` if set, else :data:`DEFAULT_ROOT`."""
    return Path(os.environ.get("NSPRIM_STORE") or DEFAULT_ROOT)


@dataclass(frozen=True)
class StoredImage:
    """An image of the store: its name, its manifest's descriptor, the manifest and the configuration."""

    name: str
    descriptor: Descriptor
    manifest: Manifest
    config: ImageConfig

    @property
    def digest(self) -> str:
        """The manifest's digest (what ``name@digest`` pulls again)."""
        return self.descriptor.digest

    @property
    def id(self) -> str:
        """The image ID, as docker and podman show it: the configuration's digest."""
        return self.manifest.config.digest

    @property
    def layers(self) -> tuple[str, ...]:
        """The layers' diff IDs, base first."""
        return self.config.rootfs.diff_ids


@dataclass(frozen=True)
class ImageUsage:
    """What one image takes: *size* bytes of layers (uncompressed), *shared* of them with another image."""

    image: StoredImage
    size: int
    shared: int

    @property
    def unique(self) -> int:
        """The bytes of layers no other image has."""
        return self.size - self.shared


@dataclass(frozen=True)
class StoreUsage:
    """What the images of a store take: each image's, and the layers' once each."""

    images: tuple[ImageUsage, ...]
    #: the bytes of every distinct layer, once
    stored: int

    @property
    def total(self) -> int:
        """The bytes the images would take if each had its own copy of its layers."""
        return sum(u.size for u in self.images)

    @property
    def saved(self) -> int:
        """The bytes sharing saves: :attr:`total` less :attr:`stored`."""
        return self.total - self.stored


@dataclass(frozen=True)
class Collected:
    """What :meth:`ImageStore.gc` removed: blobs, layers, names of incomplete images, and bytes on disk;
    and how many layers no image names it kept, because a mounted overlay stacks them."""

    blobs: int = 0
    layers: int = 0
    incomplete: int = 0
    bytes: int = 0
    in_use: int = 0


class ImageStore:
    """Images by name over an image layout (their blobs) and a layer store (their layers, extracted).

    *root* defaults to :func:`default_root`; it is made 0700 (layers keep
    setuid binaries and device nodes).  *limits* bound what each layer may
    extract to (default: :class:`~nsprim.fs.layers.ExtractLimits()`).
    """

    def __init__(self, root: str | os.PathLike[str] | None = None, *, limits: ExtractLimits | None = None) -> None:
        self.root = Path(os.path.abspath(root if root is not None else default_root()))
        private_root(self.root, "image store")
        for sub in ("locks", "tmp"):
            try:
                (self.root / sub).mkdir(mode=0o700, exist_ok=True)
            except OSError as exc:
                raise ImageError(f"open image store `{self.root}`: {exc.strerror}", blob=str(self.root)) from None
        self.layout = ImageLayout.create(self.root / "oci")
        self.layers = LayerStore(self.root / "layers", limits=limits)
        self.containers = ContainerEntries(self.root / "containers")

    def __repr__(self) -> str:
        return f"<ImageStore {self.root}>"

    # ---- getting images ------------------------------------------------------------------

    def pull(
        self,
        ref: ImageReference | str,
        *,
        platform: Platform | None = None,
        progress: Progress | None = None,
        tls_verify: bool = True,
        auth_file: str | os.PathLike[str] | None = None,
        ca_file: str | os.PathLike[str] | None = None,
    ) -> StoredImage:
        """Fetch *ref* from its registry (see :func:`nsprim.image.registry.pull` for the options),
        extract its layers the store has not, and name it ``str(ref)``.  Blobs and layers the store
        has already are neither fetched nor extracted again."""
        from .registry import pull

        ref = ImageReference.parse(ref) if isinstance(ref, str) else ref
        with self._lock(shared=True), self._incomplete() as staging:
            desc = pull(ref, self.layout, platform=platform, tag=staging, progress=progress, tls_verify=tls_verify,
                        auth_file=auth_file, ca_file=ca_file)  # fmt: skip
            return self._complete(desc, str(ref), platform)

    def load(
        self, source: str | os.PathLike[str], *, name: str | None = None, platform: Platform | None = None
    ) -> list[StoredImage]:
        """Add the images of *source*: an OCI image layout (a directory) or a docker archive (a file).

        Each is named *name* if given (then *source* must hold one image), else by its tag: a tag
        that is a reference (``busybox:1``, ``quay.io/x/y:2``) names it as such, a bare tag
        (``latest``, as ``skopeo copy ... oci:DIR:latest`` writes) is ``localhost/DIR:TAG``.
        """
        path = Path(source)
        with self._lock(shared=True), contextlib.ExitStack() as stack:
            if path.is_dir():
                src = ImageLayout(path)
            elif path.exists():
                from .archive import load_docker_archive

                staged = self.root / "tmp" / f"load-{uuid.uuid4().hex}"
                stack.callback(shutil.rmtree, staged, ignore_errors=True)
                src = ImageLayout.create(staged)
                load_docker_archive(path, src)
            else:
                raise ImageError(f"load `{path}`: No such file or directory", blob=str(path))
            tags = src.tags() or ([] if len(src.index().manifests) != 1 else [""])
            if not tags:
                raise ImageNotFoundError(f"load `{path}`: no image in it", blob=str(path))
            if name is not None and len(tags) != 1:
                raise ConfigError(f"load `{path}`: {len(tags)} images ({', '.join(tags)}), one name given", what="name")
            loaded = []
            for tag in tags:
                target = load_name(tag, path) if name is None else str(ImageReference.parse(name))
                desc = src.descriptor(tag or None, platform)
                with self._incomplete() as staging:
                    _copy_image(src, self.layout, desc)
                    self.layout.name_image(desc, staging)
                    loaded.append(self._complete(desc, target, platform))
            return loaded

    @contextlib.contextmanager
    def _incomplete(self) -> Iterator[str]:
        """A temporary name for an image being added, taken out of the index at the end."""
        staging = f"{_INCOMPLETE}{uuid.uuid4().hex}"
        try:
            yield staging
        finally:
            with contextlib.suppress(ImageNotFoundError):
                self.layout.remove_image(staging)

    def _complete(self, desc: Descriptor, name: str, platform: Platform | None) -> StoredImage:
        """Extract the layers of the manifest *desc* (its blobs in the layout) and name it *name*."""
        manifest = _manifest(self.layout, desc)
        config = checked_config(self.layout, manifest, name, platform)
        for blob, diff_id in zip(manifest.layers, config.rootfs.diff_ids, strict=True):
            with self._layer_lock(diff_id):  # another process extracting it: wait, then find it there
                if not self.layers.has_layer(diff_id):
                    add_layer(self.layout, blob, diff_id, self.layers, keep_tar=False)
        named = self.layout.name_image(desc, name)
        return StoredImage(name, named, manifest, config)

    def push(
        self,
        ref: str,
        dest: ImageReference | str | None = None,
        *,
        progress: Progress | None = None,
        tls_verify: bool = True,
        auth_file: str | os.PathLike[str] | None = None,
        ca_file: str | os.PathLike[str] | None = None,
    ) -> Descriptor:
        """Send the image *ref* names to *dest* (default: its own name), byte for byte (see
        :func:`nsprim.image.registry.push`); the pushed manifest's descriptor.  Holds the store's
        lock shared meanwhile, so that no ``gc`` removes a blob being sent."""
        from .registry import push

        image = self.image(ref)
        target = dest if dest is not None else image.name
        with self._lock(shared=True):
            return push(self.layout, image.name, target, tls_verify=tls_verify, auth_file=auth_file,
                        ca_file=ca_file, progress=progress)  # fmt: skip

    def save(self, refs: Sequence[str], dest: str | os.PathLike[str], *, format: str = "oci-dir") -> list[StoredImage]:
        """Write the images *refs* name to *dest*: an OCI image layout (``oci-dir``: created, or
        added to, each image named by its name in the store) or a docker archive
        (``docker-archive``: the file, written whole); :meth:`load` reads either back."""
        images = [self.image(ref) for ref in refs]
        if format == "oci-dir":
            layout = ImageLayout.create(dest)
            for image in images:
                _copy_image(self.layout, layout, image.descriptor)
                layout.name_image(image.descriptor, image.name)
        elif format == "docker-archive":
            from .archive import write_docker_archive

            write_docker_archive(self.layout, [(image.name, image.manifest) for image in images], dest)
        else:
            raise ConfigError(f'save: format "{format}" (oci-dir or docker-archive)', what="format")
        return images

    def commit(
        self,
        base: StoredImage | str,
        upper: str | os.PathLike[str],
        name: str,
        *,
        settings: ContainerSettings | None = None,
        comment: str = "",
    ) -> StoredImage:
        """A new image *name*: *base* with the overlay upper dir *upper* (a container's changes,
        as :meth:`Container.from_image(..., upper=DIR) <nsprim.container.Container.from_image>`
        keeps them) as a layer on top; its configuration *base*'s with *settings* in place of
        its ``config`` if given, and a history entry (*comment*).  The layer is kept as the others
        are: a gzip blob in the layout and a directory in the layer store."""
        from ..fs.layers import commit

        ref = ImageReference.parse(name)
        image = self.image(base) if isinstance(base, str) else base
        docker = image.manifest.media_type == MediaType.DOCKER_MANIFEST
        with self._lock(shared=True), self._incomplete() as staging:
            with contextlib.ExitStack() as stack:
                staged = self.root / "tmp" / f"commit-{uuid.uuid4().hex}"
                staged.mkdir()
                stack.callback(shutil.rmtree, staged, ignore_errors=True)
                diff_id = commit(upper, staged / "layer.tar").digest
                assert diff_id is not None
                with open(staged / "layer.tar", "rb") as tar, self.layout.blob_writer() as out:
                    with gzip.GzipFile(fileobj=cast(BinaryIO, out), mode="wb", mtime=0, compresslevel=6) as packed:
                        shutil.copyfileobj(tar, packed, _CHUNK)
                    blob = Descriptor(media_type=MediaType.DOCKER_LAYER_GZIP if docker else MediaType.OCI_LAYER_GZIP,
                                      digest=out.commit(), size=out.size)  # fmt: skip
                with self._layer_lock(diff_id):
                    if not self.layers.has_layer(diff_id):
                        self.layers.add_tar(staged / "layer.tar", keep_tar=False)
            now = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")
            config = image.config.replace(
                created=now,
                config=settings if settings is not None else image.config.config,
                rootfs=image.config.rootfs.replace(diff_ids=(*image.layers, diff_id)),
                history=(*image.config.history, History(created=now, created_by="nsprim commit", comment=comment)),
            )
            manifest = Manifest(
                schema_version=2,
                media_type=image.manifest.media_type or MediaType.OCI_MANIFEST,
                config=self.layout.write_blob(config.dumps(), image.manifest.config.media_type),
                layers=(*image.manifest.layers, blob),
            )
            desc = self.layout.write_blob(manifest.dumps(), manifest.media_type)
            self.layout.name_image(desc, staging)
            return self._complete(desc, str(ref), None)

    # ---- the images --------------------------------------------------------------------------

    def images(self) -> list[StoredImage]:
        """Every image of the store, by name."""
        found = []
        for desc in self.layout.index().manifests:
            if desc.ref_name and not desc.ref_name.startswith(_INCOMPLETE) and desc.media_type in MediaType.MANIFESTS:
                manifest = _manifest(self.layout, desc)
                found.append(StoredImage(desc.ref_name, desc, manifest, self.layout.config(manifest)))
        return sorted(found, key=lambda i: i.name)

    def image(self, ref: str) -> StoredImage:
        """The image named *ref*: its name as stored or as a reference (``busybox`` is
        ``docker.io/library/busybox:latest``), or a prefix of its ID (its configuration's digest)."""
        images = self.images()
        wanted = {ref}
        with contextlib.suppress(ImageReferenceError):
            wanted.add(str(ImageReference.parse(ref)))
        for image in images:
            if image.name in wanted:
                return image
        hexpart = ref.removeprefix("sha256:")
        if len(hexpart) >= 4 and all(c in "0123456789abcdef" for c in hexpart):
            ids = {i.id: i for i in images if i.id.removeprefix("sha256:").startswith(hexpart)}
            if len(ids) == 1:
                return next(iter(ids.values()))
            if len(ids) > 1:
                raise ImageNotFoundError(f"image `{ref}`: the ID of {len(ids)} images starts so", blob=ref)
        raise ImageNotFoundError(f"image `{ref}`: not in the store `{self.root}`", blob=ref)

    def image_of(self, desc: Descriptor, name: str) -> StoredImage:
        """The image of the manifest *desc* (in the store, named or not), called *name*."""
        manifest = _manifest(self.layout, desc)
        return StoredImage(name, desc, manifest, self.layout.config(manifest))

    def has(self, ref: str) -> bool:
        """Whether :meth:`image` finds *ref*."""
        try:
            self.image(ref)
        except ImageNotFoundError:
            return False
        return True

    def lower_dirs(self, image: StoredImage | str) -> list[Path]:
        """The image's extracted layers, top first (as an overlay stacks them)."""
        img = self.image(image) if isinstance(image, str) else image
        return [self.layers.layer(d).diff for d in reversed(img.layers)]

    def usage(self) -> StoreUsage:
        """Each image's size and the bytes it shares with others; every distinct layer once."""
        images = self.images()
        sizes = {d: self.layers.layer(d).size for img in images for d in set(img.layers)}
        users: dict[str, int] = {}
        for img in images:
            for d in set(img.layers):
                users[d] = users.get(d, 0) + 1
        usages = tuple(
            ImageUsage(
                img, sum(sizes[d] for d in set(img.layers)), sum(sizes[d] for d in set(img.layers) if users[d] > 1)
            )
            for img in images
        )
        return StoreUsage(usages, sum(sizes.values()))

    def disk_usage(self) -> int:
        """Bytes the whole store takes on disk (each inode once)."""
        return disk_usage(self.root)

    # ---- removing ----------------------------------------------------------------------------

    def remove(self, ref: str, *, collect: bool = True) -> StoredImage:
        """Take the image *ref* names out of the store; then, unless *collect* is false, :meth:`gc`."""
        image = self.image(ref)
        self.layout.remove_image(image.name)
        if collect:
            self.gc()
        return image

    def gc(self) -> Collected:
        """Remove every blob and layer no image names, and what died pulls and loads left.

        Waits for the pulls and loads under way to end, and holds them off meanwhile."""
        with self._lock(shared=False):
            incomplete = [d.ref_name for d in self.layout.index().manifests if d.ref_name.startswith(_INCOMPLETE)]
            for tag in incomplete:
                self.layout.remove_image(tag)
            blobs, layers = self._referenced()
            removed_blobs = removed_layers = freed = kept = 0
            in_use = layers_in_use(self.layers.root / "layers")
            for directory in sorted((self.layout.path / "blobs").iterdir()):
                for path in sorted(directory.iterdir()):
                    if path.name.startswith(".tmp-") or f"{directory.name}:{path.name}" not in blobs:
                        freed += path.lstat().st_blocks * 512
                        path.unlink()
                        removed_blobs += not path.name.startswith(".tmp-")
            for layer in self.layers.layers():
                if layer.digest not in layers and layer.digest in in_use:
                    kept += 1
                elif layer.digest not in layers:
                    size = disk_usage(layer.path)
                    try:
                        self.layers.remove_layer(layer.digest)
                    except ConfigError:  # an image of the layer store itself has it
                        continue
                    freed += size
                    removed_layers += 1
            for leftover in (*(self.root / "tmp").iterdir(), *(self.layers.root / "tmp").iterdir(),
                             *(self.root / "locks").iterdir()):  # fmt: skip
                freed += disk_usage(leftover)
                if leftover.is_dir() and not leftover.is_symlink():
                    shutil.rmtree(leftover, ignore_errors=True)
                else:
                    leftover.unlink(missing_ok=True)
            return Collected(removed_blobs, removed_layers, len(incomplete), freed, kept)

    def _referenced(self) -> tuple[set[str], set[str]]:
        """The blobs and the layers (diff IDs) the images of the index name."""
        blobs: set[str] = set()
        layers: set[str] = set()
        pending = [*self.layout.index().manifests, *(entry.descriptor for entry in self.containers.entries())]
        while pending:
            desc = pending.pop()
            if desc.digest in blobs or not self.layout.has_blob(desc.digest):
                continue
            blobs.add(desc.digest)
            if desc.media_type in MediaType.INDEXES:
                pending += _document(self.layout, desc, Index).manifests
            elif desc.media_type in MediaType.MANIFESTS:
                manifest = _manifest(self.layout, desc)
                blobs.add(manifest.config.digest)
                blobs.update(d.digest for d in manifest.layers)
                if self.layout.has_blob(manifest.config.digest):
                    layers.update(self.layout.config(manifest).rootfs.diff_ids)
        return blobs, layers

    # ---- locks ---------------------------------------------------------------------------------

    @contextlib.contextmanager
    def _lock(self, *, shared: bool) -> Iterator[None]:
        with _flock(self.root / "lock", fcntl.LOCK_SH if shared else fcntl.LOCK_EX):
            yield

    @contextlib.contextmanager
    def _layer_lock(self, diff_id: str) -> Iterator[None]:
        with _flock(self.root / "locks" / diff_id.replace(":", "-"), fcntl.LOCK_EX):
            yield


@contextlib.contextmanager
def _flock(path: Path, operation: int) -> Iterator[None]:
    try:
        fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC | os.O_NOFOLLOW, 0o600)
    except OSError as exc:
        raise ImageError(f"lock `{path}`: {exc.strerror}", blob=str(path)) from None
    try:
        fcntl.flock(fd, operation)
        yield
    finally:
        os.close(fd)


def _copy_image(src: ImageLayout, dst: ImageLayout, desc: Descriptor) -> None:
    """Copy the manifest *desc* of *src* and every blob it names into *dst*, verified as read."""
    manifest = _manifest(src, desc)
    for blob in (*manifest.layers, manifest.config, desc):
        if dst.has_blob(blob.digest):
            continue
        with src.open_blob(blob.digest, blob.size) as reader, dst.blob_writer() as out:
            while chunk := reader.read(_CHUNK):
                out.write(chunk)
            out.commit()


def _document(layout: ImageLayout, desc: Descriptor, kind: type[Index]) -> Index:
    try:
        return kind.loads(layout.read_blob(desc.digest, desc.size), source=desc.digest)
    except SpecError as exc:
        raise ImageError(f"index `{desc.digest}`: {exc}", blob=desc.digest) from None


def _manifest(layout: ImageLayout, desc: Descriptor) -> Manifest:
    try:
        return Manifest.loads(layout.read_blob(desc.digest, desc.size), source=desc.digest)
    except SpecError as exc:
        raise ImageError(f"manifest `{desc.digest}`: {exc}", blob=desc.digest) from None


def load_name(tag: str, source: Path) -> str:
    """The name :meth:`ImageStore.load` gives an image of *source* under *tag*: the tag if it is a
    reference, else ``localhost/<source's name>:<tag>``; an ImageReferenceError if neither is one."""
    if tag and ("/" in tag or ":" in tag) and not tag.startswith("sha256:"):
        return str(ImageReference.parse(tag))
    stem = source.name.lower().removesuffix(".tar")
    repository = "".join(c if c.isalnum() or c in "._-" else "-" for c in stem).strip("._-") or "image"
    if not tag or tag.startswith("sha256:"):  # an archive's image without a name is named by its digest
        tag = "latest"
    return str(ImageReference.parse(f"localhost/{repository}:{tag}"))
