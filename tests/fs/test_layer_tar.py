"""Layer tars: commit with whiteouts, extract and apply back, preservation, and hostile tars."""

from __future__ import annotations

import io
import os
import shutil
import stat
import tarfile
from pathlib import Path

import pytest

from nsprim.fs.layers import UnsafeTarEntryError, apply_layer, commit, extract_layer
from nsprim.fs.overlay import OPAQUE_XATTR, OverlayMount

from .helpers import make_tree, snapshot


def names(tar: Path) -> list[str]:
    with tarfile.open(tar) as tf:
        return tf.getnames()


@pytest.fixture
def image(tmp_path: Path) -> tuple[Path, Path]:
    base = make_tree(tmp_path / "base", {"etc/passwd": "root\n", "etc/hosts": "h\n", "bin/sh": "sh", "data/d1/f": "1"})
    app = make_tree(tmp_path / "app", {"app/main.py": "main", "data/d1/g": "2", "data/d2/h": "3"})
    os.symlink("/etc/hosts", app / "app" / "hosts-link")
    return app, base  # top first


def container_changes(m: Path) -> None:
    """The CoW workload of the issue: write, delete, rename, chmod, replace a directory."""
    (m / "etc" / "hosts").write_text("changed\n")
    (m / "new.txt").write_text("new\n")
    (m / "etc" / "passwd").unlink()
    os.rename(m / "app" / "main.py", m / "app" / "run.py")
    os.chmod(m / "bin" / "sh", 0o700)
    shutil.rmtree(m / "data" / "d1")
    (m / "data" / "d1").mkdir()
    (m / "data" / "d1" / "fresh").write_text("fresh")


def flatten(layers: list[Path], dest: Path) -> Path:
    """Copy layers (top first) into one plain tree (no whiteouts in these layers)."""
    for layer in reversed(layers):
        shutil.copytree(layer, dest, symlinks=True, dirs_exist_ok=True)
    return dest


def test_commit_extract_and_apply_reproduce_the_container(tmp_path: Path, image: tuple[Path, Path]) -> None:
    app, base = image
    for d in ("upper", "work", "merged", "check"):
        (tmp_path / d).mkdir()
    with OverlayMount(tmp_path / "merged", [app, base], tmp_path / "upper", tmp_path / "work") as ov:
        container_changes(ov.target)
        view = snapshot(ov.target, times=True)
    tar = tmp_path / "layer.tar"
    stats = commit(tmp_path / "upper", tar)
    assert stats.digest is not None and stats.digest.startswith("sha256:")
    assert (stats.whiteouts, stats.opaque_dirs) == (2, 1)
    got = set(names(tar))
    assert {"etc/.wh.passwd", "app/.wh.main.py", "data/d1/.wh..wh..opq", "app/run.py", "new.txt"} <= got
    assert "etc/passwd" not in got and "data/d1/f" not in got
    assert commit(tmp_path / "upper", io.BytesIO()).digest == stats.digest  # deterministic

    layer = tmp_path / "layer"
    ex = extract_layer(tar, layer)
    assert (ex.whiteouts, ex.opaque_dirs) == (2, 1)
    wh = os.lstat(layer / "etc" / "passwd")
    assert stat.S_ISCHR(wh.st_mode) and wh.st_rdev == 0
    assert os.getxattr(layer / "data" / "d1", OPAQUE_XATTR) == b"y"
    with OverlayMount(tmp_path / "check", [layer, app, base]) as ro:
        assert snapshot(ro.target, times=True) == view

    flat = flatten([app, base], tmp_path / "flat")
    apply_layer(tar, flat)
    assert snapshot(flat, times=True) == view


