"""Docker archives: what ``podman save --format docker-archive`` writes loads into an image layout,
unpacks and runs; a layer that is not its diff ID is refused."""

from __future__ import annotations

import io
import json
import tarfile
import tempfile
from pathlib import Path

import pytest

from nsprim.errors import BlobDigestError, ImageError
from nsprim.fs.layers import LayerStore
from nsprim.image import ImageLayout, image_container, unpack
from nsprim.image.archive import load_docker_archive

from ..conftest import requires_root
from ..oci.bundles import make_rootfs
from ..oci.conftest import unique
from ..oci.podman import Podman

pytestmark = requires_root


def test_a_podman_docker_archive_loads_unpacks_and_runs(tmp_path: Path) -> None:
    with tempfile.TemporaryDirectory(prefix="nsprim-pm-") as short:  # podman refuses a run root of over 50
        _save_with_podman(Path(short), tmp_path)
    layout = ImageLayout.create(tmp_path / "layout")
    assert load_docker_archive(tmp_path / "saved.tar", layout) == [NAME]
    store = LayerStore(tmp_path / "store")
    image, config = unpack(layout, NAME, store, "archive")
    r = image_container(store, image, config).run(capture_output=True)
    assert (r.returncode, r.stdout) == (0, b"from the archive\n"), r.stderr


NAME = "localhost/nsprim-archive:1"


def _save_with_podman(base: Path, tmp_path: Path) -> None:
    podman = Podman(base, f"/{unique('test-podman')}")
    rootfs = make_rootfs(tmp_path / "rootfs")
    with tarfile.open(tmp_path / "rootfs.tar", "w") as tar:
        tar.add(rootfs, arcname=".")
    try:
        podman.ok("import", "--change", 'CMD ["/bin/echo", "from the archive"]', str(tmp_path / "rootfs.tar"), NAME)
        podman.ok("save", "--format", "docker-archive", "--output", str(tmp_path / "saved.tar"), NAME)
    finally:
        podman("rmi", "--all", "--force")


def _archive(path: Path, layer: bytes, diff_id: str) -> None:
    config = {"architecture": "amd64", "os": "linux", "rootfs": {"type": "layers", "diff_ids": [diff_id]}}
    files = {
        "manifest.json": json.dumps([{"Config": "c.json", "RepoTags": ["x:1"], "Layers": ["l/layer.tar"]}]).encode(),
        "c.json": json.dumps(config).encode(),
        "l/layer.tar": layer,
    }
    with tarfile.open(path, "w") as tar:
        for name, data in files.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))


def test_a_layer_that_is_not_its_diff_id_is_refused(tmp_path: Path) -> None:
    _archive(tmp_path / "a.tar", b"not the tar the config says", "sha256:" + "0" * 64)
    with pytest.raises(BlobDigestError, match=r"layer `l/layer\.tar` is `sha256:"):
        load_docker_archive(tmp_path / "a.tar", ImageLayout.create(tmp_path / "layout"))
    assert ImageLayout(tmp_path / "layout").tags() == []


def test_a_missing_file_is_named(tmp_path: Path) -> None:
    with tarfile.open(tmp_path / "a.tar", "w") as tar:
        data = b'[{"Config": "gone.json", "Layers": []}]'
        info = tarfile.TarInfo("manifest.json")
        info.size = len(data)
        tar.addfile(info, io.BytesIO(data))
    with pytest.raises(ImageError, match=r"manifest.json\[0\].Config: no file `gone.json`"):
        load_docker_archive(tmp_path / "a.tar", ImageLayout.create(tmp_path / "layout"))
    with pytest.raises(ImageError, match=r"docker archive `.*nope\.tar`"):
        load_docker_archive(tmp_path / "nope.tar", ImageLayout.create(tmp_path / "layout"))
