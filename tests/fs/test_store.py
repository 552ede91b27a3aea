"""LayerStore, Image and ContainerRoot: content addressing, sharing, commit, clean failure."""

from __future__ import annotations

import dataclasses
import hashlib
import io
import os
import tarfile
from pathlib import Path

import pytest

from nsprim.errors import ConfigError
from nsprim.fs.layers import LayerStore, UnsafeTarEntryError, commit

from ..tools import static_busybox
from .helpers import make_tree, snapshot


def tar_of(tmp: Path, name: str, spec: dict[str, str | bytes | None]) -> Path:
    src = make_tree(tmp / f"src-{name}", spec)
    out = tmp / f"{name}.tar"
    commit(src, out)
    return out


@pytest.fixture
def store(tmp_path: Path) -> LayerStore:
    return LayerStore(tmp_path / "store")


def test_layers_are_content_addressed(tmp_path: Path, store: LayerStore) -> None:
    tar = tar_of(tmp_path, "base", {"etc/os-release": "ID=test\n", "bin/sh": "sh"})
    layer = store.add_tar(tar)
    assert layer.digest == "sha256:" + hashlib.sha256(tar.read_bytes()).hexdigest()
    assert layer.tar.read_bytes() == tar.read_bytes()
    assert (layer.diff / "etc" / "os-release").read_text() == "ID=test\n"
    again = store.add_tar(io.BytesIO(tar.read_bytes()))
    assert again == layer and store.layers() == [layer]
    assert store.layer(layer.hex) == layer
    assert list((store.root / "tmp").iterdir()) == []


def test_images_and_container_roots(tmp_path: Path, store: LayerStore) -> None:
    base = store.add_tar(tar_of(tmp_path, "base", {"etc/hosts": "h", "usr/bin/tool": "v1"}))
    app = store.add_tar(tar_of(tmp_path, "app", {"usr/bin/tool": "v2", "app/run": "run"}))
    image = store.save_image("app", [base, app])
    assert store.image("app") == image and image.layers == (base.digest, app.digest)
    assert store.lower_dirs(image) == [app.diff, base.diff]  # top first

    c1, c2 = store.create_container(image), store.create_container("app", name="second")
    with c1, c2:
        assert (c1.merged / "usr" / "bin" / "tool").read_text() == "v2"
        (c1.merged / "etc" / "hosts").write_text("changed")
        (c1.merged / "app" / "run").unlink()
        assert (c2.merged / "etc" / "hosts").read_text() == "h"  # containers never see each other
        assert (c2.merged / "app" / "run").exists()
        new = c1.commit("app-v2")
        view = snapshot(c1.merged)
    assert store.image("app-v2").layers == (base.digest, app.digest, new.digest)
    with store.create_container("app-v2") as c3:
        assert snapshot(c3.merged) == view
    for c in (c1, c2, c3):
        c.remove()
    assert list((store.root / "containers").iterdir()) == []
    assert (base.diff / "etc" / "hosts").read_text() == "h"  # layers never change


def test_bad_tar_leaves_nothing_in_the_store(tmp_path: Path, store: LayerStore) -> None:
    bad = tmp_path / "bad.tar"
    with tarfile.open(bad, "w") as tf:
        ok = tarfile.TarInfo("fine")
        tf.addfile(ok, io.BytesIO(b""))
        evil = tarfile.TarInfo("../../evil")
        tf.addfile(evil, io.BytesIO(b""))
    with pytest.raises(UnsafeTarEntryError, match=r"tar entry `\.\./\.\./evil`"):
        store.add_tar(bad)
    assert store.layers() == []
    assert list((store.root / "tmp").iterdir()) == []
    assert not (tmp_path / "evil").exists()


def test_store_errors(tmp_path: Path, store: LayerStore) -> None:
    base = store.add_tar(tar_of(tmp_path, "base", {"f": "x"}))
    with pytest.raises(ConfigError, match="not in the store"):
        store.layer("sha256:" + "0" * 64)
    with pytest.raises(ConfigError, match="not a sha256 digest"):
        store.layer("md5:abc")
    with pytest.raises(ConfigError, match="no image"):
        store.image("missing")
    with pytest.raises(ConfigError, match="bad image name"):
        store.save_image("../escape", [base])
    with pytest.raises(ConfigError, match="needs at least one layer"):
        store.save_image("empty", [])
    store.save_image("img", [base])
    with pytest.raises(ConfigError, match="used by images img"):
        store.remove_layer(base.digest)
    store.remove_image("img")
    store.remove_layer(base.digest)
    assert store.layers() == []


def test_many_containers_share_the_lower_layers(tmp_path: Path, store: LayerStore) -> None:
    big = {f"data/{i}": os.urandom(64 * 1024) for i in range(16)}  # 1 MiB
    layer = store.add_tar(tar_of(tmp_path, "big", big))  # type: ignore[arg-type]
    image = store.save_image("big", [layer])
    before = store.disk_usage()
    roots = [store.create_container(image) for _ in range(5)]
    for r in roots:
        r.mount()
    try:
        for r in roots:
            (r.merged / "mine").write_text(r.name)
        grown = store.disk_usage() - before
        assert grown < 5 * 64 * 1024  # five tiny upper dirs, not five copies of a 1 MiB image
    finally:
        for r in roots:
            r.remove()


def test_container_root_mounted_in_the_child_only(tmp_path: Path, store: LayerStore) -> None:
    import shutil

    import nsprim
    from nsprim.fs.mountinfo import find_mount

    busybox = static_busybox()
    src = make_tree(tmp_path / "src", {"etc/motd": "base\n"})
    (src / "bin").mkdir()
    shutil.copy2(busybox, src / "bin" / "busybox")
    image = store.save_image("bb", [store.add_dir(src)])
    root = store.create_container(image)
    r = nsprim.run(
        ["/bin/busybox", "sh", "-c", "/bin/busybox echo changed > /etc/motd"],
        new={"mnt", "pid"},
        steps=dataclasses.replace(root.rootfs(), sysfs=False).steps(),
        timeout=20,
    )
    assert r.returncode == 0
    assert find_mount(root.merged) is None  # the overlay lived in the child's namespace only
    assert (root.upper / "etc" / "motd").read_text() == "changed\n"
    layer = root.commit("bb-v2")
    with store.create_container("bb-v2") as c2:
        assert (c2.merged / "etc" / "motd").read_text() == "changed\n"
    root.remove()
    c2.remove()
    assert (layer.diff / "etc" / "motd").read_text() == "changed\n"
