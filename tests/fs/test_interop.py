"""Layer tars interoperate with GNU tar: ours extract with it, and its tars apply as layers."""

from __future__ import annotations

import os
import shutil
import stat
import subprocess
from pathlib import Path

import pytest

from nsprim.fs.layers import commit, extract_layer

from ..tools import missing, need_tool
from .helpers import make_tree, snapshot

TAR = shutil.which("tar") or "tar"


@pytest.fixture(autouse=True)
def _gnu_tar() -> None:
    need_tool("tar", "tar")
    if b"GNU tar" not in subprocess.run([TAR, "--version"], capture_output=True).stdout:
        raise missing("GNU tar", "tar")


XATTRS = ["--xattrs", "--xattrs-include=*"]


def tree(path: Path) -> Path:
    src = make_tree(path, {"etc/conf": "x=1\n", "usr/bin/tool": "#!/bin/sh\n", "empty/": None})
    os.chmod(src / "usr" / "bin" / "tool", 0o755)
    os.chown(src / "etc" / "conf", 1000, 1000)
    os.symlink("../etc/conf", src / "usr" / "conf-link")
    os.link(src / "etc" / "conf", src / "etc" / "conf-hard")
    os.mknod(src / "null", stat.S_IFCHR | 0o666, os.makedev(1, 3))
    os.setxattr(src / "etc" / "conf", "user.origin", b"test")
    return src


def test_gnu_tar_extracts_our_tars(tmp_path: Path) -> None:
    assert TAR is not None
    src = tree(tmp_path / "src")
    commit(src, tmp_path / "ours.tar")
    out = tmp_path / "out"
    out.mkdir()
    subprocess.run([TAR, *XATTRS, "--numeric-owner", "-xpf", str(tmp_path / "ours.tar"), "-C", str(out)], check=True)
    assert snapshot(out, times=True) == snapshot(src, times=True)


def test_gnu_tar_layers_with_whiteouts_extract_as_overlay_layers(tmp_path: Path) -> None:
    assert TAR is not None
    src = tree(tmp_path / "src")
    (src / "etc" / ".wh.passwd").write_text("")
    (src / "empty" / ".wh..wh..opq").write_text("")
    subprocess.run(
        [TAR, "--format=pax", *XATTRS, "--numeric-owner", "-cf", str(tmp_path / "gnu.tar"), "-C", str(src), "."],
        check=True,
    )
    layer = tmp_path / "layer"
    stats = extract_layer(tmp_path / "gnu.tar", layer, preserve_special=True)  # its /dev/null
    assert (stats.whiteouts, stats.opaque_dirs) == (1, 1)
    assert stat.S_ISCHR(os.lstat(layer / "etc" / "passwd").st_mode)
    assert os.getxattr(layer / "empty", "trusted.overlay.opaque") == b"y"
    assert os.getxattr(layer / "etc" / "conf", "user.origin") == b"test"
    assert os.stat(layer / "etc" / "conf").st_ino == os.stat(layer / "etc" / "conf-hard").st_ino
    assert os.stat(layer / "etc" / "conf").st_uid == 1000
