"""Pushing an image of an image layout to a registry: :func:`push`.

What is pushed is what the layout holds, byte for byte: the blobs (each
config and layer), then the manifests, each ``PUT`` with its own media type
and the exact bytes of its blob, so the image's digest in the registry is its
digest in the layout.  A multi-platform image (an index) goes with every
manifest it names, each pushed by digest, then the index under the tag.
Every blob is found in the layout before anything is sent (a missing one is
an :class:`~nsprim.errors.ImageError` naming it, and nothing is pushed).

A blob is sent as the distribution spec has it: a ``HEAD`` asks whether the
repository has it already (then it is not sent); from the repositories of
the same registry it may be in (*mount_from*, and the one the image was
pulled from, which its name in the layout says), a ``POST ?mount=…&from=…``
asks the registry to link it without its bytes; otherwise a ``POST``
opens an upload and a ``PUT ?digest=…`` sends it whole, or, above
*chunk_size* bytes, ``PATCH`` requests send it in chunks before the ``PUT``
closes it.  An upload whose connection is lost is made again, from a new
``POST``.  Blobs are sent *jobs* at a time.  The bytes sent are hashed on
the way: a layout blob that is not its digest is a
:class:`~nsprim.errors.BlobDigestError` naming it.

:class:`~nsprim.image.progress.Progress` hears of each blob: ``begin`` with
*what* ``"push"``, ``"exists"`` (the registry has it) or ``"mount"`` (linked
from another repository), ``advance`` as bytes are sent, ``end``.
"""

from __future__ import annotations

import hashlib
import io
import os
import threading
import urllib.parse
from collections.abc import Iterable
from typing import BinaryIO

from ..._dataclass import dataclass
from ...errors import (
    BlobDigestError,
    ConfigError,
    ImageError,
    ImageNotFoundError,
    ImageReferenceError,
    RegistryError,
    RegistryUnavailableError,
    SpecError,
)
from ..layout import ImageLayout
from ..model import Descriptor, Index, Manifest, MediaType
from ..progress import Progress
from ..reference import ImageReference
from .client import RegistryClient
from .jobs import Stopped, run_each

__all__ = ["push", "CHUNK_SIZE"]

#: Blobs larger than this are sent in chunks of this size (``PATCH``), smaller ones whole.
CHUNK_SIZE = 64 << 20
_NESTING = 4
_ATTEMPTS = 4  # uploads of a blob whose connection was lost
_UPLOAD_GONE = frozenset({"BLOB_UPLOAD_INVALID", "BLOB_UPLOAD_UNKNOWN"})


@dataclass(frozen=True)
class _Document:
    """A manifest or index to push: its descriptor and its bytes as the layout holds them."""

    desc: Descriptor
    data: bytes


