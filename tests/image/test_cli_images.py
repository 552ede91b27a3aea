"""``nsprim pull``, ``images``, ``rmi``, ``run IMAGE`` and ``image save|load|gc`` as real subprocesses,
against a real registry (docker-registry on 127.0.0.1, the images put in by skopeo)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

import nsprim
from nsprim.cli.progress import human_size
from nsprim.image.store import ImageStore

from ..conftest import requires_root
from ..tools import need_tool
from .registries import ImageSet, Registry, free_port, plain_registry, test_images

__all__ = ["plain_registry", "test_images"]  # fixtures, imported

pytestmark = requires_root

SRC = str(Path(nsprim.__file__).resolve().parent.parent)


@pytest.fixture(scope="module")
def registry(plain_registry: Registry, test_images: ImageSet) -> Registry:
    plain_registry.skopeo_copy(test_images.source("busybox"), "cli/busybox:latest")
    plain_registry.skopeo_copy(test_images.source("other"), "cli/other:1")
    return plain_registry


@pytest.fixture
def root(tmp_path: Path) -> Path:
    return tmp_path / "images"


def cli(root: Path, *args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONPATH": SRC, "NSPRIM_STORE": str(root)}
    return subprocess.run([sys.executable, "-m", "nsprim", *args], capture_output=True, text=True, timeout=timeout,
                          env=env)  # fmt: skip


def test_pull_then_run_from_an_empty_store_prints_hi(registry: Registry, root: Path) -> None:
    ref = f"{registry.host}/cli/busybox:latest"
    r = cli(root, "pull", "--tls-verify=false", ref)
    assert r.returncode == 0 and r.stderr == "", r.stderr  # no terminal: no progress
    image = ImageStore(root).image(ref)
    assert r.stdout == image.id.partition(":")[2] + "\n"
    r = cli(root, "run", ref, "echo", "hi")
    assert (r.returncode, r.stdout, r.stderr) == (0, "hi\n", "")
    r = cli(root, "run", "--entrypoint", "/bin/echo", "-e", "X=1", "-w", "/etc", ref, "a", "-n", "b")
    assert (r.returncode, r.stdout) == (0, "a -n b\n"), r.stderr
    r = cli(root, "run", "-w", "/etc", ref, "sh", "-c", "pwd; cat hello")
    assert (r.returncode, r.stdout) == (0, "/etc\nhello\n"), r.stderr
    # --rootfs keeps taking the command after --
    r = cli(root, "run", "--rootfs", "/", "--", "echo", "host")
    assert (r.returncode, r.stdout) == (0, "host\n"), r.stderr


def test_run_pulls_a_missing_image_and_never_means_never(registry: Registry, root: Path) -> None:
    ref = f"{registry.host}/cli/other:1"
    r = cli(root, "run", "--pull", "never", ref, "true")
    assert r.returncode == 125 and r.stderr.count("\n") == 1 and "not in the store" in r.stderr
    r = cli(root, "run", "--tls-verify=false", ref, "cat", "/etc/other")
    assert (r.returncode, r.stdout) == (0, "other\n"), r.stderr


def test_images_show_the_shared_base_once_and_rmi_and_gc_free_it(registry: Registry, root: Path) -> None:
    for ref in ("cli/busybox", "cli/other:1"):
        assert cli(root, "pull", "--tls-verify=false", f"{registry.host}/{ref}").returncode == 0
    store = ImageStore(root)
    usage = store.usage()
    base = store.layers.layer(usage.images[0].image.layers[0]).size
    r = cli(root, "images")
    assert r.returncode == 0, r.stderr
    header, *rows, footer = r.stdout.splitlines()
    assert header.split() == ["REPOSITORY", "TAG", "IMAGE", "ID", "SIZE", "SHARED", "UNIQUE"]
    assert [row.split()[:2] for row in rows] == [[f"{registry.host}/cli/busybox", "latest"],
                                                 [f"{registry.host}/cli/other", "1"]]  # fmt: skip
    assert all(human_size(base) in row for row in rows)
    assert footer == (f"2 images: {human_size(usage.total)} of layers, {human_size(usage.stored)} stored "
                      f"(each layer once), {human_size(base)} saved by sharing")  # fmt: skip
    r = cli(root, "rmi", f"{registry.host}/cli/busybox")
    assert r.returncode == 0, r.stderr
    assert r.stdout.splitlines()[:2] == [f"Untagged: {registry.host}/cli/busybox:latest",
                                         f"Deleted: {usage.images[0].image.id.partition(':')[2]}"]  # fmt: skip
    assert cli(root, "images", "-q").stdout == usage.images[1].image.id.partition(":")[2][:12] + "\n"
    assert len(store.layers.layers()) == 2
    r = cli(root, "rmi", "nothing/here")
    assert r.returncode == 1 and r.stderr == f"nsprim rmi: image `nothing/here`: not in the store `{root}`\n"
    r = cli(root, "image", "gc")
    assert (r.returncode, r.stdout) == (0, "Removed 0 blobs and 0 layers, 0 B\n"), r.stderr


def test_save_and_load_both_formats_round_trip(registry: Registry, root: Path, tmp_path: Path) -> None:
    ref = f"{registry.host}/cli/busybox:latest"
    assert cli(root, "pull", "--tls-verify=false", ref).returncode == 0
    image = ImageStore(root).image(ref)
    assert cli(root, "image", "save", "-o", str(tmp_path / "oci"), ref).returncode == 0
    r = cli(root, "image", "save", "--format", "docker-archive", "-o", str(tmp_path / "bb.tar"), ref)
    assert r.returncode == 0, r.stderr
    # skopeo reads both, and sees the same image (the same config: the same ID)
    skopeo = need_tool("skopeo", "skopeo")
    for source in (f"oci:{tmp_path / 'oci'}:{ref}", f"docker-archive:{tmp_path / 'bb.tar'}"):
        out = subprocess.run([skopeo, "inspect", "--config", "--raw", source], capture_output=True, check=True).stdout
        assert "sha256:" + __import__("hashlib").sha256(out).hexdigest() == image.id
    other = tmp_path / "other-store"
    r = cli(other, "image", "load", "-i", str(tmp_path / "oci"))
    assert (r.returncode, r.stdout) == (0, f"Loaded image: {ref}\n"), r.stderr
    r = cli(other, "image", "load", "-i", str(tmp_path / "bb.tar"), "--name", "localhost/again:1")
    assert (r.returncode, r.stdout) == (0, "Loaded image: localhost/again:1\n"), r.stderr
    r = cli(other, "run", "localhost/again:1", "cat", "/etc/hello")
    assert (r.returncode, r.stdout) == (0, "hello\n"), r.stderr
    assert [i.id for i in ImageStore(other).images()] == [image.id, image.id]


def test_errors_are_one_line(root: Path) -> None:
    r = cli(root, "pull", "--tls-verify=false", f"127.0.0.1:{free_port()}/no/registry:1")
    assert r.returncode == 1 and r.stderr.count("\n") == 1 and r.stderr.startswith("nsprim pull: ")
    r = cli(root, "pull", "Not A Reference")
    assert r.returncode == 1 and r.stderr.count("\n") == 1 and "image reference" in r.stderr
    r = cli(root, "run", "--ro", "busybox", "true")
    assert r.returncode == 125 and "--ro" in r.stderr and r.stderr.count("\n") == 1
    assert ImageStore(root).images() == []


def test_a_named_container_keeps_its_changes_for_commit_until_rm(registry: Registry, root: Path) -> None:
    ref = f"{registry.host}/cli/busybox:latest"
    name = f"keep-{os.getpid()}"
    change = "echo changed > /etc/motd; rm /etc/hello"
    r = cli(root, "run", "--tls-verify=false", "--name", name, ref, "sh", "-c", change)
    assert r.returncode == 0, r.stderr
    r = cli(root, "run", "--name", name, ref, "true")
    assert r.returncode == 125 and f"container name `{name}` is in use" in r.stderr
    r = cli(root, "commit", "-m", "motd in, hello out", name, "localhost/changed:1")
    assert r.returncode == 0, r.stderr
    store = ImageStore(root)
    changed = store.image("localhost/changed:1")
    assert r.stdout == changed.id.partition(":")[2] + "\n"
    assert changed.config.history[-1].comment == "motd in, hello out"
    r = cli(root, "run", "localhost/changed:1", "sh", "-c", "cat /etc/motd; ls /etc")
    assert (r.returncode, r.stdout) == (0, "changed\nmotd\n"), r.stderr
    # the container's image stays while the container does, its name gone or not
    assert cli(root, "rmi", ref, "localhost/changed:1").returncode == 0
    assert store.images() == [] and len(store.layers.layers()) == 2
    r = cli(root, "rm", name)
    assert (r.returncode, r.stdout) == (0, f"{name}\n"), r.stderr
    assert cli(root, "image", "gc").returncode == 0
    assert store.layers.layers() == [] and store.containers.entries() == []
    r = cli(root, "rm", name)
    assert r.returncode == 1 and r.stderr.count("\n") == 1


def test_push_sends_the_image_as_pulled_and_a_commit_with_its_change(registry: Registry, root: Path,
                                                                     tmp_path: Path) -> None:  # fmt: skip
    ref = f"{registry.host}/cli/busybox:latest"
    assert cli(root, "pull", "--tls-verify=false", ref).returncode == 0
    pulled = ImageStore(root).image(ref)
    r = cli(root, "push", "--tls-verify=false", ref, f"{registry.host}/cli/copy:1")
    assert (r.returncode, r.stdout) == (0, pulled.digest + "\n"), r.stderr  # byte for byte: the same digest
    name = f"push-{os.getpid()}"
    assert cli(root, "run", "--name", name, ref, "sh", "-c", "echo pushed > /etc/motd").returncode == 0
    assert cli(root, "commit", name, f"{registry.host}/cli/changed:1").returncode == 0
    r = cli(root, "push", "--tls-verify=false", f"{registry.host}/cli/changed:1")
    assert r.returncode == 0, r.stderr
    elsewhere = tmp_path / "elsewhere"
    r = cli(elsewhere, "run", "--tls-verify=false", f"{registry.host}/cli/changed:1", "cat", "/etc/motd")
    assert (r.returncode, r.stdout) == (0, "pushed\n"), r.stderr
    assert cli(root, "rm", name).returncode == 0
    r = cli(root, "push", "--tls-verify=false", "nothing/here")
    assert r.returncode == 1 and r.stderr.count("\n") == 1
