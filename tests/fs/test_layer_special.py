"""What a layer tar may not plant on the host: setuid files, file capabilities, devices, foreign xattrs.

Inside a :class:`LayerStore` they are kept (an image needs its ``su`` and its
``/dev`` entries), below a 0700 root no other user can enter; extracted
anywhere else, devices are refused and setuid/setgid bits and capabilities
dropped unless the caller asks for them; xattrs other than ``user.*`` and
``security.capability`` never come from a tar.
"""

from __future__ import annotations

import errno
import io
import os
import shutil
import stat
import struct
import subprocess
import tarfile
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from nsprim.errors import ConfigError
from nsprim.fs.layers import LayerStore, UnsafeTarEntryError, apply_layer, commit, extract_layer

from ..conftest import run_as_nobody

SCRIPT = b"#!/bin/sh\nexit 0\n"
# vfs_cap_data revision 2, effective, permitted = CAP_NET_BIND_SERVICE
CAPS = struct.pack("<IIIII", 0x02000001, 1 << 10, 0, 0, 0)
CAP_PAX = {"SCHILY.xattr.security.capability": CAPS.decode("utf-8", "surrogateescape")}


@pytest.fixture
def public_dir() -> Iterator[Path]:
    """A directory every user can enter (pytest's own tmp_path is 0700, which would hide everything)."""
    d = Path(tempfile.mkdtemp(prefix="nsprim-test-layers-", dir="/tmp"))
    os.chmod(d, 0o755)
    try:
        yield d
    finally:
        shutil.rmtree(d)


def add(tf: tarfile.TarFile, name: str, *, kind: bytes = tarfile.REGTYPE, mode: int = 0o644, data: bytes = b"",
        pax: dict[str, str] | None = None, dev: tuple[int, int] = (0, 0)) -> None:  # fmt: skip
    ti = tarfile.TarInfo(name)
    ti.type, ti.mode, ti.uid, ti.gid = kind, mode, 0, 0
    ti.devmajor, ti.devminor = dev
    ti.pax_headers = pax or {}
    if kind == tarfile.REGTYPE:
        ti.size = len(data)
    tf.addfile(ti, io.BytesIO(data) if kind == tarfile.REGTYPE else None)


def special_tar(path: Path, *, device: bool = True) -> Path:
    with tarfile.open(path, "w", format=tarfile.PAX_FORMAT) as tf:
        add(tf, "bin", kind=tarfile.DIRTYPE, mode=0o755)
        add(tf, "bin/su", mode=0o4755, data=SCRIPT)
        add(tf, "bin/wall", mode=0o2755, data=SCRIPT)
        add(tf, "bin/ping", mode=0o755, data=SCRIPT, pax=CAP_PAX)
        add(tf, "shared", kind=tarfile.DIRTYPE, mode=0o2775)
        if device:
            add(tf, "dev", kind=tarfile.DIRTYPE, mode=0o755)
            add(tf, "dev/null", kind=tarfile.CHRTYPE, mode=0o666, dev=(1, 3))
    return path


def probe(paths: dict[str, Path]) -> str:
    """As uid 65534: run or open each path; what happened, one word each."""
    out = []
    for how, path in paths.items():
        try:
            if how.startswith("exec"):
                subprocess.run([str(path)], check=True)
            else:
                os.close(os.open(path, os.O_RDWR))
            out.append(f"{how}:ok")
        except OSError as exc:
            out.append(f"{how}:{errno.errorcode[exc.errno or 0]}")
    return " ".join(out)


def test_a_store_keeps_setuid_files_and_devices_where_no_other_user_reaches_them(public_dir: Path) -> None:
    store = LayerStore(public_dir / "store")
    layer = store.add_tar(special_tar(public_dir / "special.tar"))
    su, ping, null = layer.diff / "bin" / "su", layer.diff / "bin" / "ping", layer.diff / "dev" / "null"
    assert os.stat(su).st_mode & stat.S_ISUID and os.stat(su).st_uid == 0  # kept: the image needs them
    assert os.getxattr(ping, "security.capability") == CAPS
    assert stat.S_ISCHR(os.lstat(null).st_mode) and stat.S_IMODE(os.lstat(null).st_mode) == 0o666

    control = public_dir / "control"  # the same file outside the store: nobody runs it
    control.write_bytes(SCRIPT)
    os.chmod(control, 0o755)
    paths = {"exec-control": control, "exec-su": su, "exec-ping": ping, "open-null": null}
    assert run_as_nobody(lambda: probe(paths)) == "exec-control:ok exec-su:EACCES exec-ping:EACCES open-null:EACCES"
    assert stat.S_IMODE(os.stat(store.root).st_mode) == 0o700