def push(
    layout: ImageLayout,
    image: str | Descriptor,
    ref: ImageReference | str,
    *,
    tls_verify: bool = True,
    auth_file: str | os.PathLike[str] | None = None,
    ca_file: str | os.PathLike[str] | None = None,
    progress: Progress | None = None,
    jobs: int = 4,
    mount_from: Iterable[str] = (),
    chunk_size: int = CHUNK_SIZE,
) -> Descriptor:
    """Push the image *image* (a name in the layout's index, or the descriptor of a manifest or index
    in the layout) to *ref*, under its tag (or by digest when *ref* names only a digest).

    A *ref* with a digest must name the image's own digest.  *mount_from* names
    repositories of *ref*'s registry that may have the blobs already (the one
    *image*'s name in the layout says it was pulled from is tried too).
    *tls_verify*, *ca_file* and *auth_file* are as for :func:`~nsprim.image.registry.pull`.
    Returns the pushed manifest's (or index's) descriptor.
    """
    ref = ImageReference.parse(ref) if isinstance(ref, str) else ref
    if chunk_size <= 0:
        raise ConfigError(f"push `{ref}`: chunk_size {chunk_size} is not positive", what="chunk_size")
    top = _top(layout, image)
    if ref.digest is not None and ref.digest != top.digest:
        raise ConfigError(f"push `{ref}`: the image is `{top.digest}`, not the digest named", what="ref")
    documents: list[_Document] = []
    blobs: dict[str, Descriptor] = {}
    _collect(layout, top, documents, blobs, 0)
    missing = [d for d in blobs.values() if not layout.has_blob(d.digest)]
    if missing:
        raise ImageError(f"push `{ref}`: blob `{missing[0].digest}` is not in the layout `{layout.path}`"
                         + (f" (nor {len(missing) - 1} more)" if len(missing) > 1 else ""),
                         blob=missing[0].digest)  # fmt: skip
    sources = [s for s in dict.fromkeys([*mount_from, *_origin(top, ref)]) if s != ref.repository]
    scopes = [f"repository:{ref.repository}:pull,push", *(f"repository:{s}:pull" for s in sources)]
    with RegistryClient(ref.registry, scopes=scopes, tls_verify=tls_verify, auth_file=auth_file,
                        ca_file=ca_file) as client:  # fmt: skip
        uploader = _Uploader(client, ref.repository, layout, progress, sources, chunk_size)
        run_each(uploader.upload, list(blobs.values()), jobs, uploader.stop, "nsprim-push")
        *children, last = documents
        for doc in children:
            _put_manifest(client, ref.repository, doc, doc.desc.digest)
        _put_manifest(client, ref.repository, last, ref.tag or top.digest)
    return Descriptor(media_type=top.media_type, digest=top.digest, size=top.size, platform=top.platform)


def _origin(top: Descriptor, ref: ImageReference) -> list[str]:
    """The repository of *ref*'s registry the image came from, as its name in the layout says
    (a pull names an image after its reference)."""
    try:
        named = ImageReference.parse(top.ref_name) if top.ref_name else None
    except ImageReferenceError:
        return []
    return [named.repository] if named is not None and named.registry == ref.registry else []


def _top(layout: ImageLayout, image: str | Descriptor) -> Descriptor:
    if isinstance(image, Descriptor):
        return image
    named = [d for d in layout.index().manifests if d.ref_name == image]
    if not named:
        raise ImageNotFoundError(f"image layout `{layout.path}`: no image `{image}`", blob=image)
    return named[0]


def _collect(layout: ImageLayout, desc: Descriptor, documents: list[_Document], blobs: dict[str, Descriptor],
             depth: int) -> None:  # fmt: skip
    """*desc*'s manifests into *documents* (the ones an index names before it) and their blobs into *blobs*."""
    if not layout.has_blob(desc.digest):
        raise ImageError(f"push: manifest `{desc.digest}` is not in the layout `{layout.path}`", blob=desc.digest)
    data = layout.read_blob(desc.digest, desc.size)
    try:
        if desc.media_type in MediaType.INDEXES:
            if depth >= _NESTING:
                raise ImageError(f"push: index `{desc.digest}`: indexes nested too deep", blob=desc.digest)
            for child in Index.loads(data, source=desc.digest).manifests:
                _collect(layout, child, documents, blobs, depth + 1)
        elif desc.media_type in MediaType.MANIFESTS:
            manifest = Manifest.loads(data, source=desc.digest)
            for blob in (manifest.config, *manifest.layers):
                blobs.setdefault(blob.digest, blob)
        else:
            raise ImageError(f"push: `{desc.digest}` has media type `{desc.media_type or 'none'}`, not an image "
                             f"manifest or index this implementation pushes", blob=desc.digest)  # fmt: skip
    except SpecError as exc:
        raise ImageError(f"push: {desc.media_type} `{desc.digest}`: {exc}", blob=desc.digest) from None
    documents.append(_Document(desc, data))


def _put_manifest(client: RegistryClient, repository: str, doc: _Document, reference: str) -> None:
    what = f"manifest `{reference}`"
    with client.request("PUT", f"/v2/{repository}/manifests/{reference}", repository=repository, what=what,
                        digest=doc.desc.digest, headers={"Content-Type": doc.desc.media_type}, body=doc.data,
                        ok=(200, 201)) as resp:  # fmt: skip
        resp.read()
        said = resp.header("Docker-Content-Digest")
    if said and said != doc.desc.digest:
        raise RegistryError(f"PUT `{client.registry}/{repository}` {what}: the registry says it is `{said}`, "
                            f"not `{doc.desc.digest}`", registry=client.registry, repository=repository,
                            digest=doc.desc.digest)  # fmt: skip


