"""An image from a layout into a layer store (each layer once, verified) and run as its
configuration says."""

from __future__ import annotations

import gzip
import hashlib
import io
import tarfile
from pathlib import Path

import pytest

from nsprim.errors import BlobDigestError, ImageError
from nsprim.fs.layers import LayerStore
from nsprim.image import ImageConfig, ImageLayout, ImageRootFS, Manifest, MediaType, Platform, image_container, unpack
from nsprim.image.model import ContainerSettings

from ..conftest import requires_root
from ..oci.bundles import make_rootfs

pytestmark = requires_root


def _tar(root: Path) -> bytes:
    raw = io.BytesIO()
    with tarfile.open(fileobj=raw, mode="w") as tar:
        tar.add(root, arcname=".")
    return raw.getvalue()


def _add(layout: ImageLayout, tars: list[bytes], tag: str, settings: ContainerSettings) -> Manifest:
    layers = [layout.write_blob(gzip.compress(t, mtime=0), MediaType.OCI_LAYER_GZIP) for t in tars]
    diff_ids = tuple("sha256:" + hashlib.sha256(t).hexdigest() for t in tars)
    config = ImageConfig(
        architecture=Platform.host().architecture,
        os="linux",
        config=settings,
        rootfs=ImageRootFS(type="layers", diff_ids=diff_ids),
    )
    manifest = Manifest(
        schema_version=2,
        media_type=MediaType.OCI_MANIFEST,
        config=layout.write_blob(config.dumps(), MediaType.OCI_CONFIG),
        layers=tuple(layers),
    )
    layout.add_image(manifest, tag)
    return manifest


@pytest.fixture
def images(tmp_path: Path) -> tuple[ImageLayout, bytes]:
    layout = ImageLayout.create(tmp_path / "layout")
    base = _tar(make_rootfs(tmp_path / "rootfs"))
    (tmp_path / "app/srv").mkdir(parents=True)
    (tmp_path / "app/srv/greeting").write_text("hello from the top layer\n")
    top = _tar(tmp_path / "app")
    settings = ContainerSettings(
        entrypoint=("/bin/sh", "-c"), cmd=("cat greeting; echo $MOOD; id -u",), env=("MOOD=fine",),
        working_dir="/srv", user="1000:1000",
    )  # fmt: skip
    _add(layout, [base, top], "app", settings)
    _add(layout, [base], "base", ContainerSettings(cmd=("sh",)))
    return layout, base


def test_an_unpacked_image_runs_as_its_configuration_says(images: tuple[ImageLayout, bytes], tmp_path: Path) -> None:
    layout, _base = images
    store = LayerStore(tmp_path / "store")
    image, config = unpack(layout, "app", store, "app")
    r = image_container(store, image, config).run(capture_output=True)
    assert (r.returncode, r.stdout) == (0, b"hello from the top layer\nfine\n1000\n"), r.stderr
    r = image_container(store, image, config, ["echo overridden"]).run(capture_output=True)
    assert r.stdout == b"overridden\n"


def test_a_shared_base_layer_is_stored_once(images: tuple[ImageLayout, bytes], tmp_path: Path) -> None:
    layout, base = images
    store = LayerStore(tmp_path / "store")
    app, _ = unpack(layout, "app", store, "app")
    only_base, _ = unpack(layout, "base", store, "base")
    assert only_base.layers == app.layers[:1] == ("sha256:" + hashlib.sha256(base).hexdigest(),)
    assert len(store.layers()) == 2


def test_a_layer_whose_tar_is_not_its_diff_id_is_refused_and_not_kept(tmp_path: Path) -> None:
    layout = ImageLayout.create(tmp_path / "layout")
    tar = _tar(make_rootfs(tmp_path / "rootfs"))
    manifest = _add(layout, [tar], "bad", ContainerSettings(cmd=("sh",)))
    config = layout.config(manifest)
    lie = config.replace(rootfs=ImageRootFS(type="layers", diff_ids=("sha256:" + "0" * 64,)))
    layout.add_image(manifest.replace(config=layout.write_blob(lie.dumps(), MediaType.OCI_CONFIG)), "bad")
    store = LayerStore(tmp_path / "store")
    with pytest.raises(BlobDigestError, match="its tar is `sha256:"):
        unpack(layout, "bad", store, "bad")
    assert store.layers() == [] and store.images() == []


def test_an_image_for_another_platform_is_refused(tmp_path: Path) -> None:
    layout = ImageLayout.create(tmp_path / "layout")
    _add(layout, [_tar(make_rootfs(tmp_path / "rootfs"))], "x", ContainerSettings(cmd=("sh",)))
    with pytest.raises(ImageError, match=f"is for linux/{Platform.host().architecture}, not linux/s390x"):
        unpack(layout, "x", LayerStore(tmp_path / "store"), "x", Platform.parse("linux/s390x"))