def test_tars_preserve_everything(tmp_path: Path) -> None:
    src = make_tree(tmp_path / "src", {"d/file": "data", "d/sub/x": "x", "setuid": "s", "empty": ""})
    os.chmod(src / "setuid", 0o4755)
    os.chown(src / "d" / "file", 1234, 5678)
    os.link(src / "d" / "file", src / "d" / "hardlink")
    os.symlink("sub/x", src / "d" / "rel-link")
    os.symlink("/etc/passwd", src / "abs-link")
    os.mknod(src / "null", stat.S_IFCHR | 0o666, os.makedev(1, 3))
    os.mknod(src / "blk", stat.S_IFBLK | 0o600, os.makedev(7, 0))
    os.mkfifo(src / "fifo", 0o640)
    os.setxattr(src / "d" / "file", "user.note", b"\xffbinary\x00value")
    os.setxattr(src / "d", "trusted.custom", b"t")
    os.setxattr(src / "d", "trusted.overlay.origin", b"should not travel")
    os.utime(src / "d" / "sub" / "x", (1_000_000_000, 1_000_000_000))
    os.utime(src / "d" / "sub", (1_100_000_000, 1_100_000_000))
    tar = tmp_path / "t.tar"
    commit(src, tar)
    out = tmp_path / "out"
    extract_layer(tar, out, preserve_special=True)  # devices and setuid: as in a layer store
    os.removexattr(src / "d", "trusted.custom")  # never travels (see test_layer_special.py)
    assert snapshot(out, times=True) == snapshot(src, times=True)
    assert os.stat(out / "d" / "file").st_ino == os.stat(out / "d" / "hardlink").st_ino
    assert os.stat(out / "d" / "file").st_uid == 1234
    assert os.getxattr(out / "d" / "file", "user.note") == b"\xffbinary\x00value"
    assert os.listxattr(out / "d") == []
    assert int(os.stat(out / "d" / "sub").st_mtime) == 1_100_000_000


# ---- hostile tars ------------------------------------------------------------------------------


def make_tar(path: Path, entries: list[tuple[str, str, str]]) -> Path:
    """entries: (name, kind in file/dir/sym/link, content or link target)."""
    with tarfile.open(path, "w", format=tarfile.PAX_FORMAT) as tf:
        for name, kind, arg in entries:
            ti = tarfile.TarInfo(name)
            data = b""
            if kind == "dir":
                ti.type = tarfile.DIRTYPE
                ti.mode = 0o755
            elif kind == "sym":
                ti.type, ti.linkname = tarfile.SYMTYPE, arg
            elif kind == "link":
                ti.type, ti.linkname = tarfile.LNKTYPE, arg
            else:
                data = arg.encode()
                ti.size = len(data)
            tf.addfile(ti, io.BytesIO(data))
    return path


@pytest.mark.parametrize(
    ("entries", "bad", "why"),
    [
        ([("ok", "file", "1"), ("../escape", "file", "x")], "../escape", "`..`"),
        ([("a/../../escape", "file", "x")], "a/../../escape", "`..`"),
        ([("/etc/evil", "file", "x")], "/etc/evil", "absolute path"),
        ([("link", "link", "../../etc/passwd")], "link", "`..`"),
        ([("evil", "sym", "/etc"), ("evil/passwd", "file", "x")], "evil/passwd", "is a symlink"),
        ([("evil", "sym", "../../.."), ("evil/x", "file", "x")], "evil/x", "is a symlink"),
        ([("f", "file", "x"), ("f/x", "file", "x")], "f/x", "not a directory"),
        ([("evil", "sym", "/etc"), ("hl", "link", "evil/passwd")], "hl", "is a symlink"),
    ],
)
def test_hostile_tar_is_refused_and_leaves_nothing(
    tmp_path: Path, entries: list[tuple[str, str, str]], bad: str, why: str
) -> None:
    tar = make_tar(tmp_path / "bad.tar", entries)
    dest_parent = tmp_path / "store"
    dest_parent.mkdir()
    with pytest.raises(UnsafeTarEntryError, match=why) as info:
        extract_layer(tar, dest_parent / "layer")
    assert info.value.entry == bad
    assert f"tar entry `{bad}`" in str(info.value)
    assert list(dest_parent.iterdir()) == []  # not even a temporary directory
    assert not (tmp_path.parent / "escape").exists()


