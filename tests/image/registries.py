"""Real registries for the tests: Debian's ``docker-registry`` (the CNCF distribution registry) on
127.0.0.1, without auth, with htpasswd basic auth and behind TLS, and images put into them with
``skopeo`` from an OCI layout built from a busybox-static root file system.

Import the fixtures into a test module (``from .registries import plain_registry, ...``); each
registry is started once per session, with a configuration file and a storage directory of its
own, and stopped in teardown.
"""

from __future__ import annotations

import gzip
import hashlib
import io
import json
import socket
import subprocess
import tarfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from nsprim.image import Descriptor, ImageConfig, ImageLayout, ImageRootFS, Index, Manifest, MediaType, Platform

from ..oci.bundles import make_rootfs
from ..tools import need_tool

USER, PASSWORD = "nsprim", "s3cret-pass"


@dataclass(frozen=True)
class Registry:
    """A running registry: ``host`` is ``127.0.0.1:PORT``."""

    host: str
    storage: Path
    tls: bool = False
    ca_file: Path | None = None
    auth: tuple[str, str] | None = None

    def skopeo_copy(self, source: str, name: str, *extra: str) -> None:
        """``skopeo copy`` *source* (``oci:DIR:TAG``) to ``NAME`` (``repo:tag``) in this registry."""
        creds = ["--dest-creds", ":".join(self.auth)] if self.auth else []
        subprocess.run(
            [need_tool("skopeo", "skopeo"), "copy", "--quiet", "--dest-tls-verify=false", *creds, *extra,
             source, f"docker://{self.host}/{name}"],
            check=True, capture_output=True, timeout=120,
        )  # fmt: skip

    def skopeo_inspect(self, name: str, *extra: str) -> bytes:
        """What ``skopeo inspect EXTRA... docker://HOST/NAME`` prints."""
        creds = ["--creds", ":".join(self.auth)] if self.auth else []
        return subprocess.run(
            [need_tool("skopeo", "skopeo"), "inspect", "--tls-verify=false", *creds, *extra,
             f"docker://{self.host}/{name}"],
            check=True, capture_output=True, timeout=120,
        ).stdout  # fmt: skip

    def skopeo_fetch(self, name: str, dest: str, *extra: str) -> None:
        """``skopeo copy`` ``NAME`` of this registry to *dest* (``oci:DIR:TAG``)."""
        creds = ["--src-creds", ":".join(self.auth)] if self.auth else []
        subprocess.run(
            [need_tool("skopeo", "skopeo"), "copy", "--quiet", "--src-tls-verify=false", *creds, *extra,
             f"docker://{self.host}/{name}", dest],
            check=True, capture_output=True, timeout=120,
        )  # fmt: skip

    def blob_data(self, digest: str) -> Path:
        """Where the filesystem storage driver keeps the blob *digest*."""
        algorithm, _, hexdigest = digest.partition(":")
        return self.storage / "docker/registry/v2/blobs" / algorithm / hexdigest[:2] / hexdigest / "data"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _wait_listening(port: int, process: subprocess.Popen[bytes], log: Path) -> None:
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"docker-registry exited {process.returncode}: {log.read_text()[-2000:]}")
        with socket.socket() as s:
            if s.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.05)
    raise RuntimeError(f"docker-registry did not listen on {port}: {log.read_text()[-2000:]}")


