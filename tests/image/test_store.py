"""The image store against a real registry (docker-registry on 127.0.0.1, images put in by skopeo):
two images sharing a base layer keep it once, in one form each (the compressed blob, the extracted
directory); loads of OCI layouts and docker archives; rmi and gc; two processes pulling at once."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from nsprim.errors import ConfigError, ImageError, ImageNotFoundError, RegistryError
from nsprim.image.store import ImageStore

from ..conftest import requires_root
from ..tools import need_tool
from .registries import ImageSet, Registry, free_port, plain_registry, test_images

__all__ = ["plain_registry", "test_images"]  # fixtures, imported

pytestmark = requires_root


@pytest.fixture(scope="module")
def registry(plain_registry: Registry, test_images: ImageSet) -> Registry:
    """The plain registry with ``store/busybox`` and ``store/other`` (sharing their base layer)."""
    plain_registry.skopeo_copy(test_images.source("busybox"), "store/busybox:latest")
    plain_registry.skopeo_copy(test_images.source("other"), "store/other:1")
    return plain_registry


def _files(root: Path) -> set[str]:
    return {str(p.relative_to(root)) for p in root.rglob("*") if p.is_file() or p.is_symlink()}


def _blobs(store: ImageStore) -> set[str]:
    return {p.name for p in (store.layout.path / "blobs/sha256").iterdir()}


def test_two_images_sharing_a_base_keep_it_once_and_say_what_that_saves(registry: Registry, tmp_path: Path) -> None:
    store = ImageStore(tmp_path / "store")
    busybox = store.pull(f"{registry.host}/store/busybox", tls_verify=False)
    other = store.pull(f"{registry.host}/store/other:1", tls_verify=False)
    assert busybox.name == f"{registry.host}/store/busybox:latest"
    assert [i.name for i in store.images()] == [busybox.name, other.name]
    base = busybox.layers[0]
    assert other.layers[0] == base and busybox.layers[1] != other.layers[1]
    # the base once: one blob, one directory, and no tar beside it
    assert len(store.layers.layers()) == 3
    assert not any(p.name == "layer.tar" for p in store.layers.root.rglob("*"))
    assert len({d.digest for i in (busybox, other) for d in i.manifest.layers}) == 3
    assert (store.layers.layer(base).diff / "bin/busybox").is_file()
    usage = store.usage()
    base_size = store.layers.layer(base).size
    assert [u.shared for u in usage.images] == [base_size, base_size]
    assert usage.saved == base_size and usage.total == usage.stored + base_size
    assert all(u.unique == u.size - base_size > 0 for u in usage.images)


def test_a_second_pull_fetches_nothing_and_names_are_found_as_references_and_ids(registry: Registry,
                                                                                 tmp_path: Path) -> None:  # fmt: skip
    store = ImageStore(tmp_path / "store")
    first = store.pull(f"{registry.host}/store/busybox:latest", tls_verify=False)
    before = _files(store.root)

    class Seen:
        def __init__(self) -> None:
            self.what: set[str] = set()

        def begin(self, digest: str, size: int | None, what: str) -> None:
            self.what.add(what)

        def advance(self, digest: str, nbytes: int) -> None: ...

        def end(self, digest: str) -> None: ...

    seen = Seen()
    again = store.pull(f"{registry.host}/store/busybox", tls_verify=False, progress=seen)
    assert seen.what == {"have"} and again == first
    assert _files(store.root) == before
    assert store.image(first.id[7:19]) == first and store.image(first.id) == first
    assert store.image(f"{registry.host}/store/busybox") == first
    with pytest.raises(ImageNotFoundError, match="busybox:2`: not in the store"):
        store.image(f"{registry.host}/store/busybox:2")


def test_rmi_keeps_what_another_image_has_and_gc_leaves_an_empty_store(registry: Registry, tmp_path: Path) -> None:
    store = ImageStore(tmp_path / "store")
    busybox = store.pull(f"{registry.host}/store/busybox", tls_verify=False)
    other = store.pull(f"{registry.host}/store/other:1", tls_verify=False)
    store.remove(busybox.name)
    assert [i.name for i in store.images()] == [other.name]
    assert {layer.digest for layer in store.layers.layers()} == set(other.layers)
    wanted = {other.digest, other.id, *(d.digest for d in other.manifest.layers)}
    assert _blobs(store) == {d.removeprefix("sha256:") for d in wanted}
    store.remove(other.id[7:19])
    assert store.images() == [] and store.layers.layers() == [] and _blobs(store) == set()
    assert not list((store.root / "tmp").iterdir()) and not list((store.root / "locks").iterdir())
    with pytest.raises(ImageNotFoundError):
        store.remove(other.name)


def test_gc_removes_what_a_pull_that_died_left(registry: Registry, tmp_path: Path) -> None:
    store = ImageStore(tmp_path / "store")
    kept = store.pull(f"{registry.host}/store/other:1", tls_verify=False)
    from nsprim.image.registry import pull

    pull(f"{registry.host}/store/busybox", store.layout, tag=".incomplete/dead", tls_verify=False)
    (store.layout.path / "blobs/sha256/.tmp-0123").write_bytes(b"half a blob")
    (store.layers.root / "tmp/0123").mkdir()
    collected = store.gc()
    assert (collected.incomplete, collected.blobs, collected.layers) == (1, 3, 0)  # manifest, config, top layer
    assert store.images() == [kept] and store.layout.tags() == [kept.name]
    assert not (store.layout.path / "blobs/sha256/.tmp-0123").exists()
    assert not list((store.layers.root / "tmp").iterdir())


def test_a_failed_pull_names_nothing_and_keeps_no_layer(tmp_path: Path) -> None:
    store = ImageStore(tmp_path / "store")
    with pytest.raises(RegistryError):
        store.pull(f"127.0.0.1:{free_port()}/nothing:here", tls_verify=False)
    assert store.layout.index().manifests == () and store.layers.layers() == []


def test_an_oci_layout_and_a_docker_archive_load(registry: Registry, test_images: ImageSet, tmp_path: Path) -> None:
    store = ImageStore(tmp_path / "store")
    copy = tmp_path / "busybox-oci"
    skopeo = need_tool("skopeo", "skopeo")
    subprocess.run([skopeo, "copy", "--quiet", test_images.source("busybox"), f"oci:{copy}:latest"], check=True)
    (loaded,) = store.load(copy)
    assert loaded.name == "localhost/busybox-oci:latest"
    (named,) = store.load(copy, name="example.org/mine:2")
    assert named.name == "example.org/mine:2" and named.digest == loaded.digest
    archive = tmp_path / "other.tar"
    subprocess.run([skopeo, "copy", "--quiet", test_images.source("other"), f"docker-archive:{archive}:app/other:3"],
                   check=True)  # fmt: skip
    (from_archive,) = store.load(archive)
    assert from_archive.name == "docker.io/app/other:3"
    assert len(store.layers.layers()) == 3  # the base once, though three images and two formats
    assert not list((store.root / "tmp").iterdir())
    with pytest.raises(ConfigError, match=r"images .*, one name given"):
        store.load(test_images.layout.path, name="example.org/x:1")
    with pytest.raises(ImageError, match="No such file"):
        store.load(tmp_path / "absent")


_PULL = textwrap.dedent(
    """
    import json, sys
    from nsprim.image.store import ImageStore
    image = ImageStore(sys.argv[1]).pull(sys.argv[2], tls_verify=False)
    print(json.dumps(image.layers))
    """
)


def test_two_processes_pulling_at_once_store_each_layer_once(registry: Registry, tmp_path: Path) -> None:
    root = tmp_path / "store"
    ref = f"{registry.host}/store/busybox:latest"
    procs = [subprocess.Popen([sys.executable, "-c", _PULL, str(root), ref], stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE) for _ in range(2)]  # fmt: skip
    results = [p.communicate(timeout=120) for p in procs]
    assert [p.returncode for p in procs] == [0, 0], [err for _, err in results]
    assert json.loads(results[0][0]) == json.loads(results[1][0])
    store = ImageStore(root)
    assert [i.name for i in store.images()] == [ref]
    assert len(store.layers.layers()) == 2 and len(_blobs(store)) == 4
    assert not list((store.layers.root / "tmp").iterdir()) and not list((store.root / "tmp").iterdir())
    assert not [p for p in (store.layout.path / "blobs/sha256").iterdir() if p.name.startswith(".tmp")]


def test_gc_keeps_the_layers_a_running_container_stands_on(registry: Registry, tmp_path: Path) -> None:
    from nsprim.container import Container

    store = ImageStore(tmp_path / "store")
    image = store.pull(f"{registry.host}/store/busybox", tls_verify=False)
    signal_dir = tmp_path / "signal"
    signal_dir.mkdir()
    wait_then_read = "until [ -e /signal/go ]; do sleep 0.02; done; cat /etc/hello"
    box = Container.from_image(image.name, ["sh", "-c", wait_then_read], store=store).bind(signal_dir, "/signal")
    with open(tmp_path / "out", "wb") as out, box.start(stdout=out) as running:
        store.remove(image.name, collect=False)
        collected = store.gc()
        assert (collected.layers, collected.in_use, collected.blobs) == (0, 2, 4)
        (signal_dir / "go").touch()
        assert running.wait() == 0
    assert (tmp_path / "out").read_bytes() == b"hello\n"
    collected = store.gc()  # the container has ended: its layers go now
    assert (collected.layers, collected.in_use) == (2, 0) and store.layers.layers() == []
