"""Pulling an image from a registry into an image layout: :func:`pull`.

The manifest is asked for by tag or digest, accepting OCI and Docker v2
schema 2 manifests and indexes (manifest lists); an index is resolved to this
host's platform or the one asked for.  The manifest's bytes are kept exactly
as the registry sent them (their digest is the image's).  The config and the
layers are fetched concurrently, each hashed while it streams into its
partial blob in the layout (:meth:`~nsprim.image.layout.ImageLayout.partial_blob`)
and renamed into place only when its size and digest are right (a
:class:`~nsprim.errors.RegistryDigestError` otherwise, with nothing of it
kept); a blob the layout has already is not fetched.  A transfer cut off
midway is resumed with a ``Range`` request (or fetched whole again from a
registry that ignores ``Range``), the whole still verified; what a pull that
was killed had fetched of a blob is gone on from in the same way by the next
pull of it (and fetched whole if it turns out not to be the blob's start).
The image is named in the layout's index last, once all its blobs are there.

:class:`~nsprim.image.progress.Progress` hears of each blob: ``begin`` with
*what* ``"fetch"`` (or ``"have"`` for one already in the layout), ``advance``
as bytes arrive (each byte of the blob once, however often it is fetched
again), ``end``.
"""

from __future__ import annotations

import contextlib
import hashlib
import http.client
import os
import threading
from collections.abc import Iterator
from typing import TypeVar

from ...errors import RegistryDigestError, RegistryError, RegistryNotFoundError, RegistryUnavailableError, SpecError
from ..layout import BlobWriter, ImageLayout
from ..model import Descriptor, ImageConfig, Index, Manifest, MediaType, Platform
from ..progress import Progress
from ..reference import ImageReference
from .client import RegistryClient
from .jobs import Stopped, run_each

__all__ = ["pull", "fetch_manifest", "MANIFEST_TYPES"]

#: What a manifest request accepts, in order of preference.
MANIFEST_TYPES = (MediaType.OCI_INDEX, MediaType.OCI_MANIFEST, MediaType.DOCKER_LIST, MediaType.DOCKER_MANIFEST)
_MAX_MANIFEST = 4 << 20
_CHUNK = 1 << 20
_RESUMES = 5


_D = TypeVar("_D", Manifest, Index, ImageConfig)


def pull(
    ref: ImageReference | str,
    layout: ImageLayout,
    *,
    platform: Platform | None = None,
    tag: str | None = None,
    progress: Progress | None = None,
    tls_verify: bool = True,
    auth_file: str | os.PathLike[str] | None = None,
    ca_file: str | os.PathLike[str] | None = None,
    jobs: int = 4,
) -> Descriptor:
    """Fetch the image *ref* names into *layout* and name it *tag* (default: ``str(ref)``) in its index.

    *platform* picks from a multi-platform index (default: this host's) and, if
    given, must be the platform of a single manifest too.  *tls_verify*
    ``False`` allows an unverified certificate or plain HTTP for this pull;
    *ca_file* is a PEM bundle to trust besides the system's.  Credentials are
    read from *auth_file*, or from the files podman and docker read.  Returns
    the manifest's descriptor as named in the layout's index.
    """
    ref = ImageReference.parse(ref) if isinstance(ref, str) else ref
    scope = f"repository:{ref.repository}:pull"
    with RegistryClient(ref.registry, scopes=[scope], tls_verify=tls_verify, auth_file=auth_file,
                        ca_file=ca_file) as client:  # fmt: skip
        data, media_type, digest = fetch_manifest(client, ref.repository, ref.reference, ref.digest)
        chosen_platform = None
        if media_type in MediaType.INDEXES:
            index = _parse(Index, data, client, ref, digest)
            try:
                chosen = index.for_platform(platform)
            except SpecError as exc:
                raise RegistryNotFoundError(f"pull `{ref}`: {exc}", registry=ref.registry,
                                            repository=ref.repository, digest=digest) from None  # fmt: skip
            data, media_type, digest = fetch_manifest(client, ref.repository, chosen.digest, chosen.digest, chosen.size)
            chosen_platform = chosen.platform
        if media_type in MediaType.INDEXES:
            raise RegistryError(f"pull `{ref}`: index `{digest}` names another index for {platform or 'this host'}",
                                registry=ref.registry, repository=ref.repository, digest=digest)  # fmt: skip
        manifest = _parse(Manifest, data, client, ref, digest)
        fetcher = _Fetcher(client, ref.repository, layout, progress)
        fetcher.fetch(manifest.config)
        if platform is not None and chosen_platform is None:
            config = _parse(ImageConfig, layout.read_blob(manifest.config.digest), client, ref, manifest.config.digest)
            if not config.platform.matches(platform):
                raise RegistryNotFoundError(f"pull `{ref}`: the image is for {config.platform}, not {platform}",
                                            registry=ref.registry, repository=ref.repository,
                                            digest=digest)  # fmt: skip
            chosen_platform = config.platform
        fetcher.fetch_all(manifest.layers, jobs)
    with _blob_file(layout, digest, len(data), client.registry, ref.repository) as sink:
        sink.write(data)
    desc = Descriptor(media_type=media_type, digest=digest, size=len(data), platform=chosen_platform)
    return layout.name_image(desc, tag or str(ref))


