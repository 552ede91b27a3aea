"""OCI image layouts on disk: ``oci-layout``, ``index.json`` and ``blobs/<algorithm>/<hex>``.

Every blob is checked against its digest (and its descriptor's size) as it is
read; a mismatch is a :class:`~nsprim.errors.BlobDigestError` naming the blob.
Blobs are written to a temporary file in the layout, synced and renamed into
place once their digest is known, and ``index.json`` is replaced whole: a
writer that dies leaves no half-written blob or index, only a temporary file
that :meth:`ImageLayout.create` and the next write ignore and
:meth:`ImageLayout.remove_leftovers` removes (a blob being fetched is kept as a
partial blob, :meth:`ImageLayout.partial_blob`, which the next fetch of it goes
on from).  Changes to
``index.json`` (:meth:`ImageLayout.add_image`, :meth:`ImageLayout.remove_image`)
hold an advisory lock on the layout's directory, so that two processes naming
images in one layout at once both get their name recorded.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import os
import secrets
from collections.abc import Iterator
from pathlib import Path
from typing import BinaryIO, TypeVar

from ..errors import BlobDigestError, ImageError, ImageNotFoundError, SpecError
from .model import Descriptor, ImageConfig, Index, Manifest, MediaType, Platform, parse_digest

__all__ = ["ImageLayout", "BlobWriter", "REF_NAME"]

#: The annotation that names an image in a layout's index (its tag).
REF_NAME = "org.opencontainers.image.ref.name"
_CHUNK = 1 << 20
D = TypeVar("D", Index, Manifest, ImageConfig)


class _Verifier:
    """A reader of a blob that checks, at its end, that the bytes are the digest's and the size's."""

    def __init__(self, f: BinaryIO, digest: str, size: int | None) -> None:
        self._f = f
        self._digest = digest
        self._size = size
        algorithm = digest.partition(":")[0]
        self._hash = hashlib.new(algorithm)
        self._read = 0

    def read(self, n: int = -1) -> bytes:
        data = self._f.read(n)
        self._hash.update(data)
        self._read += len(data)
        if self._size is not None and self._read > self._size:
            raise BlobDigestError(
                f"blob `{self._digest}`: more than the {self._size} bytes its descriptor says", blob=self._digest
            )
        if not data and (n != 0):
            self.verify()
        return data

    def verify(self) -> None:
        if self._size is not None and self._read != self._size:
            raise BlobDigestError(
                f"blob `{self._digest}`: {self._read} bytes, its descriptor says {self._size}", blob=self._digest
            )
        got = f"{self._digest.partition(':')[0]}:{self._hash.hexdigest()}"
        if got != self._digest:
            raise BlobDigestError(f"blob `{self._digest}`: its content is `{got}`", blob=self._digest)


class ImageLayout:
    """An image layout directory (the image spec's ``image-layout.md``)."""

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = Path(path)
        marker = self.path / "oci-layout"
        try:
            version = json.loads(marker.read_text()).get("imageLayoutVersion")
        except FileNotFoundError:
            raise ImageError(f"image layout `{self.path}`: no `oci-layout` file", blob=str(marker)) from None
        except (ValueError, AttributeError):
            message = f"image layout `{self.path}`: `oci-layout` is not a JSON object"
            raise ImageError(message, blob=str(marker)) from None
        if version != MediaType.OCI_LAYOUT_VERSION:
            raise ImageError(f"image layout `{self.path}`: version {version!r}, not 1.0.0", blob=str(marker))

    @classmethod
    def create(cls, path: str | os.PathLike[str]) -> ImageLayout:
        """An empty layout at *path* (an existing layout is opened as it is)."""
        root = Path(path)
        (root / "blobs/sha256").mkdir(parents=True, exist_ok=True)
        if not (root / "oci-layout").exists():
            _replace(root / "oci-layout", json.dumps({"imageLayoutVersion": MediaType.OCI_LAYOUT_VERSION}).encode())
        if not (root / "index.json").exists():
            _replace(root / "index.json", Index(schema_version=2, media_type=MediaType.OCI_INDEX, manifests=()).dumps())
        return cls(root)

    # ---- blobs ---------------------------------------------------------------------------

    def blob_path(self, digest: str) -> Path:
        """Where the blob of *digest* is (a checked digest: no path can come out of it)."""
        algorithm, _, hexdigest = parse_digest(digest).partition(":")
        return self.path / "blobs" / algorithm / hexdigest

    def has_blob(self, digest: str) -> bool:
        return self.blob_path(digest).is_file()

    @contextlib.contextmanager
    def open_blob(self, digest: str, size: int | None = None) -> Iterator[_Verifier]:
        """A reader of the blob that raises :class:`~nsprim.errors.BlobDigestError` at its end if the
        bytes are not the digest's (or not *size* of them).  Read it to the end."""
        path = self.blob_path(digest)
        try:
            f = path.open("rb")
        except FileNotFoundError:
            raise ImageError(f"blob `{digest}`: not in the layout `{self.path}`", blob=digest) from None
        with f:
            yield _Verifier(f, digest, size)

    def read_blob(self, digest: str, size: int | None = None) -> bytes:
        """The whole blob, verified."""
        with self.open_blob(digest, size) as r:
            parts = []
            while chunk := r.read(_CHUNK):
                parts.append(chunk)
            return b"".join(parts)

    def write_blob(self, data: bytes, media_type: str) -> Descriptor:
        """Store *data*; its descriptor.  A blob the layout has already is not written again."""
        digest = "sha256:" + hashlib.sha256(data).hexdigest()
        target = self.blob_path(digest)
        if not target.exists():
            _replace(target, data)
        return Descriptor(media_type=media_type, digest=digest, size=len(data))

    def copy_blob(self, src: BinaryIO, media_type: str) -> Descriptor:
        """Store what *src* reads to its end, hashed on the way; its descriptor."""
        with self.blob_writer() as out:
            while chunk := src.read(_CHUNK):
                out.write(chunk)
            return Descriptor(media_type=media_type, digest=out.commit(), size=out.size)

    @contextlib.contextmanager
    def blob_writer(self, algorithm: str = "sha256") -> Iterator[BlobWriter]:
        """A new blob, written into a temporary file in the layout and hashed as it goes: it
        becomes the blob of its digest when :meth:`BlobWriter.commit` is called, and is removed
        at the end of the block otherwise (an error, or a content that turned out wrong)."""
        directory = self.path / "blobs" / algorithm
        directory.mkdir(parents=True, exist_ok=True)
        temporary = directory / f".tmp-{secrets.token_hex(8)}"
        try:
            with temporary.open("xb") as f:
                fcntl.flock(f.fileno(), fcntl.LOCK_EX)  # a live writer's: not a leftover
                yield BlobWriter(self, f, temporary, algorithm)
        finally:
            temporary.unlink(missing_ok=True)

    @contextlib.contextmanager
    def partial_blob(self, digest: str) -> Iterator[BlobWriter]:
        """The blob of *digest* being fetched, resumable: ``blobs/ALG/.partial-HEX``, holding what an
        earlier writer that was killed had written (its :attr:`BlobWriter.size` and digest so far
        include it).  It becomes the blob when :meth:`BlobWriter.commit` is called and is removed
        at the end of the block otherwise.  Two writers of one blob (two processes pulling it)
        take turns: the second waits for the first, then finds the blob there (:meth:`has_blob`)
        or the first one's partial content to go on from."""
        algorithm, _, hexdigest = parse_digest(digest).partition(":")
        directory = self.path / "blobs" / algorithm
        directory.mkdir(parents=True, exist_ok=True)
        path = directory / f".partial-{hexdigest}"
        while True:
            f = path.open("a+b")
            try:
                fcntl.flock(f.fileno(), fcntl.LOCK_EX)
                try:
                    same = os.stat(path).st_ino == os.fstat(f.fileno()).st_ino
                except FileNotFoundError:  # the writer before this one committed or removed it
                    same = False
            except BaseException:
                f.close()
                raise
            if same:
                break
            f.close()
        with f:
            try:
                writer = BlobWriter(self, f, path, algorithm)
                f.seek(0)
                while chunk := f.read(_CHUNK):
                    writer.hash_existing(chunk)
                yield writer
            finally:
                if not writer.committed:
                    path.unlink(missing_ok=True)  # still holding the lock: nobody else's file

    def remove_leftovers(self) -> list[Path]:
        """Remove what writers that were killed left: temporary files and partial blobs that no
        live writer holds; the paths removed."""
        removed = []
        patterns = (".tmp-*", "blobs/*/.tmp-*", "blobs/*/.partial-*")
        for path in [p for pattern in patterns for p in self.path.glob(pattern)]:
            try:
                f = path.open("rb")
            except FileNotFoundError:
                continue
            with f:
                try:
                    fcntl.flock(f.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
                except BlockingIOError:
                    continue  # a writer at work
                try:
                    if os.stat(path).st_ino != os.fstat(f.fileno()).st_ino:
                        continue
                except FileNotFoundError:
                    continue
                path.unlink()
                removed.append(path)
        return removed

    # ---- documents -------------------------------------------------------------------------

    def index(self) -> Index:
        """``index.json``."""
        path = self.path / "index.json"
        try:
            return Index.loads(path.read_bytes(), source=str(path))
        except SpecError as exc:
            raise ImageError(f"`{path}`: {exc}", blob=str(path)) from None

    def tags(self) -> list[str]:
        """The images the index names (their ``ref.name``), in its order."""
        return [d.ref_name for d in self.index().manifests if d.ref_name]

    def descriptor(self, tag: str | None = None, platform: Platform | None = None) -> Descriptor:
        """The manifest's descriptor for *tag* (default: the only image) and *platform* (default: this host)."""
        entries = self.index().manifests
        if tag is not None:
            entries = tuple(d for d in entries if d.ref_name == tag)
            if not entries:
                raise ImageNotFoundError(f"image layout `{self.path}`: no image `{tag}`", blob=tag)
        elif len(entries) != 1:
            names = ", ".join(self.tags()) or "none"
            raise ImageNotFoundError(f"image layout `{self.path}`: {len(entries)} images, name one ({names})")
        desc = entries[0]
        for _depth in range(8):  # an index may name an index (a multi-platform image under a tag)
            if desc.media_type not in MediaType.INDEXES:
                return desc
            nested = self._document(desc, Index)
            try:
                desc = nested.for_platform(platform)
            except SpecError as exc:
                raise ImageError(f"image `{tag or desc.digest}`: {exc}", blob=desc.digest) from None
        raise ImageError(f"image `{tag}`: indexes nested too deep", blob=desc.digest)

    def manifest(self, tag: str | None = None, platform: Platform | None = None) -> Manifest:
        """The image's manifest (see :meth:`descriptor`), verified."""
        return self._document(self.descriptor(tag, platform), Manifest)

    def config(self, manifest: Manifest) -> ImageConfig:
        """The manifest's image configuration, verified."""
        return self._document(manifest.config, ImageConfig)

    def _document(self, desc: Descriptor, kind: type[D]) -> D:
        data = self.read_blob(desc.digest, desc.size)
        try:
            document = kind.loads(data, source=desc.digest)
            assert isinstance(document, kind)
            return document
        except SpecError as exc:
            raise ImageError(f"{kind.__name__.lower()} `{desc.digest}`: {exc}", blob=desc.digest) from None

    def add_image(self, manifest: Manifest, tag: str, platform: Platform | None = None) -> Descriptor:
        """Store *manifest* and name it *tag* in the index (replacing what had that name)."""
        desc = self.write_blob(manifest.dumps(), manifest.media_type or MediaType.OCI_MANIFEST)
        desc = desc.replace(annotations={REF_NAME: tag}, platform=platform)
        return self.name_image(desc, tag)

    def name_image(self, desc: Descriptor, tag: str) -> Descriptor:
        """Name the manifest or index *desc* (its blob already in the layout) *tag* in the index,
        replacing what had that name."""
        desc = desc.replace(annotations={**desc.annotations, REF_NAME: tag})
        with self._index_lock():
            index = self.index()
            kept = tuple(d for d in index.manifests if d.ref_name != tag)
            _replace(self.path / "index.json", index.replace(manifests=(*kept, desc)).dumps())
        return desc

    def remove_image(self, tag: str) -> Descriptor:
        """Take the name *tag* out of the index (its blobs stay); the descriptor it named."""
        with self._index_lock():
            index = self.index()
            named = [d for d in index.manifests if d.ref_name == tag]
            if not named:
                raise ImageNotFoundError(f"image layout `{self.path}`: no image `{tag}`", blob=tag)
            kept = tuple(d for d in index.manifests if d.ref_name != tag)
            _replace(self.path / "index.json", index.replace(manifests=kept).dumps())
        return named[0]

    @contextlib.contextmanager
    def _index_lock(self) -> Iterator[None]:
        fd = os.open(self.path, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            yield
        finally:
            os.close(fd)


class BlobWriter:
    """A blob being written by :meth:`ImageLayout.blob_writer` or :meth:`ImageLayout.partial_blob`:
    bytes, size and digest so far."""

    def __init__(self, layout: ImageLayout, out: BinaryIO, temporary: Path, algorithm: str) -> None:
        self._layout, self._out, self._temporary, self._algorithm = layout, out, temporary, algorithm
        self._hash = hashlib.new(algorithm)
        self.size = 0
        self.committed = False

    def hash_existing(self, data: bytes) -> None:
        """*data* is already in the file (a partial blob's): hashed and counted, not written."""
        self._hash.update(data)
        self.size += len(data)

    def write(self, data: bytes) -> None:
        self._hash.update(data)
        self._out.write(data)
        self.size += len(data)

    def restart(self) -> None:
        """Forget what was written: the blob starts again from its first byte."""
        self._out.seek(0)
        self._out.truncate()
        self._hash = hashlib.new(self._algorithm)
        self.size = 0

    @property
    def digest(self) -> str:
        """The digest of what was written so far."""
        return f"{self._algorithm}:{self._hash.hexdigest()}"

    def commit(self) -> str:
        """Sync what was written and make it the blob of its digest, which is returned."""
        self._out.flush()
        os.fsync(self._out.fileno())
        digest = self.digest
        os.replace(self._temporary, self._layout.blob_path(digest))
        self.committed = True
        return digest


def _replace(path: Path, data: bytes) -> None:
    """Write *data* as *path* whole: a temporary file beside it, synced, renamed over it."""
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_name(f".tmp-{path.name}-{secrets.token_hex(4)}")
    try:
        with temporary.open("xb") as f:
            fcntl.flock(f.fileno(), fcntl.LOCK_EX)  # a live writer's: not a leftover
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(temporary, path)
    except BaseException:
        temporary.unlink(missing_ok=True)
        raise
