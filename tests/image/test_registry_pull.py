"""Pulling from a real registry (docker-registry on 127.0.0.1, images put in by skopeo): by tag and by
digest, OCI and Docker manifests, a multi-platform index resolved, blobs the layout has skipped, every
blob verified (a corrupt one refused, nothing of it kept), a registry that is not there."""

from __future__ import annotations

import base64
import hashlib
import json
from pathlib import Path

import pytest

from nsprim.errors import (
    RegistryAuthError,
    RegistryDigestError,
    RegistryError,
    RegistryNotFoundError,
    RegistryUnavailableError,
)
from nsprim.image import ImageLayout, MediaType, Platform
from nsprim.image.registry import pull

from .registries import (
    ImageSet,
    Recorder,
    Registry,
    auth_registry,
    free_port,
    plain_registry,
    seeded,
    test_images,
    tls_registry,
)

__all__ = ["auth_registry", "plain_registry", "seeded", "test_images", "tls_registry"]  # fixtures, imported


def _files(layout: ImageLayout) -> set[str]:
    return {str(p.relative_to(layout.path)) for p in layout.path.rglob("*") if p.is_file()}


def _check_image(layout: ImageLayout, tag: str) -> None:
    """Every blob of the image is there and verified."""
    manifest = layout.manifest(tag)
    config = layout.config(manifest)
    assert len(config.rootfs.diff_ids) == len(manifest.layers)
    for d in manifest.layers:
        layout.read_blob(d.digest, d.size)


def test_pull_by_tag_keeps_the_manifest_bytes_and_names_the_image(seeded: Registry, test_images: ImageSet,
                                                                  tmp_path: Path) -> None:  # fmt: skip
    layout = ImageLayout.create(tmp_path / "layout")
    progress = Recorder()
    desc = pull(f"{seeded.host}/busybox:latest", layout, tls_verify=False, progress=progress)
    assert layout.tags() == [f"{seeded.host}/busybox:latest"]
    assert desc.ref_name == f"{seeded.host}/busybox:latest" and desc.media_type == MediaType.OCI_MANIFEST
    # skopeo kept the OCI manifest as it was: the digest of what was pulled is the source's
    assert desc.digest == test_images.layout.descriptor("busybox").digest
    assert layout.read_blob(desc.digest) == test_images.layout.read_blob(desc.digest)
    _check_image(layout, desc.ref_name)
    manifest = layout.manifest(desc.ref_name)
    blobs = {manifest.config.digest, *(d.digest for d in manifest.layers)}
    assert set(progress.begun) == blobs and set(progress.begun.values()) == {"fetch"} and progress.ended == blobs
    assert progress.bytes == {d.digest: d.size for d in (manifest.config, *manifest.layers)}
    assert not [f for f in _files(layout) if ".tmp-" in f]


def test_pull_by_digest_and_under_a_tag_given(seeded: Registry, test_images: ImageSet, tmp_path: Path) -> None:
    digest = test_images.layout.descriptor("busybox").digest
    layout = ImageLayout.create(tmp_path / "layout")
    desc = pull(f"{seeded.host}/busybox@{digest}", layout, tls_verify=False, tag="mine")
    assert desc.digest == digest and layout.tags() == ["mine"]
    _check_image(layout, "mine")


def test_a_docker_v2s2_manifest_is_pulled_as_it_is(seeded: Registry, tmp_path: Path) -> None:
    layout = ImageLayout.create(tmp_path / "layout")
    desc = pull(f"{seeded.host}/busybox-docker", layout, tls_verify=False)
    assert desc.media_type == MediaType.DOCKER_MANIFEST and desc.ref_name == f"{seeded.host}/busybox-docker:latest"
    assert json.loads(layout.read_blob(desc.digest))["mediaType"] == MediaType.DOCKER_MANIFEST
    assert layout.manifest(desc.ref_name).layers[0].media_type == MediaType.DOCKER_LAYER_GZIP
    _check_image(layout, desc.ref_name)


