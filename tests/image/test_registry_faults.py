"""Pulls that go wrong midway, from a real registry behind a proxy that misbehaves (tests/image/proxy.py):
a connection cut mid-blob (resumed with Range, verified, each byte reported once), a registry that
ignores Range (fetched whole again, progress not counted twice), a pull that was killed (the next
one goes on from what it fetched; a leftover that is not the blob's start is fetched whole), two
processes pulling into one layout at once (each blob fetched once), and a
manifest naming a layer of a media type nothing reads (a typed error naming it)."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from nsprim.errors import ImageError, RegistryError
from nsprim.image import Descriptor, ImageConfig, ImageLayout, ImageRootFS, MediaType, Platform
from nsprim.image.registry import RegistryClient, pull, push

from .proxy import FaultyProxy
from .registries import ImageSet, Recorder, Registry, plain_registry, seeded, test_images

__all__ = ["plain_registry", "seeded", "test_images"]  # fixtures, imported


def _port(registry: Registry) -> int:
    return int(registry.host.rpartition(":")[2])


def _base(test_images: ImageSet) -> tuple[str, int]:
    """The digest and size of busybox's base layer (the largest blob, about 1 MB)."""
    layer = test_images.layout.manifest("busybox").layers[0]
    return layer.digest, layer.size


def _sizes(layout: ImageLayout, tag: str) -> dict[str, int]:
    manifest = layout.manifest(tag)
    return {d.digest: d.size for d in (manifest.config, *manifest.layers)}


def _verified(layout: ImageLayout, tag: str) -> None:
    for digest, size in _sizes(layout, tag).items():
        layout.read_blob(digest, size)
    left = [p for p in layout.path.rglob("*") if p.name.startswith((".tmp-", ".partial-"))]
    assert left == []


def _blob_gets(proxy: FaultyProxy, digest: str) -> list[str]:
    """The ``Range`` of each GET of *digest* the proxy forwarded (``""``: none)."""
    return [r.range for r in proxy.requests if r.method == "GET" and r.path.endswith(digest)]