def fetch_manifest(client: RegistryClient, repository: str, reference: str, expected: str | None = None,
                   size: int | None = None) -> tuple[bytes, str, str]:  # fmt: skip
    """The manifest or index *reference* (a tag or digest) names: its bytes, media type and digest,
    checked against *expected* (and *size*) or the registry's ``Docker-Content-Digest``."""
    what = f"manifest `{reference}`"
    with client.request("GET", f"/v2/{repository}/manifests/{reference}", repository=repository, what=what,
                        digest=expected, headers={"Accept": ", ".join(MANIFEST_TYPES)}) as resp:  # fmt: skip
        data = resp.read(_MAX_MANIFEST + 1)
        content_type = resp.header("Content-Type").partition(";")[0].strip()
        said = resp.header("Docker-Content-Digest")
    where = f"GET `{client.registry}/{repository}` {what}"
    if len(data) > _MAX_MANIFEST:
        raise RegistryError(f"{where}: larger than {_MAX_MANIFEST} bytes", registry=client.registry,
                            repository=repository, digest=expected)  # fmt: skip
    digest = expected or (said if said.startswith(("sha256:", "sha512:")) else "")
    digest = digest or "sha256:" + hashlib.sha256(data).hexdigest()
    algorithm = digest.partition(":")[0]
    got = f"{algorithm}:{hashlib.new(algorithm, data).hexdigest()}"
    if got != digest or (size is not None and len(data) != size):
        raise RegistryDigestError(f"{where}: the registry sent `{got}` ({len(data)} bytes), not `{digest}`"
                                  + (f" ({size} bytes)" if size is not None else ""), registry=client.registry,
                                  repository=repository, digest=digest)  # fmt: skip
    media_type = content_type
    if media_type not in MediaType.INDEXES | MediaType.MANIFESTS:
        # some registries answer application/json: the document's own mediaType then says
        import json

        with contextlib.suppress(ValueError, AttributeError):
            media_type = str(json.loads(data).get("mediaType") or content_type)
    if media_type not in MediaType.INDEXES | MediaType.MANIFESTS:
        raise RegistryError(f"{where}: media type `{media_type or 'none'}` is not an image manifest or index "
                            f"this implementation reads", registry=client.registry, repository=repository,
                            digest=digest)  # fmt: skip
    return data, media_type, digest


def _parse(kind: type[_D], data: bytes, client: RegistryClient, ref: ImageReference, digest: str) -> _D:
    try:
        return kind.loads(data, source=digest)
    except SpecError as exc:
        raise RegistryError(f"pull `{ref}` {kind.__name__.lower()} `{digest}`: {exc}", registry=client.registry,
                            repository=ref.repository, digest=digest) from None  # fmt: skip


@contextlib.contextmanager
def _blob_file(layout: ImageLayout, digest: str, size: int, registry: str, repository: str) -> Iterator[BlobWriter]:
    """A writer of the blob of *digest* in the layout: kept at the end of the block if what was
    written is *size* bytes of that digest, removed otherwise."""
    with layout.blob_writer(digest.partition(":")[0]) as out:
        yield out
        _check(out, digest, size, registry, repository)
        out.commit()


def _check(out: BlobWriter, digest: str, size: int, registry: str, repository: str) -> None:
    if out.size != size or out.digest != digest:
        raise RegistryDigestError(f"GET `{registry}/{repository}` blob `{digest}`: the registry sent `{out.digest}` "
                                  f"({out.size} bytes), not `{digest}` ({size} bytes)", registry=registry,
                                  repository=repository, digest=digest)  # fmt: skip