def test_strict_symlinks_refuse_absolute_and_escaping_links(tmp_path: Path) -> None:
    for target in ("/etc/passwd", "../../x", "a/../../../x"):
        tar = make_tar(tmp_path / "t.tar", [("dir", "dir", ""), ("dir/link", "sym", target)])
        with pytest.raises(UnsafeTarEntryError, match="points outside the layer"):
            extract_layer(tar, tmp_path / "layer", strict_symlinks=True)
        assert not (tmp_path / "layer").exists()
    tar = make_tar(tmp_path / "t.tar", [("dir", "dir", ""), ("dir/link", "sym", "../x")])
    extract_layer(tar, tmp_path / "layer", strict_symlinks=True)
    assert os.readlink(tmp_path / "layer" / "dir" / "link") == "../x"


def test_apply_refuses_to_write_through_an_existing_symlink(tmp_path: Path) -> None:
    root = tmp_path / "root"
    root.mkdir()
    outside = tmp_path / "outside"
    outside.mkdir()
    os.symlink(outside, root / "lib")
    tar = make_tar(tmp_path / "t.tar", [("lib/evil.so", "file", "x")])
    with pytest.raises(UnsafeTarEntryError, match="`lib` is a symlink"):
        apply_layer(tar, root)
    assert list(outside.iterdir()) == []


def test_tar_cannot_forge_overlay_xattrs(tmp_path: Path) -> None:
    with tarfile.open(tmp_path / "t.tar", "w", format=tarfile.PAX_FORMAT) as tf:
        ti = tarfile.TarInfo("d")
        ti.type = tarfile.DIRTYPE
        ti.pax_headers = {"SCHILY.xattr.trusted.overlay.redirect": "/etc", "SCHILY.xattr.user.ok": "1"}
        tf.addfile(ti)
    extract_layer(tmp_path / "t.tar", tmp_path / "layer")
    assert os.listxattr(tmp_path / "layer" / "d") == ["user.ok"]


def test_extract_refuses_an_existing_destination(tmp_path: Path) -> None:
    tar = make_tar(tmp_path / "t.tar", [("f", "file", "x")])
    (tmp_path / "layer").mkdir()
    with pytest.raises(Exception, match="File exists"):
        extract_layer(tar, tmp_path / "layer")


def test_stream_input(tmp_path: Path) -> None:
    tar = make_tar(tmp_path / "t.tar", [("a/b", "file", "x"), ("a/.wh.c", "file", "")])
    r, w = os.pipe()
    data = tar.read_bytes()
    pid = os.fork()
    if pid == 0:  # pragma: no cover - child
        os.close(r)
        with os.fdopen(w, "wb") as f:
            f.write(data)
        os._exit(0)
    os.close(w)
    with os.fdopen(r, "rb") as f:
        extract_layer(f, tmp_path / "layer")
    os.waitpid(pid, 0)
    assert (tmp_path / "layer" / "a" / "b").read_text() == "x"
    assert stat.S_ISCHR(os.lstat(tmp_path / "layer" / "a" / "c").st_mode)


# ---- upper dirs that need the merged view ---------------------------------------------------


def test_renamed_lower_dir_needs_merged_view(tmp_path: Path, image: tuple[Path, Path]) -> None:
    from nsprim.errors import UnsupportedError
    from nsprim.fs.overlay import OverlayOptions

    app, base = image
    for d in ("upper", "work", "merged"):
        (tmp_path / d).mkdir()
    opts = OverlayOptions(redirect_dir="on", index=False)
    with OverlayMount(tmp_path / "merged", [app, base], tmp_path / "upper", tmp_path / "work", options=opts) as ov:
        os.rename(ov.target / "data" / "d2", ov.target / "data" / "moved")  # a lower dir: a redirect, no copy
        assert not (tmp_path / "upper" / "data" / "moved" / "h").exists()
        view = snapshot(ov.target, times=True)
        with pytest.raises(UnsupportedError, match="renamed lower directory"):
            commit(tmp_path / "upper", tmp_path / "x.tar")
        commit(tmp_path / "upper", tmp_path / "layer.tar", merged=ov.target)
    got = names(tmp_path / "layer.tar")
    assert {"data/.wh.d2", "data/moved", "data/moved/.wh..wh..opq", "data/moved/h"} <= set(got)
    flat = flatten([app, base], tmp_path / "flat")
    apply_layer(tmp_path / "layer.tar", flat)
    assert snapshot(flat, times=True) == view


