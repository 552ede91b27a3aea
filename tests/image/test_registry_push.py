"""Pushing to a real registry (docker-registry on 127.0.0.1): byte-identical round trips (what is pushed
pulls back with the same digest, and skopeo reads it), multi-platform indexes, blobs the registry has
not sent again, blobs mounted from another repository, chunked uploads, auth, and bad layouts refused
before anything is sent."""

from __future__ import annotations

import base64
import json
import subprocess
from pathlib import Path
from typing import Any

import pytest

from nsprim.errors import BlobDigestError, ConfigError, ImageError, RegistryAuthError
from nsprim.image import ImageLayout, MediaType, Platform
from nsprim.image.registry import RegistryClient, pull, push
from nsprim.image.registry.client import Response
from nsprim.image.registry.push import CHUNK_SIZE

from .proxy import FaultyProxy
from .registries import (
    ImageSet,
    Recorder,
    Registry,
    add_image,
    auth_registry,
    plain_registry,
    seeded,
    test_images,
)

__all__ = ["auth_registry", "plain_registry", "seeded", "test_images"]  # fixtures, imported


def _blob_sizes(layout: ImageLayout, tag: str) -> dict[str, int]:
    manifest = layout.manifest(tag)
    return {d.digest: d.size for d in (manifest.config, *manifest.layers)}


def _has_manifest(registry: Registry, name: str) -> bool:
    try:
        registry.skopeo_inspect(name, "--raw")
    except subprocess.CalledProcessError:
        return False
    return True


@pytest.mark.parametrize("by_name", [True, False], ids=["by-name", "by-descriptor"])
@pytest.mark.parametrize("source", ["busybox:latest", "busybox-docker:latest"])
def test_a_pulled_image_pushed_back_is_byte_identical(seeded: Registry, tmp_path: Path, source: str,
                                                      by_name: bool) -> None:  # fmt: skip
    layout = ImageLayout.create(tmp_path / "layout")
    pulled = pull(f"{seeded.host}/{source}", layout, tls_verify=False)
    progress = Recorder()
    target = f"pushed/{source.partition(':')[0]}-{'name' if by_name else 'desc'}:v1"
    image = pulled.ref_name if by_name else pulled.replace(annotations={})
    pushed = push(layout, image, f"{seeded.host}/{target}", tls_verify=False, progress=progress)
    assert pushed.digest == pulled.digest and pushed.media_type == pulled.media_type
    sizes = _blob_sizes(layout, pulled.ref_name)
    assert progress.ended == set(sizes) and progress.sizes == sizes
    if by_name:
        # the layout names the image after the repository it came from: its blobs are linked from there
        assert progress.begun == dict.fromkeys(sizes, "mount") and not progress.bytes
    else:
        assert progress.begun == dict.fromkeys(sizes, "push") and progress.bytes == sizes
    # the registry has the very bytes: skopeo reads them, and a pull gets the same digest
    assert seeded.skopeo_inspect(target, "--raw") == layout.read_blob(pulled.digest)
    again = ImageLayout.create(tmp_path / "again")
    assert pull(f"{seeded.host}/{target}", again, tls_verify=False).digest == pulled.digest
    copied = ImageLayout.create(tmp_path / "skopeo")
    seeded.skopeo_fetch(target, f"oci:{copied.path}:copied", "--preserve-digests")
    assert copied.descriptor("copied").digest == pulled.digest

    # pushed once more: the registry has every blob, none is sent
    progress = Recorder()
    push(layout, image, f"{seeded.host}/{target}", tls_verify=False, progress=progress)
    assert set(progress.begun.values()) == {"exists"} and not progress.bytes


def test_a_multi_platform_index_is_pushed_with_its_manifests(seeded: Registry, test_images: ImageSet,
                                                             tmp_path: Path) -> None:  # fmt: skip
    source = test_images.layout
    multi = next(d for d in source.index().manifests if d.ref_name == "multi")
    progress = Recorder()
    pushed = push(source, "multi", f"{seeded.host}/pushed/multi:latest", tls_verify=False, progress=progress,
                  mount_from=["busybox"])  # fmt: skip
    assert pushed.digest == multi.digest and pushed.media_type == MediaType.OCI_INDEX
    # the base layer is in the busybox repository already: linked, not sent
    base = source.manifest("busybox").layers[0].digest
    assert progress.begun[base] == "mount" and base not in progress.bytes
    assert seeded.skopeo_inspect("pushed/multi:latest", "--raw") == source.read_blob(multi.digest)
    for arch in ("amd64", "arm64"):
        wanted = Platform(os="linux", architecture=arch)
        child = source.descriptor("multi", wanted)
        assert seeded.skopeo_inspect(f"pushed/multi@{child.digest}", "--raw") == source.read_blob(child.digest)
        layout = ImageLayout.create(tmp_path / arch)
        desc = pull(f"{seeded.host}/pushed/multi:latest", layout, tls_verify=False, platform=wanted)
        assert desc.digest == child.digest and layout.config(layout.manifest(desc.ref_name)).architecture == arch


