"""Image references, as docker and podman read them: ``[registry/]repository[:tag][@digest]``.

:meth:`ImageReference.parse` normalises as docker does: a first component that
has a ``.`` or a ``:`` or is ``localhost`` is a registry (``localhost:5000/x``),
otherwise the registry is ``docker.io``, where a one-component name is under
``library/`` (``busybox`` is ``docker.io/library/busybox:latest``); a reference
with neither tag nor digest means ``:latest``.  ``str()`` is the canonical form.
"""

from __future__ import annotations

import re

from .._dataclass import dataclass
from ..errors import ImageReferenceError

__all__ = ["ImageReference", "DOCKER_HUB"]

#: The registry of names without one.
DOCKER_HUB = "docker.io"
_HUB_ALIASES = frozenset({"docker.io", "index.docker.io", "registry-1.docker.io"})
_COMPONENT = re.compile(r"[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*")
_TAG = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}")
_DIGEST = re.compile(r"[a-z0-9]+(?:[.+_-][a-z0-9]+)*:[0-9a-fA-F]{32,}")
_KNOWN_DIGESTS = {"sha256": 64, "sha512": 128}
_LABEL = r"(?:[A-Za-z0-9]|[A-Za-z0-9][A-Za-z0-9-]*[A-Za-z0-9])"
_HOST = re.compile(rf"(?:{_LABEL}(?:\.{_LABEL})*|\[[0-9A-Fa-f:.]+\])(?::[0-9]{{1,5}})?")
_MAX_NAME = 255


@dataclass(frozen=True)
class ImageReference:
    """A registry, a repository in it, and a tag or a digest (or both: the digest is what is fetched)."""

    registry: str
    repository: str
    tag: str | None = None
    digest: str | None = None

    @classmethod
    def parse(cls, text: str) -> ImageReference:
        """The reference *text* names, normalised; :class:`~nsprim.errors.ImageReferenceError` naming the
        part that is wrong if it is not one."""
        if not isinstance(text, str) or not text:
            raise ImageReferenceError(f"image reference {text!r}: empty", reference=str(text), what="repository")
        name, _, digest = text.partition("@")
        if "@" in digest:
            raise ImageReferenceError(f"image reference `{text}`: more than one `@`", reference=text, what="digest")
        slash = name.rfind("/")
        colon = name.rfind(":")
        tag = None
        if colon > slash:
            name, tag = name[:colon], name[colon + 1 :]
        first, sep, rest = name.partition("/")
        if sep and (first == "localhost" or "." in first or ":" in first or first.startswith("[")):
            registry, repository = first, rest
        else:
            registry, repository = DOCKER_HUB, name
        if registry in _HUB_ALIASES:
            registry = DOCKER_HUB
            if "/" not in repository:
                repository = "library/" + repository
        ref = cls(registry, repository, tag, digest or None)
        ref._check(text, bool(digest) or "@" in text)
        if ref.tag is None and ref.digest is None:
            ref = cls(registry, repository, "latest", None)
        return ref

    def _check(self, text: str, has_digest: bool) -> None:
        def bad(what: str, why: str) -> ImageReferenceError:
            return ImageReferenceError(f"image reference `{text}`: {why}", reference=text, what=what)

        if not _HOST.fullmatch(self.registry):
            raise bad("registry", f"`{self.registry}` is not a registry host[:port]")
        components = self.repository.split("/")
        for c in components:
            if not _COMPONENT.fullmatch(c):
                why = "must be lowercase" if c.lower() != c and _COMPONENT.fullmatch(c.lower()) else "is not a name"
                raise bad("repository", f"repository `{self.repository}`: component `{c}` {why} (a-z 0-9 . _ -)")
        if len(f"{self.registry}/{self.repository}") > _MAX_NAME:
            raise bad("repository", f"the name is longer than {_MAX_NAME} characters")
        if self.tag is not None and not _TAG.fullmatch(self.tag):
            raise bad("tag", f"`{self.tag}` is not a tag (A-Z a-z 0-9 _ . -, at most 128, not starting with . or -)")
        if has_digest:
            digest = self.digest or ""
            algorithm, _, hexdigest = digest.partition(":")
            if not _DIGEST.fullmatch(digest):
                raise bad("digest", f"`{digest}` is not a digest (algorithm:hex)")
            if algorithm in _KNOWN_DIGESTS and len(hexdigest) != _KNOWN_DIGESTS[algorithm]:
                raise bad("digest", f"`{digest}`: a {algorithm} digest has {_KNOWN_DIGESTS[algorithm]} hex digits")
            if algorithm not in _KNOWN_DIGESTS:
                raise bad("digest", f"`{digest}`: only sha256 and sha512 digests are verified")
            if hexdigest != hexdigest.lower():
                raise bad("digest", f"`{digest}`: the hex digits must be lowercase")

    @property
    def name(self) -> str:
        """``registry/repository``."""
        return f"{self.registry}/{self.repository}"

    @property
    def reference(self) -> str:
        """What a registry is asked for: the digest if there is one, else the tag."""
        return self.digest or self.tag or "latest"

    def with_tag(self, tag: str) -> ImageReference:
        """The same repository, at *tag* (and no digest)."""
        ref = ImageReference(self.registry, self.repository, tag, None)
        ref._check(str(ref), False)
        return ref

    def with_digest(self, digest: str) -> ImageReference:
        """The same repository, at *digest* (the tag kept)."""
        ref = ImageReference(self.registry, self.repository, self.tag, digest)
        ref._check(str(ref), True)
        return ref

    def __str__(self) -> str:
        text = self.name
        if self.tag is not None:
            text += f":{self.tag}"
        if self.digest is not None:
            text += f"@{self.digest}"
        return text