def test_metacopy_upper_reads_data_from_merged(tmp_path: Path, image: tuple[Path, Path]) -> None:
    from nsprim.errors import UnsupportedError
    from nsprim.fs.overlay import OverlayOptions

    app, base = image
    for d in ("upper", "work", "merged"):
        (tmp_path / d).mkdir()
    opts = OverlayOptions(metacopy=True, redirect_dir="on", index=False)
    with OverlayMount(tmp_path / "merged", [app, base], tmp_path / "upper", tmp_path / "work", options=opts) as ov:
        os.chmod(ov.target / "etc" / "hosts", 0o600)  # metadata-only copy-up
        assert "trusted.overlay.metacopy" in os.listxattr(tmp_path / "upper" / "etc" / "hosts")  # no data copied
        view = snapshot(ov.target, times=True)
        with pytest.raises(UnsupportedError, match="metacopy"):
            commit(tmp_path / "upper", tmp_path / "x.tar")
        commit(tmp_path / "upper", tmp_path / "layer.tar", merged=ov.target)
    flat = flatten([app, base], tmp_path / "flat")
    apply_layer(tmp_path / "layer.tar", flat)
    assert snapshot(flat, times=True) == view
    assert (flat / "etc" / "hosts").read_text() == "h\n"


@pytest.mark.parametrize(
    ("entries", "why"),
    [
        ([("evil", "sym", "/etc"), ("evil/passwd", "file", "x")], "is a symlink"),
        ([("d", "dir", ""), ("d/evil", "sym", "../.."), ("d/evil/x", "file", "x")], "is a symlink"),
        ([("f", "file", "x"), ("f/x", "file", "x")], "not a directory"),
    ],
)
def test_without_openat2_the_walk_refuses_the_same(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, entries: list[tuple[str, str, str]], why: str
) -> None:
    import nsprim.fs.layers.extract as tarmod

    monkeypatch.setattr(tarmod, "_have_openat2", False)  # as on a kernel before 5.6
    with pytest.raises(UnsafeTarEntryError, match=why):
        extract_layer(make_tar(tmp_path / "bad.tar", entries), tmp_path / "layer")
    assert not (tmp_path / "layer").exists()
    good = make_tar(tmp_path / "good.tar", [("a/b/c", "file", "x"), ("a/.wh.gone", "file", "")])
    extract_layer(good, tmp_path / "layer")
    assert (tmp_path / "layer" / "a" / "b" / "c").read_text() == "x"


class _Stream:
    """A reader that cannot seek, as a socket or a digest-checking reader is."""

    def __init__(self, data: bytes) -> None:
        self._f = io.BytesIO(data)

    def read(self, n: int = -1) -> bytes:
        return self._f.read(n)


def test_a_gzip_stream_over_a_reader_that_cannot_seek_extracts_whole(tmp_path: Path) -> None:
    """A GzipFile says it seeks, but rewinding it rewinds what it reads: read it through once, not twice."""
    import gzip

    raw = io.BytesIO()
    with tarfile.open(fileobj=raw, mode="w") as tf:
        for name in ("etc/a", "etc/b"):
            info = tarfile.TarInfo(name)
            info.size = 1
            tf.addfile(info, io.BytesIO(b"x"))
    packed = gzip.compress(raw.getvalue())
    (tmp_path / "applied").mkdir()
    assert apply_layer(gzip.GzipFile(fileobj=_Stream(packed)), tmp_path / "applied").entries == 2  # type: ignore[arg-type]
    assert sorted(os.listdir(tmp_path / "applied/etc")) == ["a", "b"]
    assert extract_layer(gzip.GzipFile(fileobj=_Stream(packed)), tmp_path / "extracted").entries == 2  # type: ignore[arg-type]