def test_a_blob_larger_than_the_chunk_size_is_sent_in_chunks(
    seeded: Registry, test_images: ImageSet, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    methods: list[str] = []
    request = RegistryClient.request

    def counted(self: RegistryClient, method: str, path: str, **kwargs: Any) -> Response:
        methods.append(method)
        return request(self, method, path, **kwargs)

    monkeypatch.setattr(RegistryClient, "request", counted)
    source = test_images.layout
    sizes = _blob_sizes(source, "busybox")
    chunk = 64 << 10
    assert max(sizes.values()) > 3 * chunk  # the base layer goes in several PATCH requests
    progress = Recorder()
    pushed = push(source, "busybox", f"{seeded.host}/pushed/chunked:1", tls_verify=False, progress=progress,
                  chunk_size=chunk, jobs=1)  # fmt: skip
    assert progress.bytes == sizes
    assert methods.count("PATCH") == sum(-(-size // chunk) for size in sizes.values() if size > chunk)
    layout = ImageLayout.create(tmp_path / "layout")
    desc = pull(f"{seeded.host}/pushed/chunked:1", layout, tls_verify=False)
    assert desc.digest == pushed.digest
    for digest, size in sizes.items():
        assert layout.read_blob(digest, size) == source.read_blob(digest, size)


@pytest.mark.parametrize("chunk_size", [CHUNK_SIZE, 256 << 10], ids=["whole", "chunked"])
def test_an_upload_whose_connection_is_cut_is_made_again(seeded: Registry, test_images: ImageSet, tmp_path: Path,
                                                         chunk_size: int) -> None:  # fmt: skip
    source = test_images.layout
    sizes = _blob_sizes(source, "busybox")
    base = source.manifest("busybox").layers[0]
    progress = Recorder()
    cut = min(base.size // 3, chunk_size // 2)
    with FaultyProxy(int(seeded.host.rpartition(":")[2]), cut_body_after=cut) as proxy:
        target = f"{proxy.host}/pushed/cut-{chunk_size}:1"
        pushed = push(source, "busybox", target, tls_verify=False, progress=progress, chunk_size=chunk_size)
    assert proxy.faults == 1 and pushed.digest == source.descriptor("busybox").digest
    assert progress.bytes == sizes  # the bytes sent again not counted twice
    layout = ImageLayout.create(tmp_path / "layout")
    assert pull(target.replace(proxy.host, seeded.host), layout, tls_verify=False).digest == pushed.digest
    assert layout.read_blob(base.digest, base.size) == source.read_blob(base.digest)


def test_pushed_by_digest_and_a_digest_that_is_not_the_images_refused(seeded: Registry, test_images: ImageSet) -> None:
    source = test_images.layout
    digest = source.descriptor("other").digest
    push(source, "other", f"{seeded.host}/pushed/bydigest@{digest}", tls_verify=False)
    assert _has_manifest(seeded, f"pushed/bydigest@{digest}")
    wrong = "sha256:" + "1" * 64
    with pytest.raises(ConfigError, match=f"the image is `{digest}`"):
        push(source, "other", f"{seeded.host}/pushed/bydigest@{wrong}", tls_verify=False)


def test_a_layout_missing_a_blob_is_refused_before_anything_is_sent(seeded: Registry, tmp_path: Path) -> None:
    from .registries import _layer

    layout = ImageLayout.create(tmp_path / "layout")
    (tmp_path / "empty").mkdir()
    layers = [_layer(tmp_path / "empty", {"etc/a": b"a\n"}), _layer(tmp_path / "empty", {"etc/b": b"b\n"})]
    add_image(layout, layers, Platform.host().architecture, "partial")
    missing = layout.manifest("partial").layers[1].digest
    layout.blob_path(missing).unlink()
    progress = Recorder()
    with pytest.raises(ImageError, match=f"blob `{missing}` is not in the layout") as info:
        push(layout, "partial", f"{seeded.host}/pushed/partial:1", tls_verify=False, progress=progress)
    assert info.value.blob == missing and not progress.begun
    assert not _has_manifest(seeded, "pushed/partial:1")
    with pytest.raises(ImageError, match="no image `nope`"):
        push(layout, "nope", f"{seeded.host}/pushed/partial:1", tls_verify=False)


def test_a_layout_blob_that_is_not_its_digest_is_refused(seeded: Registry, tmp_path: Path) -> None:
    from .registries import _layer

    layout = ImageLayout.create(tmp_path / "layout")
    (tmp_path / "empty").mkdir()
    add_image(layout, [_layer(tmp_path / "empty", {"etc/c": b"c" * 3000})], Platform.host().architecture, "bad")
    layer = layout.manifest("bad").layers[0]
    path = layout.blob_path(layer.digest)
    content = bytearray(path.read_bytes())
    content[len(content) // 2] ^= 0xFF
    path.write_bytes(bytes(content))
    with pytest.raises(BlobDigestError) as info:
        push(layout, "bad", f"{seeded.host}/pushed/bad:1", tls_verify=False)
    assert info.value.blob == layer.digest and str(layout.path) in str(info.value)
    assert not _has_manifest(seeded, "pushed/bad:1")


def test_push_needs_the_credentials_of_an_auth_file(auth_registry: Registry, test_images: ImageSet, tmp_path: Path,
                                                    monkeypatch: pytest.MonkeyPatch) -> None:  # fmt: skip
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    for name in ("REGISTRY_AUTH_FILE", "XDG_RUNTIME_DIR", "XDG_CONFIG_HOME"):
        monkeypatch.delenv(name, raising=False)
    ref = f"{auth_registry.host}/pushed/busybox:latest"
    with pytest.raises(RegistryAuthError) as info:
        push(test_images.layout, "busybox", ref, tls_verify=False)
    assert info.value.status == 401 and f"no credentials for `{auth_registry.host}`" in str(info.value)
    user, password = auth_registry.auth or ("", "")
    auth_file = tmp_path / "auth.json"
    token = base64.b64encode(f"{user}:{password}".encode()).decode()
    auth_file.write_text(json.dumps({"auths": {auth_registry.host: {"auth": token}}}))
    pushed = push(test_images.layout, "busybox", ref, tls_verify=False, auth_file=auth_file)
    assert pushed.digest == test_images.layout.descriptor("busybox").digest
    assert json.loads(auth_registry.skopeo_inspect("pushed/busybox:latest"))["Digest"] == pushed.digest
