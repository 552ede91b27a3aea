"""zstd layers: each decompressor there (the ``zstandard`` package, the ``zstd`` command; Python 3.14's
``compression.zstd`` where it runs) reads every frame of a stream, refuses what is not zstd with a
typed error naming the blob, and an image of zstd layers is unpacked, pushed and pulled, and put into
a registry by skopeo and pulled from it."""

from __future__ import annotations

import hashlib
import io
import subprocess
import sys
import tarfile
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from nsprim.errors import BlobDigestError, ConfigError, CorruptLayerError, ImageError
from nsprim.fs.layers import LayerStore
from nsprim.image import ImageConfig, ImageLayout, ImageRootFS, Manifest, MediaType, Platform, unpack
from nsprim.image.compression import ZSTD_DECOMPRESSORS, decompressed, zstd_decompressors
from nsprim.image.registry import pull, push

from ..conftest import requires_root
from ..tools import missing, need_tool
from .registries import Registry, plain_registry

__all__ = ["plain_registry"]  # fixtures, imported


def _zstd(data: bytes, *extra: str) -> bytes:
    """*data* compressed by the zstd command."""
    return subprocess.run([need_tool("zstd", "zstd"), "-q", "-c", *extra], input=data, capture_output=True,
                          check=True).stdout  # fmt: skip


@pytest.fixture(params=ZSTD_DECOMPRESSORS)
def decompressor(request: pytest.FixtureRequest) -> str:
    name: str = request.param
    if name not in zstd_decompressors():
        if name == "compression.zstd":
            pytest.skip(f"compression.zstd is Python 3.14's, this is {sys.version_info.major}.{sys.version_info.minor}")
        raise missing(name, "zstd" if name == "zstd" else "python3-zstandard (pip: zstandard, nsprim[zstd])")
    return name


def _read(data: bytes, name: str) -> bytes:
    with decompressed(io.BytesIO(data), "zstd", "blob `test`", zstd=name) as plain:
        return plain.read()


