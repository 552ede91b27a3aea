"""The OCI image specification (and Docker's v2 schema 2) as typed values.

An image is a tree of content-addressed JSON documents and blobs: an
:class:`Index` (a multi-platform image, or an image layout's ``index.json``)
lists :class:`Manifest` descriptors by :class:`Platform`; a manifest names its
:class:`ImageConfig` and its layers, each a :class:`Descriptor` (media type,
``sha256:`` digest, size).  Docker's manifests and manifest lists have the
same shape under other media types, and are read by the same classes.

Documents are loaded with :meth:`Index.loads` and its kin, with errors that
name the field (:class:`~nsprim.errors.SpecError`: ``manifests[0].digest:
missing``); keys the model does not know are kept and written back.
"""

from __future__ import annotations

import platform as _platform
import re
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, ClassVar

from ..errors import SpecError
from ..oci._codec import JSON, Model, decode, encode, spec_field

if TYPE_CHECKING:
    from typing_extensions import Self

__all__ = [
    "MediaType",
    "Platform",
    "Descriptor",
    "Manifest",
    "Index",
    "ImageConfig",
    "ContainerSettings",
    "ImageRootFS",
    "History",
    "parse_digest",
]


class MediaType:
    """The media types of the image and distribution specs, and Docker's."""

    OCI_INDEX = "application/vnd.oci.image.index.v1+json"
    OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
    OCI_CONFIG = "application/vnd.oci.image.config.v1+json"
    OCI_LAYER = "application/vnd.oci.image.layer.v1.tar"
    OCI_LAYER_GZIP = "application/vnd.oci.image.layer.v1.tar+gzip"
    OCI_LAYER_ZSTD = "application/vnd.oci.image.layer.v1.tar+zstd"
    OCI_LAYOUT_VERSION = "1.0.0"
    DOCKER_LIST = "application/vnd.docker.distribution.manifest.list.v2+json"
    DOCKER_MANIFEST = "application/vnd.docker.distribution.manifest.v2+json"
    DOCKER_CONFIG = "application/vnd.docker.container.image.v1+json"
    DOCKER_LAYER_GZIP = "application/vnd.docker.image.rootfs.diff.tar.gzip"

    INDEXES = frozenset({OCI_INDEX, DOCKER_LIST})
    MANIFESTS = frozenset({OCI_MANIFEST, DOCKER_MANIFEST})
    CONFIGS = frozenset({OCI_CONFIG, DOCKER_CONFIG})
    #: layer media type -> its compression ("" for none)
    LAYERS: ClassVar[Mapping[str, str]] = {
        OCI_LAYER: "",
        OCI_LAYER_GZIP: "gzip",
        OCI_LAYER_ZSTD: "zstd",
        DOCKER_LAYER_GZIP: "gzip",
    }


_DIGEST = re.compile(r"sha256:[0-9a-f]{64}|sha512:[0-9a-f]{128}")


def parse_digest(text: object, field: str = "digest") -> str:
    """*text* if it is a digest this implementation verifies (``sha256:`` or ``sha512:``, lowercase hex)."""
    if not isinstance(text, str) or not _DIGEST.fullmatch(text):
        raise SpecError(f'{field}: "{text}" is not a sha256 or sha512 digest', field=field)
    return text


# Go's GOARCH names, by what Python's platform module says
_ARCHITECTURES = {
    "x86_64": "amd64",
    "amd64": "amd64",
    "aarch64": "arm64",
    "arm64": "arm64",
    "i686": "386",
    "i386": "386",
    "armv7l": "arm",
    "ppc64le": "ppc64le",
    "s390x": "s390x",
    "riscv64": "riscv64",
}


