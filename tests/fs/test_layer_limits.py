"""Extraction limits: a tar over one is refused, naming the limit and the entry, before anything is written."""

from __future__ import annotations

import gzip
import io
import tarfile
from pathlib import Path

import pytest

from nsprim.errors import ConfigError, LayerLimitError, NsprimError
from nsprim.fs.layers import ExtractLimits, LayerStore, apply_layer, extract_layer

MiB = 1 << 20


def gzip_bomb(path: Path, size: int, name: str = "zeros") -> Path:
    """A gzip'd tar of one file of *size* zero bytes, made of concatenated gzip members (cheap at any size)."""
    ti = tarfile.TarInfo(name)
    ti.size = size
    one_mib = gzip.compress(bytes(MiB), compresslevel=9)
    full, rest = divmod(size, MiB)
    with open(path, "wb") as f:
        f.write(gzip.compress(ti.tobuf(format=tarfile.PAX_FORMAT)))
        for _ in range(full):
            f.write(one_mib)
        f.write(gzip.compress(bytes(rest + (-size % 512) + 1024)))  # the rest, padding, end of archive
    return path


class CountingFile(io.FileIO):
    """A file that counts the bytes read from it."""

    read_bytes = 0

    def read(self, n: int = -1) -> bytes:
        data = super().read(n)
        self.read_bytes += len(data)
        return data

    def readinto(self, b: bytearray | memoryview) -> int:  # type: ignore[override]
        n = super().readinto(b) or 0
        self.read_bytes += n
        return n


def test_a_gzip_bomb_is_refused_by_default_without_writing_it(tmp_path: Path) -> None:
    """The audit's example: 2 MiB of gzip that unpacks to a 2 GiB file."""
    bomb = gzip_bomb(tmp_path / "bomb.tar.gz", 2 << 30)
    assert bomb.stat().st_size < 3 * MiB
    with CountingFile(bomb) as f, pytest.raises(LayerLimitError) as info:
        extract_layer(f, tmp_path / "layer")
    assert f.read_bytes < 1 * MiB  # stopped at the first header: the 2 GiB were never even unpacked
    assert (info.value.limit, info.value.entry) == ("max_ratio", "zeros")
    assert "over the limit max_ratio=100" in str(info.value) and "tar entry `zeros`" in str(info.value)
    assert [p.name for p in tmp_path.iterdir()] == ["bomb.tar.gz"]


def test_the_default_size_limit_stops_a_bigger_bomb_at_its_header(tmp_path: Path) -> None:
    bomb = gzip_bomb(tmp_path / "bomb.tar.gz", (32 << 30) + MiB)  # 33 MiB of gzip, past the 32 GiB default
    limits = ExtractLimits(max_ratio=None)
    with CountingFile(bomb) as f, pytest.raises(LayerLimitError, match=r"32\.0 GiB.*over the limit max_size") as info:
        extract_layer(f, tmp_path / "layer", limits=limits)
    assert f.read_bytes < 1 * MiB
    assert (info.value.limit, info.value.entry, info.value.maximum) == ("max_size", "zeros", 32 << 30)
    assert [p.name for p in tmp_path.iterdir()] == ["bomb.tar.gz"]


def tar_of(path: Path, members: list[tuple[str, bytes | str | None]]) -> Path:
    """members: (name, file contents, or a symlink target as str, or None for a directory)."""
    with tarfile.open(path, "w", format=tarfile.PAX_FORMAT) as tf:
        for name, body in members:
            ti = tarfile.TarInfo(name)
            if body is None:
                ti.type = tarfile.DIRTYPE
            elif isinstance(body, str):
                ti.type, ti.linkname = tarfile.SYMTYPE, body
            else:
                ti.size = len(body)
            tf.addfile(ti, io.BytesIO(body) if isinstance(body, bytes) else None)
    return path


LONG = "d" * 10 + "/" + "f" * 10
CASES = [
    ("max_size", ExtractLimits(max_size=MiB), [("a", bytes(600 << 10)), ("b", bytes(600 << 10))], "b"),
    ("max_entries", ExtractLimits(max_entries=3), [("d", None), ("d/1", b""), ("d/2", b""), ("d/3", b"")], "d/3"),
    ("max_path_length", ExtractLimits(max_path_length=20), [("ok", b""), (LONG, b"")], LONG),
    ("max_path_length", ExtractLimits(max_path_length=20), [("link", "t" * 21)], "link"),
    ("max_depth", ExtractLimits(max_depth=3), [("a/b/c", None), ("a/b/c/d", None)], "a/b/c/d"),
    ("max_ratio", ExtractLimits(max_ratio=2, ratio_grace=MiB), [("z", bytes(3 * MiB))], "z"),
]  # fmt: skip


@pytest.mark.parametrize(("limit", "limits", "members", "entry"), CASES)
def test_a_lowered_limit_names_itself_and_the_entry_and_leaves_nothing(
    tmp_path: Path, limit: str, limits: ExtractLimits, members: list[tuple[str, bytes | str | None]], entry: str
) -> None:
    tar = tar_of(tmp_path / "t.tar", members)
    if limit == "max_ratio":  # a gzip'd tar, so that the contents outweigh it
        tar.with_suffix(".gz").write_bytes(gzip.compress(tar.read_bytes()))
        tar.unlink()
        tar = tar.with_suffix(".gz")
    with pytest.raises(LayerLimitError) as info:
        extract_layer(tar, tmp_path / "layer", limits=limits)
    err = info.value
    assert isinstance(err, NsprimError) and (err.limit, err.entry, err.layer) == (limit, entry, str(tar))
    assert str(err).startswith(f"extract layer `{tar}`: tar entry `{entry}`: ")
    assert f"over the limit {limit}=" in str(err) and f"ExtractLimits({limit}=...)" in str(err)
    assert [p.name for p in tmp_path.iterdir()] == [tar.name]

    root = tmp_path / "root"
    root.mkdir()
    with pytest.raises(LayerLimitError):
        apply_layer(tar, root, limits=limits)
    assert list(root.iterdir()) == []  # checked before the first change

    store = LayerStore(tmp_path / "store", limits=limits)
    with pytest.raises(LayerLimitError, match=limit):
        store.add_tar(tar)
    assert store.layers() == [] and list((store.root / "tmp").iterdir()) == []
    raised = {limit: getattr(limits, limit) * 10**6} if limit != "max_ratio" else {"max_ratio": None}
    assert store.add_tar(tar, limits=ExtractLimits(**raised)).diff.is_dir()  # a caller can raise it


def test_a_stream_is_held_to_the_limits_while_it_is_read(tmp_path: Path) -> None:
    r = io.BufferedReader(io.BytesIO(bytes(3 * MiB)))  # not seekable: spooled, so bounded as it comes
    r.seekable = lambda: False  # type: ignore[method-assign]
    with pytest.raises(LayerLimitError, match="max_size") as info:
        extract_layer(r, tmp_path / "layer", limits=ExtractLimits(max_size=MiB, max_entries=10))
    assert info.value.layer == "<stream>"
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize(
    "bad", [{"max_size": 0}, {"max_entries": -1}, {"max_depth": True}, {"max_path_length": 1.5}, {"max_ratio": 0}]
)
def test_limits_must_be_positive_numbers(bad: dict[str, object]) -> None:
    (field,) = bad
    with pytest.raises(ConfigError, match=f"ExtractLimits.{field}") as info:
        ExtractLimits(**bad)  # type: ignore[arg-type]
    assert info.value.what == field