def _with_query(location: str, **params: str) -> str:
    url = urllib.parse.urlsplit(location)
    query = "&".join(filter(None, (url.query, urllib.parse.urlencode(params))))
    return urllib.parse.urlunsplit(url._replace(query=query))


class _Sent:
    """What of a blob has been sent so far: its first *size* bytes, hashed."""

    def __init__(self, algorithm: str) -> None:
        self.algorithm = algorithm
        self.hash = hashlib.new(algorithm)
        self.size = 0


class _Body(io.RawIOBase):
    """*length* bytes of a layout blob from *start*, as a request body: hashed, and counted as progress,
    the first time each byte is read (a request sent again reads them again)."""

    def __init__(self, uploader: _Uploader, desc: Descriptor, f: BinaryIO, start: int, length: int) -> None:
        super().__init__()
        self._uploader, self._desc, self._f, self._start, self._length = uploader, desc, f, start, length
        self._pos = 0
        f.seek(start)

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def tell(self) -> int:
        return self._pos

    def seek(self, offset: int, whence: int = os.SEEK_SET) -> int:
        if whence != os.SEEK_SET or not 0 <= offset <= self._length:
            raise OSError(f"seek to {offset} (whence {whence}) in a body of {self._length} bytes")
        self._pos = offset
        self._f.seek(self._start + offset)
        return offset

    def read(self, n: int = -1) -> bytes:
        if self._uploader.stop.is_set():
            raise Stopped
        left = self._length - self._pos
        data = self._f.read(left if n < 0 else min(n, left))
        self._uploader.sent(self._desc, self._start + self._pos, data)
        self._pos += len(data)
        return data