def test_a_store_root_is_made_private_at_open_and_must_be_ours(public_dir: Path) -> None:
    root = public_dir / "store"
    root.mkdir(mode=0o755)
    os.chmod(root, 0o755)
    LayerStore(root)
    assert stat.S_IMODE(os.stat(root).st_mode) == 0o700
    os.chmod(root, 0o4777)
    LayerStore(root)
    assert stat.S_IMODE(os.stat(root).st_mode) == 0o700
    os.chown(root, 65534, 65534)
    with pytest.raises(ConfigError, match=r"open layer store `.*/store`: owned by uid 65534"):
        LayerStore(root)


def test_outside_a_store_device_nodes_are_refused_before_anything_is_written(public_dir: Path) -> None:
    tar = special_tar(public_dir / "special.tar")
    with pytest.raises(
        UnsafeTarEntryError, match=r"tar entry `dev/null`: a character device 1:3.*preserve_special=True"
    ):
        extract_layer(tar, public_dir / "layer")
    assert sorted(p.name for p in public_dir.iterdir()) == ["special.tar"]
    root = public_dir / "root"
    root.mkdir()
    with pytest.raises(UnsafeTarEntryError, match="a character device 1:3"):
        apply_layer(tar, root)
    assert list(root.iterdir()) == []
    extract_layer(tar, public_dir / "layer", preserve_special=True)  # asked for: the caller's directory is private
    assert stat.S_ISCHR(os.lstat(public_dir / "layer" / "dev" / "null").st_mode)


def test_outside_a_store_setuid_setgid_and_file_caps_are_stripped(public_dir: Path) -> None:
    tar = special_tar(public_dir / "special.tar", device=False)
    stats = extract_layer(tar, public_dir / "layer")
    layer = public_dir / "layer"
    assert stat.S_IMODE(os.stat(layer / "bin" / "su").st_mode) == 0o755
    assert stat.S_IMODE(os.stat(layer / "bin" / "wall").st_mode) == 0o755
    assert "security.capability" not in os.listxattr(layer / "bin" / "ping")
    assert stat.S_IMODE(os.stat(layer / "shared").st_mode) == 0o2775  # a setgid directory only passes its group on
    assert stats.stripped == 3
    flat = public_dir / "flat"
    flat.mkdir()
    assert apply_layer(tar, flat).stripped == 3
    assert stat.S_IMODE(os.stat(flat / "bin" / "su").st_mode) == 0o755

    kept = extract_layer(tar, public_dir / "kept", preserve_special=True)
    assert stat.S_IMODE(os.stat(public_dir / "kept" / "bin" / "su").st_mode) == 0o4755
    assert os.getxattr(public_dir / "kept" / "bin" / "ping", "security.capability") == CAPS
    assert kept.stripped == 0


FOREIGN = {
    "trusted.evil": "1",
    "trusted.overlay.opaque": "y",
    "user.overlay.redirect": "/etc",
    "security.selinux": "system_u:object_r:shadow_t:s0",
    "security.ima": "\x03\x02",
    "system.posix_acl_access": "\x02\x00\x00\x00",
    "gluster.x": "1",
}


def test_only_user_xattrs_and_file_caps_are_ever_restored(tmp_path: Path) -> None:
    pax = {f"SCHILY.xattr.{k}": v for k, v in FOREIGN.items()} | CAP_PAX | {"SCHILY.xattr.user.mime": "text/x"}
    with tarfile.open(tmp_path / "t.tar", "w", format=tarfile.PAX_FORMAT) as tf:
        add(tf, "f", data=b"x", pax=pax)
    for extract in (extract_layer, apply_layer):
        dest = tmp_path / extract.__name__
        if extract is apply_layer:
            dest.mkdir()
        stats = extract(tmp_path / "t.tar", dest, preserve_special=True)
        assert sorted(os.listxattr(dest / "f")) == ["security.capability", "user.mime"]
        assert stats.dropped_xattrs == len(FOREIGN)


def test_commit_writes_only_the_xattrs_extraction_restores(tmp_path: Path) -> None:
    src = tmp_path / "src"
    src.mkdir()
    (src / "f").write_text("x")
    os.setxattr(src / "f", "trusted.note", b"host metadata")
    os.setxattr(src / "f", "user.note", b"image data")
    os.setxattr(src / "f", "security.capability", CAPS)
    commit(src, tmp_path / "t.tar")
    with tarfile.open(tmp_path / "t.tar") as tf:
        xattrs = [k for k in tf.getmember("f").pax_headers if k.startswith("SCHILY.xattr.")]
    assert sorted(xattrs) == ["SCHILY.xattr.security.capability", "SCHILY.xattr.user.note"]