def _serve(root: Path, *, auth: bool = False, tls: bool = False) -> Iterator[Registry]:
    binary = need_tool("docker-registry", "docker-registry")
    root.mkdir(parents=True, exist_ok=True)
    port = free_port()
    storage = root / "storage"
    config: dict[str, object] = {
        "version": 0.1,
        "log": {"level": "error", "accesslog": {"disabled": True}},
        "storage": {"filesystem": {"rootdirectory": str(storage)}, "delete": {"enabled": True}},
        "http": {"addr": f"127.0.0.1:{port}", "secret": "nsprim-tests"},
    }
    ca_file = None
    if tls:
        ca_file = root / "cert.pem"
        subprocess.run(
            [need_tool("openssl", "openssl"), "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2",
             "-keyout", str(root / "key.pem"), "-out", str(ca_file), "-subj", "/CN=127.0.0.1",
             "-addext", "subjectAltName=IP:127.0.0.1,DNS:localhost"],
            check=True, capture_output=True,
        )  # fmt: skip
        config["http"] = {**config["http"], "tls": {"certificate": str(ca_file), "key": str(root / "key.pem")}}  # type: ignore[dict-item]
    if auth:
        htpasswd = subprocess.run(
            [need_tool("htpasswd", "apache2-utils"), "-Bbn", USER, PASSWORD], check=True, capture_output=True
        ).stdout
        (root / "htpasswd").write_bytes(htpasswd)
        config["auth"] = {"htpasswd": {"realm": "nsprim-tests", "path": str(root / "htpasswd")}}
    (root / "config.yml").write_text(json.dumps(config))  # JSON is YAML
    log = root / "registry.log"
    with log.open("wb") as out:
        process = subprocess.Popen([binary, "serve", str(root / "config.yml")], stdout=out, stderr=out,
                                   stdin=subprocess.DEVNULL)  # fmt: skip
    try:
        _wait_listening(port, process, log)
        yield Registry(f"127.0.0.1:{port}", storage, tls, ca_file, (USER, PASSWORD) if auth else None)
    finally:
        process.terminate()
        try:
            process.wait(10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


@pytest.fixture(scope="session")
def plain_registry(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Registry]:
    """A registry without auth, over plain HTTP."""
    yield from _serve(tmp_path_factory.mktemp("registry-plain"))


@pytest.fixture(scope="session")
def auth_registry(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Registry]:
    """A registry with htpasswd basic auth (``USER``/``PASSWORD``), over plain HTTP."""
    yield from _serve(tmp_path_factory.mktemp("registry-auth"), auth=True)


@pytest.fixture(scope="session")
def tls_registry(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Registry]:
    """A registry behind TLS with a self-signed certificate (its ``ca_file``)."""
    yield from _serve(tmp_path_factory.mktemp("registry-tls"), tls=True)


# ---- images -------------------------------------------------------------------------------


def _layer(root: Path, extra: dict[str, bytes]) -> tuple[bytes, str]:
    raw = io.BytesIO()
    with tarfile.open(fileobj=raw, mode="w") as tar:
        tar.add(root, arcname=".")
        for name, data in extra.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    data = raw.getvalue()
    return gzip.compress(data, mtime=0), "sha256:" + hashlib.sha256(data).hexdigest()


def add_image(layout: ImageLayout, layers: list[tuple[bytes, str]], arch: str = "amd64",
              tag: str | None = None) -> Descriptor:  # fmt: skip
    """An OCI image of *layers* (gzip blob, diff ID) in *layout*; named *tag* if given."""
    descs = tuple(layout.write_blob(blob, MediaType.OCI_LAYER_GZIP) for blob, _ in layers)
    config = ImageConfig(architecture=arch, os="linux", variant="v8" if arch == "arm64" else "",
                         rootfs=ImageRootFS(type="layers", diff_ids=tuple(d for _, d in layers)))  # fmt: skip
    config_desc = layout.write_blob(config.dumps(), MediaType.OCI_CONFIG)
    manifest = Manifest(schema_version=2, media_type=MediaType.OCI_MANIFEST, config=config_desc, layers=descs)
    desc = layout.write_blob(manifest.dumps(), MediaType.OCI_MANIFEST)
    desc = desc.replace(platform=config.platform)
    if tag:
        layout.name_image(desc, tag)
    return desc


@dataclass(frozen=True)
class ImageSet:
    """An OCI layout with ``busybox`` (one platform: this host's, two layers), ``multi`` (an index of
    amd64 and arm64) and ``other`` (another image sharing ``busybox``'s base layer)."""

    layout: ImageLayout

    def source(self, tag: str) -> str:
        return f"oci:{self.layout.path}:{tag}"


@pytest.fixture(scope="session")
def test_images(tmp_path_factory: pytest.TempPathFactory) -> ImageSet:
    root = tmp_path_factory.mktemp("registry-images")
    rootfs = make_rootfs(root / "rootfs")
    layout = ImageLayout.create(root / "layout")
    host = Platform.host().architecture
    empty = root / "empty"
    empty.mkdir()
    base = _layer(rootfs, {})
    add_image(layout, [base, _layer(empty, {"etc/hello": b"hello\n"})], host, "busybox")
    add_image(layout, [base, _layer(empty, {"etc/other": b"other\n"})], host, "other")
    arm = add_image(layout, [base, _layer(empty, {"etc/arch": b"arm64\n"})], "arm64")
    amd = add_image(layout, [base, _layer(empty, {"etc/arch": b"amd64\n"})], "amd64")
    index = Index(schema_version=2, media_type=MediaType.OCI_INDEX, manifests=(amd, arm))
    layout.name_image(layout.write_blob(index.dumps(), MediaType.OCI_INDEX), "multi")
    return ImageSet(layout)


class Recorder:
    """A Progress that records what it hears."""

    def __init__(self) -> None:
        self.begun: dict[str, str] = {}
        self.sizes: dict[str, int | None] = {}
        self.bytes: dict[str, int] = {}
        self.ended: set[str] = set()

    def begin(self, digest: str, size: int | None, what: str) -> None:
        self.begun[digest] = what
        self.sizes[digest] = size

    def advance(self, digest: str, nbytes: int) -> None:
        self.bytes[digest] = self.bytes.get(digest, 0) + nbytes

    def end(self, digest: str) -> None:
        self.ended.add(digest)


@pytest.fixture(scope="session")
def seeded(plain_registry: Registry, test_images: ImageSet) -> Registry:
    """The plain registry with ``busybox``, ``other`` and ``multi`` (OCI) and ``busybox-docker`` (Docker v2s2)."""
    plain_registry.skopeo_copy(test_images.source("busybox"), "busybox:latest")
    plain_registry.skopeo_copy(test_images.source("other"), "other:1")
    plain_registry.skopeo_copy(test_images.source("multi"), "multi:latest", "--all")
    plain_registry.skopeo_copy(test_images.source("busybox"), "busybox-docker:latest", "--format", "v2s2")
    return plain_registry