@pytest.mark.parametrize("arch", ["amd64", "arm64"])
def test_a_multi_platform_index_is_resolved_to_the_platform_asked(seeded: Registry, test_images: ImageSet,
                                                                  tmp_path: Path, arch: str) -> None:  # fmt: skip
    layout = ImageLayout.create(tmp_path / "layout")
    wanted = Platform(os="linux", architecture=arch)
    desc = pull(f"{seeded.host}/multi:latest", layout, tls_verify=False, platform=wanted)
    index = test_images.layout.index()
    multi = next(d for d in index.manifests if d.ref_name == "multi")
    assert desc.digest == test_images.layout.descriptor("multi", wanted).digest != multi.digest
    assert desc.platform is not None and desc.platform.architecture == arch
    assert layout.config(layout.manifest(desc.ref_name)).architecture == arch
    default = pull(f"{seeded.host}/multi:latest", ImageLayout.create(tmp_path / "host"), tls_verify=False)
    assert default.platform is not None and default.platform.architecture == Platform.host().architecture


def test_a_platform_the_image_is_not_for_is_refused(seeded: Registry, tmp_path: Path) -> None:
    layout = ImageLayout.create(tmp_path / "layout")
    with pytest.raises(RegistryNotFoundError, match="none for linux/s390x"):
        pull(f"{seeded.host}/multi:latest", layout, tls_verify=False, platform=Platform.parse("linux/s390x"))
    with pytest.raises(RegistryNotFoundError, match="not linux/s390x"):
        pull(f"{seeded.host}/busybox:latest", layout, tls_verify=False, platform=Platform.parse("linux/s390x"))
    assert layout.tags() == []


def test_blobs_the_layout_has_are_not_fetched_again(seeded: Registry, tmp_path: Path) -> None:
    layout = ImageLayout.create(tmp_path / "layout")
    first = pull(f"{seeded.host}/busybox:latest", layout, tls_verify=False)
    progress = Recorder()
    pull(f"{seeded.host}/other:1", layout, tls_verify=False, progress=progress)
    base = layout.manifest(first.ref_name).layers[0].digest
    assert progress.begun[base] == "have" and base not in progress.bytes
    assert sorted(progress.begun.values()) == ["fetch", "fetch", "have"]  # its config, its top layer
    again = Recorder()
    pull(f"{seeded.host}/other:1", layout, tls_verify=False, progress=again)
    assert set(again.begun.values()) == {"have"} and not again.bytes
    assert len(layout.tags()) == 2


