"""Overlays in a user namespace: ``userxattr`` keeps overlay's xattrs in ``user.overlay.*``."""

from __future__ import annotations

import os
import stat
import sys
import tarfile
import textwrap
from pathlib import Path

import nsprim
from nsprim.fs.layers import commit, extract_layer
from nsprim.fs.overlay import USER_OPAQUE_XATTR
from nsprim.idmap import IdMap

from .helpers import make_tree

CHILD = textwrap.dedent(
    """
    import os, shutil, sys
    from pathlib import Path
    from nsprim.fs.overlay import OverlayMount, OverlayOptions
    base = Path(sys.argv[1])
    ov = OverlayMount(base / "merged", [base / "lower"], base / "upper", base / "work",
                      options=OverlayOptions(userxattr=True))
    with ov:
        shutil.rmtree(ov.target / "d")
        (ov.target / "d").mkdir()
        (ov.target / "d" / "new").write_text("n")
        (ov.target / "gone").unlink()
    print("ok")
    """
)


def test_userxattr_overlay_in_a_user_namespace(tmp_path: Path) -> None:
    make_tree(tmp_path / "lower", {"d/old": "o", "gone": "g", "kept": "k"})
    for d in ("upper", "work", "merged"):
        (tmp_path / d).mkdir()
    ids = IdMap.single(0, 0, 65536)  # the same ids inside: the files stay owned by mapped users
    r = nsprim.run(
        [sys.executable, "-c", CHILD, str(tmp_path)],
        new={"user", "mnt"},
        uid_map=ids,
        gid_map=ids,
        capture_output=True,
        timeout=60,
    )
    assert r.returncode == 0, r.stderr
    assert os.getxattr(tmp_path / "upper" / "d", USER_OPAQUE_XATTR) == b"y"
    assert stat.S_ISCHR(os.lstat(tmp_path / "upper" / "gone").st_mode)
    commit(tmp_path / "upper", tmp_path / "l.tar")
    with tarfile.open(tmp_path / "l.tar") as tf:
        names = tf.getnames()
        headers = [k for m in tf.getmembers() for k in m.pax_headers]
    assert "d/.wh..wh..opq" in names and ".wh.gone" in names
    assert not any("overlay" in k for k in headers)  # overlay's own xattrs never travel
    extract_layer(tmp_path / "l.tar", tmp_path / "layer", userxattr=True)
    assert os.getxattr(tmp_path / "layer" / "d", USER_OPAQUE_XATTR) == b"y"
