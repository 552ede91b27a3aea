"""Whatever is wrong with a layer tar, or with what a caller passes, comes back as an NsprimError.

Corrupt and truncated tars, names the kernel cannot take, numbers out of
range, a path that is a directory, trees far deeper than Python's recursion
limit (extracted, committed and removed without recursion).
"""

from __future__ import annotations

import bz2
import gzip
import io
import lzma
import math
import tarfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from nsprim.errors import CorruptLayerError, LayerLimitError, NsprimError, SyscallError
from nsprim.fs.layers import ExtractLimits, LayerStore, UnsafeTarEntryError, commit, disk_usage, extract_layer

DEEP = 1500  # past Python's default recursion limit (1000)


def small_tar() -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as tf:
        for name, data in (("etc/hosts", b"h" * 700), ("etc/passwd", b"root\n")):
            ti = tarfile.TarInfo(name)
            ti.size = len(data)
            tf.addfile(ti, io.BytesIO(data))
    return buf.getvalue()


def corrupt_inputs() -> list[tuple[str, bytes]]:
    tar = small_tar()
    gz = gzip.compress(tar)
    flipped = bytearray(gz)
    flipped[len(gz) // 2] ^= 0xFF
    return [
        ("empty", b""),
        ("garbage", b"not a tar at all " * 64),
        ("truncated-header", tar[:300]),
        ("truncated-data", tar[:1400]),
        ("truncated-gzip", gz[: len(gz) // 2]),
        ("corrupt-gzip", bytes(flipped)),
        ("truncated-bzip2", bz2.compress(tar)[:60]),
        ("truncated-xz", lzma.compress(tar)[:80]),
    ]


@pytest.mark.parametrize(("kind", "data"), corrupt_inputs(), ids=[k for k, _ in corrupt_inputs()])
def test_corrupt_and_truncated_tars_are_corrupt_layer_errors(tmp_path: Path, kind: str, data: bytes) -> None:
    tar = tmp_path / f"{kind}.tar"
    tar.write_bytes(data)
    with pytest.raises(CorruptLayerError) as info:
        extract_layer(tar, tmp_path / "layer")
    assert str(info.value).startswith(f"extract layer `{tar}`: ") and "\n" not in str(info.value)
    assert info.value.layer == str(tar)
    assert [p.name for p in tmp_path.iterdir()] == [tar.name]
    store = LayerStore(tmp_path / "store")
    with pytest.raises(CorruptLayerError):
        store.add_tar(tar)
    assert store.layers() == [] and list((store.root / "tmp").iterdir()) == []


def test_truncated_data_names_the_entry_it_cut(tmp_path: Path) -> None:
    (tmp_path / "t.tar").write_bytes(small_tar()[:1400])  # inside etc/hosts' data
    with pytest.raises(CorruptLayerError, match=r"tar entry `etc/hosts`: truncated or corrupt") as info:
        extract_layer(tmp_path / "t.tar", tmp_path / "layer")
    assert info.value.entry == "etc/hosts"


def test_sources_that_are_not_files_are_syscall_errors(tmp_path: Path) -> None:
    (tmp_path / "adir").mkdir()
    for src, err in ((tmp_path / "adir", "Is a directory"), (tmp_path / "missing.tar", "No such file")):
        with pytest.raises(SyscallError, match=f"`{src}`: {err}"):
            extract_layer(src, tmp_path / "layer")
        with pytest.raises(SyscallError, match=err):
            LayerStore(tmp_path / "store").add_tar(src)
    (tmp_path / "file").write_text("")
    with pytest.raises(SyscallError, match=r"open layer store `.*/file/store`: (File exists|Not a directory)"):
        LayerStore(tmp_path / "file" / "store")


def one_member(path: Path, name: str, **attrs: object) -> Path:
    with tarfile.open(path, "w", format=tarfile.PAX_FORMAT) as tf:
        ti = tarfile.TarInfo(name)
        for k, v in attrs.items():
            setattr(ti, k, v)
        tf.addfile(ti, io.BytesIO(b""))
    return path


@pytest.mark.parametrize(
    ("name", "attrs", "error", "message"),
    [
        ("d/" + "n" * 300, {}, UnsafeTarEntryError, "a name component of 300 bytes \\(NAME_MAX is 255\\)"),
        ("/".join(["d" * 200] * 21), {}, LayerLimitError, "a name of 4220 bytes, over the limit max_path_length=4095"),
        ("f", {"uid": 1 << 40}, UnsafeTarEntryError, "owner 1099511627776:0 is out of range"),
        (
            "link",
            {"type": tarfile.SYMTYPE, "pax_headers": {"linkpath": "x\0y"}},
            UnsafeTarEntryError,
            "NUL byte in link",
        ),
        ("dev", {"type": tarfile.CHRTYPE, "devmajor": 1 << 20}, UnsafeTarEntryError, "device number .* out of range"),
        ("x", {"pax_headers": {"SCHILY.xattr.user.a\0b": "1"}}, UnsafeTarEntryError, "bad xattr name"),
    ],
)
def test_names_and_numbers_the_kernel_cannot_take_are_refused_first(
    tmp_path: Path, name: str, attrs: dict[str, object], error: type[Exception], message: str
) -> None:
    tar = one_member(tmp_path / "t.tar", name, **attrs)
    with pytest.raises(error, match=message) as info:
        extract_layer(tar, tmp_path / "layer", preserve_special=True)
    assert isinstance(info.value, NsprimError) and info.value.entry == name  # type: ignore[attr-defined]
    assert [p.name for p in tmp_path.iterdir()] == ["t.tar"]


@pytest.mark.parametrize("mtime", [math.nan, math.inf, 1e30, -1e30])
def test_any_mtime_is_taken(tmp_path: Path, mtime: float) -> None:
    extract_layer(one_member(tmp_path / "t.tar", "f", pax_headers={"mtime": str(mtime)}), tmp_path / "layer")
    assert (tmp_path / "layer" / "f").is_file()


def test_a_kernel_refusal_names_the_entry(tmp_path: Path) -> None:
    # user.* xattrs are only for files and directories: the kernel refuses one on a symlink
    tar = one_member(
        tmp_path / "t.tar", "link", type=tarfile.SYMTYPE, linkname="x", pax_headers={"SCHILY.xattr.user.a": "1"}
    )
    with pytest.raises(SyscallError, match="tar entry `link`: Operation not permitted"):
        extract_layer(tar, tmp_path / "layer")
    assert [p.name for p in tmp_path.iterdir()] == ["t.tar"]


def test_chains_of_extended_headers_and_huge_ones_are_corrupt(tmp_path: Path) -> None:
    first = tarfile.TarInfo("first").tobuf(format=tarfile.USTAR_FORMAT)  # an empty file, then the bad headers
    ti = tarfile.TarInfo("f")
    ti.pax_headers = {"comment": "x"}
    pax_header = ti.tobuf(format=tarfile.PAX_FORMAT)[:1024]  # one extended header (header block + its record)
    (tmp_path / "chain.tar").write_bytes(first + pax_header * 3000 + small_tar())  # tarfile would recurse 3000 deep
    with pytest.raises(CorruptLayerError, match=r"after tar entry `first`: .*more than 16 extended headers in a row"):
        extract_layer(tmp_path / "chain.tar", tmp_path / "layer")

    big = tarfile.TarInfo("././@PaxHeader")
    big.type, big.size = tarfile.XHDTYPE, 64 << 20  # read whole into memory by tarfile
    with gzip.open(tmp_path / "big.tar.gz", "wb") as f:
        f.write(first + big.tobuf(format=tarfile.USTAR_FORMAT) + bytes(64 << 20) + small_tar())
    with pytest.raises(CorruptLayerError, match="an extended header of 67108864 bytes"):
        extract_layer(tmp_path / "big.tar.gz", tmp_path / "layer")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["big.tar.gz", "chain.tar"]


_DEEP_TREES: list[Path] = []


@pytest.fixture(autouse=True)
def _remove_deep_trees() -> Iterator[None]:
    """pytest removes old temporary directories with shutil.rmtree, which recurses and
    fails on a 1,500-deep tree (and then every later tmp_path test): remove them here."""
    yield
    from nsprim.fs.layers.tree import remove_tree

    while _DEEP_TREES:
        tree = _DEEP_TREES.pop()
        if tree.exists():
            remove_tree(tree)


def deep_tree(root: Path, depth: int = DEEP) -> Path:
    _DEEP_TREES.append(root)
    p = root
    p.mkdir()
    for _ in range(depth):  # not os.makedirs, which recurses
        p = p / "d"
        p.mkdir()
    (p / "bottom").write_text("deep")
    return root


def test_a_deep_layer_is_committed_stored_and_removed(tmp_path: Path) -> None:
    src = deep_tree(tmp_path / "src")
    stats = commit(src, tmp_path / "deep.tar")
    assert stats.entries == DEEP + 1
    store = LayerStore(tmp_path / "store")
    with pytest.raises(LayerLimitError, match="a name 1025 components deep, over the limit max_depth=1024"):
        store.add_tar(tmp_path / "deep.tar")
    layer = store.add_tar(tmp_path / "deep.tar", limits=ExtractLimits(max_depth=2 * DEEP))
    assert (layer.diff / "/".join(["d"] * DEEP) / "bottom").read_text() == "deep"
    assert disk_usage(layer.diff) > 0
    store.remove_layer(layer.digest)
    assert store.layers() == [] and list((store.root / "tmp").iterdir()) == []


def test_a_deep_layer_that_fails_at_its_end_leaves_nothing(tmp_path: Path) -> None:
    src = deep_tree(tmp_path / "src")
    commit(src, tmp_path / "deep.tar")
    with open(tmp_path / "deep.tar", "r+b") as f:  # replace the end of archive with one more, failing, member
        with tarfile.open(fileobj=f) as tf:
            end = tf.getmembers()[-1].offset_data + 512
        f.seek(end)
        f.truncate()
        bad = tarfile.TarInfo("hl")
        bad.type, bad.linkname = tarfile.LNKTYPE, "not/there"
        f.write(bad.tobuf(format=tarfile.PAX_FORMAT) + bytes(1024))
    (tmp_path / "out").mkdir()
    with pytest.raises(UnsafeTarEntryError, match="tar entry `hl`: `not` does not exist in the layer"):
        extract_layer(tmp_path / "deep.tar", tmp_path / "out" / "layer", limits=ExtractLimits(max_depth=2 * DEEP))
    assert list((tmp_path / "out").iterdir()) == []  # the 1,500-deep temporary tree went too


def test_a_deep_container_upper_is_removed(tmp_path: Path) -> None:
    store = LayerStore(tmp_path / "store")
    base = store.add_dir(deep_tree(tmp_path / "base", 3))
    root = store.create_container(store.save_image("deep", [base]))
    deep_tree(root.upper / "deep")  # what a container left behind
    assert store.disk_usage() > 0
    root.remove()
    assert list((store.root / "containers").iterdir()) == []


def test_removal_never_crosses_into_a_mount(tmp_path: Path) -> None:
    from nsprim.fs.mount import bind, umount

    store = LayerStore(tmp_path / "store")
    root = store.create_container(store.save_image("m", [store.add_dir(deep_tree(tmp_path / "base", 1))]))
    keep = tmp_path / "keep"
    keep.mkdir()
    (keep / "precious").write_text("x")
    (root.upper / "mnt").mkdir()
    bind(keep, root.upper / "mnt")  # the same file system: st_dev alone would not tell
    try:
        with pytest.raises(SyscallError, match=r"upper/mnt` is a mount point: unmount it first"):
            root.remove()
    finally:
        umount(root.upper / "mnt")
    assert (keep / "precious").read_text() == "x"
    root.remove()
