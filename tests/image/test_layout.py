"""OCI image layouts: written by nsprim and read by skopeo, written by skopeo and read by nsprim,
every blob verified; the documents' models round-trip; bad documents are errors naming the field."""

from __future__ import annotations

import gzip
import hashlib
import io
import json
import subprocess
import tarfile
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from nsprim.errors import BlobDigestError, ImageError, ImageNotFoundError, SpecError
from nsprim.image import Descriptor, ImageConfig, ImageLayout, ImageRootFS, Index, Manifest, MediaType, Platform

from ..oci.bundles import make_rootfs
from ..tools import need_tool


def _layer(root: Path) -> tuple[bytes, str]:
    """The root file system as a gzip layer; and its diff ID (the digest of the tar itself)."""
    raw = io.BytesIO()
    with tarfile.open(fileobj=raw, mode="w") as tar:
        tar.add(root, arcname=".")
    data = raw.getvalue()
    return gzip.compress(data, mtime=0), "sha256:" + hashlib.sha256(data).hexdigest()


def _image(layout: ImageLayout, root: Path, tag: str, arch: str = "amd64") -> Manifest:
    blob, diff_id = _layer(root)
    layer = layout.write_blob(blob, MediaType.OCI_LAYER_GZIP)
    config = ImageConfig(
        architecture=arch, os="linux", rootfs=ImageRootFS(type="layers", diff_ids=(diff_id,)),
    )  # fmt: skip
    config_desc = layout.write_blob(config.dumps(), MediaType.OCI_CONFIG)
    manifest = Manifest(schema_version=2, media_type=MediaType.OCI_MANIFEST, config=config_desc, layers=(layer,))
    layout.add_image(manifest, tag)
    return manifest


def test_a_layout_nsprim_writes_is_one_skopeo_reads_and_copies(tmp_path: Path) -> None:
    skopeo = need_tool("skopeo", "skopeo")
    layout = ImageLayout.create(tmp_path / "layout")
    manifest = _image(layout, make_rootfs(tmp_path / "rootfs"), "latest")
    seen = json.loads(
        subprocess.run(
            [skopeo, "inspect", "--raw", f"oci:{layout.path}:latest"], check=True, capture_output=True
        ).stdout
    )
    assert seen["layers"][0]["digest"] == manifest.layers[0].digest
    assert seen["config"]["digest"] == manifest.config.digest
    subprocess.run(
        [skopeo, "copy", "--quiet", f"oci:{layout.path}:latest", f"oci:{tmp_path / 'copy'}:copied"],
        check=True, capture_output=True,
    )  # fmt: skip
    copy = ImageLayout(tmp_path / "copy")
    assert copy.tags() == ["copied"]
    theirs = copy.manifest("copied")
    assert [d.digest for d in theirs.layers] == [d.digest for d in manifest.layers]
    config = copy.config(theirs)
    assert config.rootfs.diff_ids == layout.config(manifest).rootfs.diff_ids
    assert copy.read_blob(theirs.layers[0].digest, theirs.layers[0].size) == layout.read_blob(manifest.layers[0].digest)


def test_a_corrupt_or_truncated_blob_is_named(tmp_path: Path) -> None:
    layout = ImageLayout.create(tmp_path / "layout")
    desc = layout.write_blob(b"the right bytes", MediaType.OCI_LAYER)
    path = layout.blob_path(desc.digest)
    path.write_bytes(b"the wrong bytes")
    with pytest.raises(BlobDigestError) as info:
        layout.read_blob(desc.digest, desc.size)
    assert info.value.blob == desc.digest and f"blob `{desc.digest}`: its content is `sha256:" in str(info.value)
    path.write_bytes(b"short")
    with pytest.raises(BlobDigestError, match="5 bytes, its descriptor says 15"):
        layout.read_blob(desc.digest, desc.size)
    with pytest.raises(SpecError, match="not a sha256"):
        layout.blob_path("sha256:../../etc/passwd")
    assert not [p for p in (tmp_path / "layout").rglob(".tmp-*")]