class Platform(Model):
    """What a manifest runs on: ``architecture`` and ``os`` as Go names them (``amd64``, ``linux``)."""

    architecture: str = spec_field(required=True)
    os: str = spec_field(required=True)
    os_version: str = spec_field(default="", key="os.version")
    os_features: tuple[str, ...] = spec_field(default=(), key="os.features")
    variant: str = ""
    extra: Mapping[str, JSON] = spec_field(factory=dict)

    @classmethod
    def host(cls) -> Platform:
        """This machine's platform (``linux/arm64/v8`` and the like)."""
        machine = _platform.machine()
        arch = _ARCHITECTURES.get(machine, machine)
        return cls(architecture=arch, os="linux", variant="v8" if arch == "arm64" else "")

    @classmethod
    def parse(cls, text: str) -> Platform:
        """From ``os/arch[/variant]``, as ``--platform`` takes it."""
        parts = text.split("/")
        if len(parts) not in (2, 3) or not all(parts):
            raise SpecError(f'platform "{text}": expected os/architecture[/variant]', field="platform")
        return cls(os=parts[0], architecture=parts[1], variant=parts[2] if len(parts) == 3 else "")

    def matches(self, wanted: Platform) -> bool:
        """Whether an image for this platform runs on *wanted* (a missing variant matches any)."""
        if (self.os, self.architecture) != (wanted.os, wanted.architecture):
            return False
        return not self.variant or not wanted.variant or self.variant == wanted.variant

    def __str__(self) -> str:
        return "/".join(p for p in (self.os, self.architecture, self.variant) if p)


class Descriptor(Model):
    """A reference to content: its media type, digest and size (and, in an index, its platform)."""

    media_type: str = spec_field(required=True)
    digest: str = spec_field(required=True)
    size: int = spec_field(required=True, kind="i64")
    urls: tuple[str, ...] = ()
    annotations: Mapping[str, str] = spec_field(factory=dict)
    platform: Platform | None = None
    artifact_type: str = ""
    extra: Mapping[str, JSON] = spec_field(factory=dict)

    def check(self, field: str) -> Descriptor:
        """The descriptor, if its digest and size are ones to fetch; :class:`SpecError` naming *field* if not."""
        parse_digest(self.digest, f"{field}.digest")
        if self.size < 0:
            raise SpecError(f"{field}.size: {self.size} is negative", field=f"{field}.size")
        return self

    @property
    def ref_name(self) -> str:
        """The ``org.opencontainers.image.ref.name`` annotation (an image layout's tag), or ``""``."""
        return self.annotations.get("org.opencontainers.image.ref.name", "")


def _check_kind(schema_version: int, media_type: str, allowed: frozenset[str], what: str) -> None:
    if schema_version != 2:
        raise SpecError(f"schemaVersion: {schema_version} (only 2 exists)", field="schemaVersion")
    if media_type and media_type not in allowed:
        raise SpecError(f'mediaType: "{media_type}" is not {what}', field="mediaType")


class _Document(Model):
    """A JSON document of the image spec: loaded from bytes and checked, written back."""

    @classmethod
    def loads(cls, data: str | bytes, *, source: str = "") -> Self:
        import json

        try:
            parsed = json.loads(data)
        except ValueError as exc:
            raise SpecError(f"{source or cls.__name__}: not JSON ({exc})") from None
        return decode(cls, parsed, "").checked()

    def checked(self) -> Self:
        """The document, if this implementation reads it; :class:`SpecError` naming the field if not."""
        return self

    def to_dict(self) -> dict[str, JSON]:
        return encode(self)

    def dumps(self) -> bytes:
        """The canonical bytes: what the digest of a document written by nsprim is taken of."""
        import json

        return json.dumps(self.to_dict(), separators=(",", ":"), ensure_ascii=False).encode()


class Index(_Document):
    """An image index (OCI) or manifest list (Docker): manifests by platform."""

    schema_version: int = spec_field(required=True, kind="u32")
    media_type: str = ""
    manifests: tuple[Descriptor, ...] = spec_field(required=True)
    annotations: Mapping[str, str] = spec_field(factory=dict)
    extra: Mapping[str, JSON] = spec_field(factory=dict)

    def checked(self) -> Index:
        """The index, if it is one this implementation reads; :class:`SpecError` naming the field if not."""
        _check_kind(self.schema_version, self.media_type, MediaType.INDEXES, "an image index")
        for i, d in enumerate(self.manifests):
            d.check(f"manifests[{i}]")
        return self

    def for_platform(self, wanted: Platform | None = None) -> Descriptor:
        """The manifest for *wanted* (default: this host); a single manifest without a platform is taken."""
        wanted = wanted or Platform.host()
        images = [d for d in self.manifests if d.media_type in MediaType.MANIFESTS or not d.media_type]
        for d in images:
            if d.platform is not None and d.platform.matches(wanted):
                return d
        plain = [d for d in images if d.platform is None]
        if len(plain) == 1:
            return plain[0]
        offered = ", ".join(str(d.platform) for d in images if d.platform is not None) or "none"
        raise SpecError(f"manifests: none for {wanted} (offered: {offered})", field="manifests")