def test_a_connection_cut_mid_blob_is_resumed_with_range(seeded: Registry, test_images: ImageSet,
                                                         tmp_path: Path) -> None:  # fmt: skip
    digest, size = _base(test_images)
    layout = ImageLayout.create(tmp_path / "layout")
    progress = Recorder()
    with FaultyProxy(_port(seeded), blob=digest, after=size // 2) as proxy:
        desc = pull(f"{proxy.host}/busybox:latest", layout, tls_verify=False, progress=progress)
    assert proxy.faults == 1
    first, then = _blob_gets(proxy, digest)
    assert first == "" and then.startswith("bytes=") and 0 < int(then[6:].rstrip("-")) < size
    assert desc.digest == test_images.layout.descriptor("busybox").digest
    assert progress.bytes == _sizes(layout, desc.ref_name) == progress.sizes
    _verified(layout, desc.ref_name)


def test_a_registry_that_ignores_range_is_fetched_whole_and_counted_once(
    seeded: Registry, test_images: ImageSet, tmp_path: Path
) -> None:
    digest, size = _base(test_images)
    layout = ImageLayout.create(tmp_path / "layout")
    progress = Recorder()
    with FaultyProxy(_port(seeded), blob=digest, after=size // 2, strip_range=True) as proxy:
        desc = pull(f"{proxy.host}/busybox:latest", layout, tls_verify=False, progress=progress)
    first, then = _blob_gets(proxy, digest)
    assert proxy.faults == 1 and first == "" and then.startswith("bytes=")  # asked for, answered with 200
    assert progress.bytes[digest] == size
    assert progress.bytes == _sizes(layout, desc.ref_name)
    _verified(layout, desc.ref_name)


_PULL = """
import sys
from nsprim.image import ImageLayout
from nsprim.image.registry import pull
pull(sys.argv[1], ImageLayout(sys.argv[2]), tls_verify=False, jobs=1)
"""


def test_the_pull_after_one_that_was_killed_goes_on_from_its_partial_blob(
    seeded: Registry, test_images: ImageSet, tmp_path: Path
) -> None:
    digest, size = _base(test_images)
    layout = ImageLayout.create(tmp_path / "layout")
    partial = layout.path / "blobs/sha256" / f".partial-{digest.partition(':')[2]}"
    with FaultyProxy(_port(seeded), blob=digest, after=size // 2, stall=True) as proxy:
        ref = f"{proxy.host}/busybox:latest"
        child = subprocess.Popen([sys.executable, "-c", _PULL, ref, str(layout.path)], stderr=subprocess.PIPE)
        try:
            seen, deadline = -1, time.monotonic() + 60
            while time.monotonic() < deadline:  # until the stalled blob's bytes have all been written
                now = partial.stat().st_size if proxy.faults and partial.exists() else -1
                if now > 0 and now == seen:
                    break
                seen = now
                time.sleep(0.3)
            assert seen > 0, child.stderr.read() if child.poll() is not None and child.stderr else "no partial blob"
        finally:
            os.kill(child.pid, signal.SIGKILL)
            child.wait()
            if child.stderr:
                child.stderr.close()
        left = partial.stat().st_size
        assert 0 < left < size and layout.tags() == []

        progress = Recorder()
        desc = pull(ref, layout, tls_verify=False, progress=progress)
    assert _blob_gets(proxy, digest)[-1] == f"bytes={left}-"
    fetched = {d: n for d, n in _sizes(layout, desc.ref_name).items() if progress.begun[d] == "fetch"}
    assert progress.begun[digest] == "fetch" and progress.bytes == fetched  # what was there reported too, once
    _verified(layout, desc.ref_name)


def test_two_processes_pulling_one_image_into_one_layout_fetch_each_blob_once(
    seeded: Registry, test_images: ImageSet, tmp_path: Path
) -> None:
    layout = ImageLayout.create(tmp_path / "layout")
    with FaultyProxy(_port(seeded), delay=0.02) as proxy:
        ref = f"{proxy.host}/busybox:latest"
        children = [subprocess.Popen([sys.executable, "-c", _PULL, ref, str(layout.path)], stderr=subprocess.PIPE)
                    for _ in range(2)]  # fmt: skip
        errors = [child.communicate(timeout=120)[1] for child in children]
    assert [child.returncode for child in children] == [0, 0], errors
    for digest in _sizes(layout, ref):
        assert len(_blob_gets(proxy, digest)) == 1  # the second waited for the first, then had it
    assert layout.tags() == [ref]
    _verified(layout, ref)


def test_a_partial_blob_that_is_not_the_blobs_start_is_fetched_whole(
    seeded: Registry, test_images: ImageSet, tmp_path: Path
) -> None:
    digest, size = _base(test_images)
    layout = ImageLayout.create(tmp_path / "layout")
    (layout.path / "blobs/sha256" / f".partial-{digest.partition(':')[2]}").write_bytes(b"x" * 4096)
    progress = Recorder()
    with FaultyProxy(_port(seeded)) as proxy:
        desc = pull(f"{proxy.host}/busybox:latest", layout, tls_verify=False, progress=progress)
    assert _blob_gets(proxy, digest) == ["bytes=4096-", ""]
    assert progress.bytes[digest] == size
    _verified(layout, desc.ref_name)


def test_leftovers_of_killed_writers_are_removed_but_not_a_live_writers(tmp_path: Path) -> None:
    layout = ImageLayout.create(tmp_path / "layout")
    dead = [layout.path / "blobs/sha256/.tmp-0123", layout.path / "blobs/sha256/.partial-ab", layout.path / ".tmp-x"]
    for path in dead:
        path.write_bytes(b"left")
    live = "sha256:" + "c" * 64
    with layout.partial_blob(live) as writer:
        writer.write(b"being written")
        assert sorted(layout.remove_leftovers()) == sorted(dead)
        assert not any(p.exists() for p in dead)
    assert not [p for p in layout.path.rglob(".*")]  # the live one's, given up, removed by its writer


def _plain(d: Descriptor) -> dict[str, object]:
    return {"mediaType": d.media_type, "digest": d.digest, "size": d.size}


def _put_by_hand(registry: Registry, repository: str, layout: ImageLayout, blobs: list[Descriptor],
                 manifest: bytes) -> None:  # fmt: skip
    """*blobs* of *layout* and the *manifest* put into *repository* request by request (push, like
    pull, refuses what it cannot read)."""
    with RegistryClient(registry.host, scopes=[f"repository:{repository}:pull,push"], tls_verify=False) as client:
        for desc in blobs:
            with client.request("POST", f"/v2/{repository}/blobs/uploads/", repository=repository, what="upload",
                                ok=(202,)) as resp:  # fmt: skip
                resp.read()
            location = resp.header("Location") + "&digest=" + desc.digest
            with client.request("PUT", location, repository=repository, what="blob", ok=(201,),
                                body=layout.read_blob(desc.digest)) as resp:  # fmt: skip
                resp.read()
        headers = {"Content-Type": MediaType.OCI_MANIFEST}
        with client.request("PUT", f"/v2/{repository}/manifests/1", repository=repository, what="manifest",
                            ok=(201,), headers=headers, body=manifest) as resp:  # fmt: skip
            resp.read()


def _nothing_kept(layout: ImageLayout) -> bool:
    return layout.tags() == [] and not [p for p in layout.path.rglob("*") if p.is_file() and "blobs" in p.parts]


def test_a_layer_of_a_media_type_nothing_reads_is_a_typed_error_naming_it(
    seeded: Registry, test_images: ImageSet, tmp_path: Path
) -> None:
    strange = "application/vnd.example.strange.layer"
    layout = ImageLayout.create(tmp_path / "source")
    layer = layout.write_blob(b"not a tar", strange)
    config = ImageConfig(architecture=Platform.host().architecture, os="linux",
                         rootfs=ImageRootFS(type="layers", diff_ids=(layer.digest,)))  # fmt: skip
    config_desc = layout.write_blob(config.dumps(), MediaType.OCI_CONFIG)
    manifest = {"schemaVersion": 2, "mediaType": MediaType.OCI_MANIFEST, "config": _plain(config_desc),
                "layers": [_plain(layer)]}  # fmt: skip
    data = json.dumps(manifest).encode()
    manifest_desc = layout.write_blob(data, MediaType.OCI_MANIFEST)
    with pytest.raises(ImageError, match=strange):
        push(layout, manifest_desc, f"{seeded.host}/strange:1", tls_verify=False)
    _put_by_hand(seeded, "strange", layout, [layer, config_desc], data)
    target = ImageLayout.create(tmp_path / "target")
    with pytest.raises(RegistryError, match=f"layers\\[0\\].mediaType.*{strange}") as info:
        pull(f"{seeded.host}/strange:1", target, tls_verify=False)
    assert info.value.digest == manifest_desc.digest and info.value.repository == "strange"
    assert _nothing_kept(target)


def test_a_manifest_of_a_media_type_nothing_reads_is_a_typed_error_naming_it(
    seeded: Registry, test_images: ImageSet, tmp_path: Path
) -> None:
    # a manifest without its own mediaType (the OCI spec allows it): the registry's Content-Type says
    source = test_images.layout
    manifest = source.manifest("busybox")
    data = json.dumps({"schemaVersion": 2, "config": _plain(manifest.config),
                       "layers": [_plain(d) for d in manifest.layers]}).encode()  # fmt: skip
    _put_by_hand(seeded, "untyped", source, [manifest.config, *manifest.layers], data)
    pulled = pull(f"{seeded.host}/untyped:1", ImageLayout.create(tmp_path / "fine"), tls_verify=False)
    assert pulled.media_type == MediaType.OCI_MANIFEST
    strange = "application/vnd.example.thing+json"
    target = ImageLayout.create(tmp_path / "target")
    refused = f"media type `{re.escape(strange)}` is not an image manifest"
    with (
        FaultyProxy(_port(seeded), manifest_type=strange) as proxy,
        pytest.raises(RegistryError, match=refused) as info,
    ):
        pull(f"{proxy.host}/untyped:1", target, tls_verify=False)
    assert info.value.repository == "untyped" and _nothing_kept(target)