def test_a_multi_platform_index_resolves_to_the_platform(tmp_path: Path) -> None:
    layout = ImageLayout.create(tmp_path / "layout")
    root = make_rootfs(tmp_path / "rootfs")
    entries = []
    for arch in ("amd64", "arm64"):
        m = _image(layout, root, f"single-{arch}", arch)
        d = layout.write_blob(m.dumps(), MediaType.OCI_MANIFEST)
        variant = "v8" if arch == "arm64" else ""
        entries.append(d.replace(platform=Platform(architecture=arch, os="linux", variant=variant)))
    index = Index(schema_version=2, media_type=MediaType.OCI_INDEX, manifests=tuple(entries))
    desc = layout.write_blob(index.dumps(), MediaType.OCI_INDEX).replace(
        annotations={"org.opencontainers.image.ref.name": "multi"}
    )
    whole = layout.index()
    (layout.path / "index.json").write_bytes(whole.replace(manifests=(*whole.manifests, desc)).dumps())
    arm = layout.manifest("multi", Platform.parse("linux/arm64"))
    assert layout.config(arm).architecture == "arm64"
    assert layout.config(layout.manifest("multi", Platform.parse("linux/amd64"))).architecture == "amd64"
    with pytest.raises(ImageError, match=r"none for linux/s390x \(offered: linux/amd64, linux/arm64/v8\)"):
        layout.manifest("multi", Platform.parse("linux/s390x"))
    with pytest.raises(ImageNotFoundError, match="no image `nope`"):
        layout.manifest("nope")


@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"schemaVersion": 1}, "schemaVersion"),
        ({"mediaType": "application/vnd.example+json"}, "mediaType"),
        ({"config": {"mediaType": "text/plain", "digest": "sha256:" + "0" * 64, "size": 1}}, "config.mediaType"),
        (
            {"layers": [{"mediaType": "application/x-rar", "digest": "sha256:" + "0" * 64, "size": 1}]},
            "layers[0].mediaType",
        ),
        ({"layers": [{"mediaType": MediaType.OCI_LAYER, "digest": "md5:abc", "size": 1}]}, "layers[0].digest"),
        ({"layers": [{"mediaType": MediaType.OCI_LAYER, "size": 1}]}, "layers[0].digest"),
    ],
)
def test_a_bad_manifest_names_the_field(change: dict[str, object], field: str) -> None:
    doc: dict[str, object] = {
        "schemaVersion": 2,
        "mediaType": MediaType.OCI_MANIFEST,
        "config": {"mediaType": MediaType.OCI_CONFIG, "digest": "sha256:" + "1" * 64, "size": 2},
        "layers": [],
    }
    doc.update(change)
    with pytest.raises(SpecError) as info:
        Manifest.loads(json.dumps(doc))
    assert info.value.field == field, info.value


def test_a_docker_manifest_is_read_as_one() -> None:
    doc = {
        "schemaVersion": 2,
        "mediaType": MediaType.DOCKER_MANIFEST,
        "config": {"mediaType": MediaType.DOCKER_CONFIG, "digest": "sha256:" + "1" * 64, "size": 2},
        "layers": [{"mediaType": MediaType.DOCKER_LAYER_GZIP, "digest": "sha256:" + "2" * 64, "size": 3}],
    }
    m = Manifest.loads(json.dumps(doc))
    assert MediaType.LAYERS[m.layers[0].media_type] == "gzip"


def test_the_command_comes_from_entrypoint_and_cmd() -> None:
    config = ImageConfig.loads(
        json.dumps({
            "architecture": "amd64", "os": "linux", "rootfs": {"type": "layers", "diff_ids": []},
            "config": {"Entrypoint": ["/bin/sh", "-c"], "Cmd": ["echo hi"], "Env": ["A=1"], "WorkingDir": "/w"},
        })
    )  # fmt: skip
    assert config.config.argv() == ("/bin/sh", "-c", "echo hi")
    assert config.config.argv(["date"]) == ("/bin/sh", "-c", "date")
    assert config.config.argv(["date"], entrypoint=[]) == ("date",)


_hex = st.text("0123456789abcdef", min_size=64, max_size=64)
_descriptors = st.builds(
    lambda mt, h, size, ann: Descriptor(media_type=mt, digest=f"sha256:{h}", size=size, annotations=ann),
    st.sampled_from(sorted(MediaType.LAYERS)),
    _hex,
    st.integers(0, 2**40),
    st.dictionaries(st.text(min_size=1, max_size=8), st.text(max_size=8), max_size=2),
)


@given(config=_hex, layers=st.lists(_descriptors, max_size=4), extra=st.dictionaries(
    st.sampled_from(["x-nsprim-test", "future"]), st.integers(), max_size=1))  # fmt: skip
def test_a_manifest_round_trips_unknown_keys_included(
    config: str, layers: list[Descriptor], extra: dict[str, int]
) -> None:
    m = Manifest(
        schema_version=2,
        media_type=MediaType.OCI_MANIFEST,
        config=Descriptor(media_type=MediaType.OCI_CONFIG, digest=f"sha256:{config}", size=7),
        layers=tuple(layers),
        extra=extra,
    )
    again = Manifest.loads(m.dumps())
    assert again == m
    assert again.dumps() == m.dumps()