def test_a_blob_whose_bytes_are_not_its_digest_is_refused_and_not_kept(
    seeded: Registry, test_images: ImageSet, tmp_path: Path
) -> None:
    # an image of its own, whose layer is then corrupted in the registry's storage (same size)
    from .registries import _layer, add_image

    source = ImageLayout.create(tmp_path / "source")
    (tmp_path / "empty").mkdir()
    blob, diff_id = _layer(tmp_path / "empty", {"etc/corrupt": b"x" * 5000})
    add_image(source, [(blob, diff_id)], Platform.host().architecture, "corrupt")
    seeded.skopeo_copy(f"oci:{source.path}:corrupt", "corrupt:latest")
    digest = "sha256:" + hashlib.sha256(blob).hexdigest()
    data = seeded.blob_data(digest)
    content = bytearray(data.read_bytes())
    content[len(content) // 2] ^= 0xFF
    data.write_bytes(bytes(content))
    layout = ImageLayout.create(tmp_path / "layout")
    before = _files(layout)
    with pytest.raises(RegistryDigestError) as info:
        pull(f"{seeded.host}/corrupt:latest", layout, tls_verify=False)
    assert info.value.digest == digest and f"blob `{digest}`" in str(info.value) and seeded.host in str(info.value)
    assert not layout.has_blob(digest) and layout.tags() == []
    assert not [f for f in _files(layout) - before if ".tmp-" in f or digest.partition(":")[2] in f]


def test_a_manifest_whose_bytes_are_not_the_digest_asked_is_refused(seeded: Registry, tmp_path: Path) -> None:
    layout = ImageLayout.create(tmp_path / "layout")
    wrong = "sha256:" + "0" * 64
    with pytest.raises(RegistryError) as info:
        pull(f"{seeded.host}/busybox@{wrong}", layout, tls_verify=False)
    # the registry itself has no such manifest: a 404 naming it
    assert isinstance(info.value, RegistryNotFoundError) and info.value.status == 404
    assert wrong in str(info.value) and "MANIFEST_UNKNOWN" in str(info.value)


def test_an_unknown_tag_or_repository_is_not_found(seeded: Registry, tmp_path: Path) -> None:
    layout = ImageLayout.create(tmp_path / "layout")
    with pytest.raises(RegistryNotFoundError) as info:
        pull(f"{seeded.host}/busybox:nope", layout, tls_verify=False)
    assert f"`{seeded.host}/busybox` manifest `nope`" in str(info.value) and "HTTP 404" in str(info.value)
    with pytest.raises(RegistryNotFoundError, match=r"NAME_UNKNOWN|MANIFEST_UNKNOWN"):
        pull(f"{seeded.host}/nothing/here:latest", layout, tls_verify=False)


def test_a_registry_that_is_not_there_is_unavailable(tmp_path: Path) -> None:
    layout = ImageLayout.create(tmp_path / "layout")
    host = f"127.0.0.1:{free_port()}"
    for verify in (True, False):
        with pytest.raises(RegistryUnavailableError) as info:
            pull(f"{host}/busybox:latest", layout, tls_verify=verify)
        assert host in str(info.value) and info.value.registry == host
    assert layout.tags() == []


def test_plain_http_is_only_spoken_when_asked(seeded: Registry, tmp_path: Path) -> None:
    with pytest.raises(RegistryUnavailableError, match=r"ping `127\.0\.0\.1"):
        pull(f"{seeded.host}/busybox:latest", ImageLayout.create(tmp_path / "layout"))


@pytest.fixture
def no_auth_files(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """No auth file of the host's user is read: a home of the test's own."""
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    for name in ("REGISTRY_AUTH_FILE", "XDG_RUNTIME_DIR", "XDG_CONFIG_HOME"):
        monkeypatch.delenv(name, raising=False)
    return tmp_path / "home"


def test_basic_auth_needs_the_credentials_of_an_auth_file(
    auth_registry: Registry, test_images: ImageSet, no_auth_files: Path, tmp_path: Path
) -> None:
    auth_registry.skopeo_copy(test_images.source("busybox"), "busybox:latest")
    ref = f"{auth_registry.host}/busybox:latest"
    layout = ImageLayout.create(tmp_path / "layout")
    with pytest.raises(RegistryAuthError) as info:
        pull(ref, layout, tls_verify=False)
    assert info.value.status == 401 and f"no credentials for `{auth_registry.host}`" in str(info.value)
    assert layout.tags() == []

    user, password = auth_registry.auth or ("", "")
    auth_file = tmp_path / "auth.json"
    for secret, works in ((password + "x", False), (password, True)):
        token = base64.b64encode(f"{user}:{secret}".encode()).decode()
        auth_file.write_text(json.dumps({"auths": {auth_registry.host: {"auth": token}}}))
        if works:
            desc = pull(ref, layout, tls_verify=False, auth_file=auth_file)
            _check_image(layout, desc.ref_name or "")
        else:
            with pytest.raises(RegistryAuthError, match=f"as `{user}` \\(from `{auth_file}`\\)"):
                pull(ref, layout, tls_verify=False, auth_file=auth_file)
            assert layout.tags() == []


def test_tls_is_verified_against_the_ca_asked_for(
    tls_registry: Registry, test_images: ImageSet, tmp_path: Path
) -> None:
    tls_registry.skopeo_copy(test_images.source("busybox"), "busybox:latest")
    ref = f"{tls_registry.host}/busybox:latest"
    layout = ImageLayout.create(tmp_path / "layout")
    with pytest.raises(RegistryUnavailableError, match="CERTIFICATE_VERIFY_FAILED"):
        pull(ref, layout)
    assert layout.tags() == []
    desc = pull(ref, layout, ca_file=tls_registry.ca_file)
    _check_image(layout, desc.ref_name or "")