@settings(max_examples=20, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(parts=st.lists(st.binary(max_size=3000), min_size=1, max_size=3))
def test_every_frame_of_a_stream_is_read(decompressor: str, parts: list[bytes]) -> None:
    # frames one after another, as zstd:chunked writes a layer
    assert _read(b"".join(_zstd(p) for p in parts), decompressor) == b"".join(parts)


def test_a_large_stream_is_read_whole(decompressor: str) -> None:
    data = hashlib.sha256(b"seed").digest() * 200_000  # 6.4 MB, more than a pipe or a chunk holds
    assert _read(_zstd(data, "-1"), decompressor) == data


@pytest.mark.parametrize("data", [b"certainly not zstd", b""])
def test_what_is_not_zstd_is_a_corrupt_layer_naming_the_blob(decompressor: str, data: bytes) -> None:
    with pytest.raises(CorruptLayerError, match=f"blob `test`: not a zstd stream \\({decompressor}"):
        _read(data, decompressor)


def test_a_truncated_stream_is_refused(decompressor: str) -> None:
    whole = _zstd(bytes(range(256)) * 400)
    with pytest.raises(CorruptLayerError, match="blob `test`"):
        _read(whole[: len(whole) // 2], decompressor)


def test_without_any_zstd_decompressor_the_error_says_what_to_install(monkeypatch: pytest.MonkeyPatch,
                                                                      tmp_path: Path) -> None:  # fmt: skip
    monkeypatch.setenv("PATH", str(tmp_path))
    for module in ("zstandard", "compression.zstd"):
        monkeypatch.setitem(sys.modules, module, None)  # an import of it fails
    assert zstd_decompressors() == []
    with pytest.raises(ImageError, match=r"no zstd decompressor here .*nsprim\[zstd\].*`zstd` command"):
        _read(b"", None)  # type: ignore[arg-type]
    with pytest.raises(ImageError, match="`zstd` is not installed"):
        _read(b"", "zstd")
    with pytest.raises(ConfigError, match="zstd decompressor `lz4`"):
        _read(b"", "lz4")


# ---- images of zstd layers ---------------------------------------------------------------------


def _tar(files: dict[str, bytes]) -> bytes:
    raw = io.BytesIO()
    with tarfile.open(fileobj=raw, mode="w") as tar:
        for name, data in files.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return raw.getvalue()


def _zstd_image(layout: ImageLayout, tag: str) -> Manifest:
    tars = [_tar({"etc/base": b"base\n"}), _tar({"etc/top": b"zstd top layer\n"})]
    layers = tuple(layout.write_blob(_zstd(t), MediaType.OCI_LAYER_ZSTD) for t in tars)
    diff_ids = tuple("sha256:" + hashlib.sha256(t).hexdigest() for t in tars)
    config = ImageConfig(architecture=Platform.host().architecture, os="linux",
                         rootfs=ImageRootFS(type="layers", diff_ids=diff_ids))  # fmt: skip
    manifest = Manifest(schema_version=2, media_type=MediaType.OCI_MANIFEST, layers=layers,
                        config=layout.write_blob(config.dumps(), MediaType.OCI_CONFIG))  # fmt: skip
    layout.add_image(manifest, tag)
    return manifest


def _top_file(store: LayerStore, name: str) -> str:
    return next(Path(d) / "etc/top" for d in store.lower_dirs(name) if (Path(d) / "etc/top").exists()).read_text()


@requires_root
def test_an_image_of_zstd_layers_is_unpacked(tmp_path: Path) -> None:
    need_tool("zstd", "zstd")
    layout = ImageLayout.create(tmp_path / "layout")
    _zstd_image(layout, "z")
    store = LayerStore(tmp_path / "store")
    unpack(layout, "z", store, "z")
    assert _top_file(store, "z") == "zstd top layer\n"


@requires_root
def test_a_zstd_layer_whose_bytes_are_wrong_is_refused_and_not_kept(tmp_path: Path) -> None:
    layout = ImageLayout.create(tmp_path / "layout")
    manifest = _zstd_image(layout, "z")
    path = layout.blob_path(manifest.layers[1].digest)
    content = bytearray(path.read_bytes())
    content[-6] ^= 0xFF  # in the last block, or its checksum
    path.write_bytes(bytes(content))
    store = LayerStore(tmp_path / "store")
    with pytest.raises((BlobDigestError, CorruptLayerError)) as info:
        unpack(layout, "z", store, "z")
    assert manifest.layers[1].digest in str(info.value)
    assert len(store.layers()) == 1  # the base only


@requires_root
def test_a_zstd_image_goes_through_a_registry(plain_registry: Registry, tmp_path: Path) -> None:
    source = ImageLayout.create(tmp_path / "source")
    _zstd_image(source, "z")
    # put in by skopeo, pulled by nsprim; pushed by nsprim, read by skopeo
    plain_registry.skopeo_copy(f"oci:{source.path}:z", "zstd:1", "--preserve-digests")
    layout = ImageLayout.create(tmp_path / "layout")
    desc = pull(f"{plain_registry.host}/zstd:1", layout, tls_verify=False)
    assert desc.digest == source.descriptor("z").digest
    assert {d.media_type for d in layout.manifest(desc.ref_name).layers} == {MediaType.OCI_LAYER_ZSTD}
    store = LayerStore(tmp_path / "store")
    unpack(layout, desc.ref_name, store, "pulled")
    assert _top_file(store, "pulled") == "zstd top layer\n"
    pushed = push(layout, desc.ref_name, f"{plain_registry.host}/zstd-pushed:1", tls_verify=False)
    assert pushed.digest == desc.digest
    assert plain_registry.skopeo_inspect("zstd-pushed:1", "--raw") == source.read_blob(desc.digest)