class Manifest(_Document):
    """An image manifest: its config and layers, base first."""

    schema_version: int = spec_field(required=True, kind="u32")
    media_type: str = ""
    artifact_type: str = ""
    config: Descriptor = spec_field(required=True)
    layers: tuple[Descriptor, ...] = ()
    subject: Descriptor | None = None
    annotations: Mapping[str, str] = spec_field(factory=dict)
    extra: Mapping[str, JSON] = spec_field(factory=dict)

    def checked(self) -> Manifest:
        """The manifest, if it is an image this implementation runs; :class:`SpecError` naming the field if not."""
        _check_kind(self.schema_version, self.media_type, MediaType.MANIFESTS, "an image manifest")
        self.config.check("config")
        if self.config.media_type not in MediaType.CONFIGS:
            raise SpecError(
                f'config.mediaType: "{self.config.media_type}" is not an image configuration', field="config.mediaType"
            )
        for i, layer in enumerate(self.layers):
            layer.check(f"layers[{i}]")
            if layer.media_type not in MediaType.LAYERS:
                raise SpecError(
                    f'layers[{i}].mediaType: "{layer.media_type}" is not a layer this implementation unpacks',
                    field=f"layers[{i}].mediaType",
                )
        return self


class ContainerSettings(Model):
    """An image configuration's ``config``: how a container of the image runs by default."""

    user: str = spec_field(default="", key="User")
    exposed_ports: Mapping[str, JSON] = spec_field(factory=dict, key="ExposedPorts")
    env: tuple[str, ...] = spec_field(default=(), key="Env")
    entrypoint: tuple[str, ...] | None = spec_field(default=None, key="Entrypoint")
    cmd: tuple[str, ...] | None = spec_field(default=None, key="Cmd")
    volumes: Mapping[str, JSON] = spec_field(factory=dict, key="Volumes")
    working_dir: str = spec_field(default="", key="WorkingDir")
    labels: Mapping[str, str] = spec_field(factory=dict, key="Labels")
    stop_signal: str = spec_field(default="", key="StopSignal")
    extra: Mapping[str, JSON] = spec_field(factory=dict)

    def argv(self, command: Sequence[str] = (), entrypoint: Sequence[str] | None = None) -> tuple[str, ...]:
        """What runs: the entrypoint (or *entrypoint*), then *command* if given, else ``Cmd``."""
        head = tuple(entrypoint) if entrypoint is not None else tuple(self.entrypoint or ())
        tail = tuple(command) if command else tuple(self.cmd or ())
        return head + tail


class ImageRootFS(Model):
    """An image configuration's ``rootfs``: the layers' uncompressed digests, base first."""

    type: str = spec_field(required=True)
    diff_ids: tuple[str, ...] = spec_field(required=True, key="diff_ids")
    extra: Mapping[str, JSON] = spec_field(factory=dict)


class History(Model):
    created: str = ""
    created_by: str = ""
    author: str = ""
    comment: str = ""
    empty_layer: bool = False
    extra: Mapping[str, JSON] = spec_field(factory=dict)


class ImageConfig(_Document):
    """An image's configuration: its platform, default settings and layers' diff IDs."""

    architecture: str = spec_field(required=True)
    os: str = spec_field(required=True)
    variant: str = ""
    created: str = ""
    author: str = ""
    config: ContainerSettings = spec_field(factory=ContainerSettings)
    rootfs: ImageRootFS = spec_field(required=True)
    history: tuple[History, ...] = ()
    extra: Mapping[str, JSON] = spec_field(factory=dict)

    def checked(self) -> ImageConfig:
        if self.rootfs.type != "layers":
            raise SpecError(f'rootfs.type: "{self.rootfs.type}" (only "layers" exists)', field="rootfs.type")
        for i, d in enumerate(self.rootfs.diff_ids):
            parse_digest(d, f"rootfs.diff_ids[{i}]")
        return self

    @property
    def platform(self) -> Platform:
        return Platform(architecture=self.architecture, os=self.os, variant=self.variant)