class _Uploader:
    """Blobs of a layout sent to one repository, some at once."""

    def __init__(self, client: RegistryClient, repository: str, layout: ImageLayout, progress: Progress | None,
                 mount_from: list[str], chunk_size: int) -> None:  # fmt: skip
        self.client, self.repository, self.layout, self.progress = client, repository, layout, progress
        self.mount_from, self.chunk_size = mount_from, chunk_size
        self.stop = threading.Event()
        self._sent: dict[str, _Sent] = {}
        self._lock = threading.Lock()

    def sent(self, desc: Descriptor, offset: int, data: bytes) -> None:
        """*data*, at *offset* of *desc*, is being sent: what is new of it is hashed and reported."""
        with self._lock:
            sent = self._sent[desc.digest]
            new = data[max(0, sent.size - offset) :] if offset + len(data) > sent.size else b""
            sent.hash.update(new)
            sent.size += len(new)
        if new and self.progress is not None:
            self.progress.advance(desc.digest, len(new))

    def upload(self, desc: Descriptor) -> None:
        if self.stop.is_set():
            raise Stopped
        what = "exists" if self._exists(desc) else None
        location = None
        if what is None:
            location, mounted = self._mount(desc)
            what = "mount" if mounted else "push"
        progress = self.progress
        if progress is not None:
            progress.begin(desc.digest, desc.size, what)
        try:
            if what == "push":
                self._send_again_if_lost(desc, location)
        finally:
            if progress is not None:
                progress.end(desc.digest)

    def _blob_path(self, desc: Descriptor) -> str:
        return f"/v2/{self.repository}/blobs/{desc.digest}"

    def _exists(self, desc: Descriptor) -> bool:
        with self.client.request("HEAD", self._blob_path(desc), repository=self.repository,
                                 what=f"blob `{desc.digest}`", digest=desc.digest, ok=(200, 404)) as resp:  # fmt: skip
            resp.read()
        return resp.status == 200

    def _mount(self, desc: Descriptor) -> tuple[str | None, bool]:
        """Ask for *desc* to be linked from another repository: (an upload's location if none could, mounted)."""
        location = None
        for source in self.mount_from:
            query = urllib.parse.urlencode({"mount": desc.digest, "from": source})
            with self.client.request("POST", f"/v2/{self.repository}/blobs/uploads/?{query}",
                                     repository=self.repository, what=f"blob `{desc.digest}` from `{source}`",
                                     digest=desc.digest, ok=(201, 202)) as resp:  # fmt: skip
                resp.read()
            if resp.status == 201:
                return None, True
            location = resp.header("Location") or None  # not there: the registry opened an upload instead
        return location, False

    def _request(self, method: str, location: str, desc: Descriptor, body: _Body | None, ok: tuple[int, ...],
                 headers: dict[str, str]) -> str:  # fmt: skip
        """*method* on the upload at *location*; where the upload goes on (its next ``Location``)."""
        what = f"blob `{desc.digest}`"
        try:
            with self.client.request(method, location, repository=self.repository, what=what, digest=desc.digest,
                                     headers=headers, body=body, ok=ok) as resp:  # fmt: skip
                resp.read()
        except RegistryError:
            self._check_content(desc)  # a blob of the layout that is not its digest says more
            raise
        return resp.header("Location") or location

    def _send_again_if_lost(self, desc: Descriptor, location: str | None) -> None:
        for attempt in range(_ATTEMPTS):
            try:
                self._send(desc, location)
                return
            except RegistryError as exc:
                # lost, or sent again on a new connection to an upload the registry gave up with the old one
                lost = isinstance(exc, RegistryUnavailableError) or exc.code in _UPLOAD_GONE
                if not lost or attempt + 1 == _ATTEMPTS or self.stop.is_set():
                    raise
            location = None  # a new upload: what the registry kept of the one cut off is not known

    def _send(self, desc: Descriptor, location: str | None) -> None:
        with self._lock:
            self._sent.setdefault(desc.digest, _Sent(desc.digest.partition(":")[0]))
        if location is None:
            with self.client.request("POST", f"/v2/{self.repository}/blobs/uploads/", repository=self.repository,
                                     what=f"blob `{desc.digest}`", digest=desc.digest, ok=(202,)) as resp:  # fmt: skip
                resp.read()
            location = resp.header("Location")
            if not location:
                raise RegistryError(f"POST `{self.client.registry}/{self.repository}` blob `{desc.digest}`: "
                                    "no Location for the upload", registry=self.client.registry,
                                    repository=self.repository, digest=desc.digest)  # fmt: skip
        octets = {"Content-Type": "application/octet-stream"}
        with self.layout.blob_path(desc.digest).open("rb") as f:
            size = os.fstat(f.fileno()).st_size
            if size != desc.size:
                raise BlobDigestError(f"push: blob `{desc.digest}` of the layout `{self.layout.path}` is {size} "
                                      f"bytes, its descriptor says {desc.size}", blob=desc.digest)  # fmt: skip
            if desc.size <= self.chunk_size:
                body = _Body(self, desc, f, 0, desc.size)
                headers = {**octets, "Content-Length": str(desc.size)}
                self._request("PUT", _with_query(location, digest=desc.digest), desc, body, (201,), headers)
            else:
                for start in range(0, desc.size, self.chunk_size):
                    length = min(self.chunk_size, desc.size - start)
                    body = _Body(self, desc, f, start, length)
                    headers = {**octets, "Content-Length": str(length),
                               "Content-Range": f"{start}-{start + length - 1}"}  # fmt: skip
                    location = self._request("PATCH", location, desc, body, (202,), headers)
                self._request("PUT", _with_query(location, digest=desc.digest), desc, None, (201,), {})
        self._check_content(desc)

    def _check_content(self, desc: Descriptor) -> None:
        with self._lock:
            sent = self._sent[desc.digest]
            done, got = sent.size, f"{sent.algorithm}:{sent.hash.hexdigest()}"
        if done >= desc.size and (done != desc.size or got != desc.digest):
            raise BlobDigestError(f"push: blob `{desc.digest}` of the layout `{self.layout.path}` is `{got}` "
                                  f"({done} bytes), not its digest", blob=desc.digest)  # fmt: skip