class _Reported:
    """How much of a blob progress has heard of: each byte once, however often it is fetched again."""

    def __init__(self, progress: Progress | None, digest: str) -> None:
        self.progress, self.digest, self.size = progress, digest, 0

    def reach(self, size: int) -> None:
        if size > self.size:
            if self.progress is not None:
                self.progress.advance(self.digest, size - self.size)
            self.size = size


class _Fetcher:
    """Blobs of one repository fetched into a layout, verified, resumed, some at once."""

    def __init__(self, client: RegistryClient, repository: str, layout: ImageLayout,
                 progress: Progress | None) -> None:  # fmt: skip
        self.client, self.repository, self.layout, self.progress = client, repository, layout, progress
        self._stop = threading.Event()

    def fetch_all(self, blobs: tuple[Descriptor, ...], jobs: int) -> None:
        wanted = list({d.digest: d for d in blobs}.values())
        run_each(self.fetch, wanted, jobs, self._stop, "nsprim-pull")

    def _have(self, desc: Descriptor) -> None:
        if self.progress is not None:
            self.progress.begin(desc.digest, desc.size, "have")
            self.progress.end(desc.digest)

    def fetch(self, desc: Descriptor) -> None:
        progress = self.progress
        if self._stop.is_set():
            raise Stopped
        if self.layout.has_blob(desc.digest):
            self._have(desc)
            return
        with self.layout.partial_blob(desc.digest) as sink:
            if self.layout.has_blob(desc.digest):  # another process fetched it while this one waited
                self._have(desc)
                return
            if progress is not None:
                progress.begin(desc.digest, desc.size, "fetch")
            try:
                reported = _Reported(progress, desc.digest)
                # what a pull that was killed left: gone on from, unless it cannot be this blob's start
                left = sink.size
                if left > desc.size or (left == desc.size and sink.digest != desc.digest):
                    sink.restart()
                    left = 0
                reported.reach(sink.size)
                if sink.size < desc.size:
                    self._stream(desc, sink, reported)
                if left and (sink.size != desc.size or sink.digest != desc.digest):
                    sink.restart()  # what was left was not this blob's: once more, whole
                    self._stream(desc, sink, reported)
                _check(sink, desc.digest, desc.size, self.client.registry, self.repository)
                sink.commit()
            finally:
                if progress is not None:
                    progress.end(desc.digest)

    def _failure(self, kind: type[RegistryError], desc: Descriptor, why: str) -> RegistryError:
        return kind(f"GET `{self.client.registry}/{self.repository}` blob `{desc.digest}`: {why}",
                    registry=self.client.registry, repository=self.repository, digest=desc.digest)  # fmt: skip

    def _stream(self, desc: Descriptor, sink: BlobWriter, reported: _Reported) -> None:
        """Fetch the rest of the blob into *sink*, resumed by ``Range`` when the connection is lost."""
        lost = 0
        what = f"blob `{desc.digest}`"
        path = f"/v2/{self.repository}/blobs/{desc.digest}"
        while True:
            got = sink.size
            headers = {"Range": f"bytes={got}-"} if got else {}
            resp = self.client.request("GET", path, repository=self.repository, what=what, digest=desc.digest,
                                       headers=headers, ok=(200, 206))  # fmt: skip
            try:
                if got and (resp.status != 206 or not resp.header("Content-Range").startswith(f"bytes {got}-")):
                    sink.restart()  # the registry sends the whole blob again (it ignores Range)
                while chunk := resp.read1(_CHUNK):
                    if self._stop.is_set():
                        raise Stopped
                    if sink.size + len(chunk) > desc.size:
                        raise self._failure(
                            RegistryDigestError, desc, f"more than the {desc.size} bytes of its descriptor"
                        )
                    sink.write(chunk)
                    reported.reach(sink.size)
                if sink.size >= desc.size:
                    resp.close()
                    return
                # http.client ends a body cut short without an error: the connection was lost all the same
                resp.discard()
                cause = "closed by the registry"
            except (OSError, http.client.HTTPException) as exc:
                resp.discard()
                cause = str(exc) or type(exc).__name__
            except BaseException:
                resp.discard()
                raise
            lost += 1
            if lost > _RESUMES:
                why = f"connection lost {lost} times, at {sink.size} of {desc.size} bytes ({cause})"
                raise self._failure(RegistryUnavailableError, desc, why) from None
