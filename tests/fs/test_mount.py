"""nsprim.fs.mount: the mountinfo parser and the mount helpers (in the test's private namespace)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from nsprim.errors import ConfigError, SyscallError
from nsprim.fs.mount import MountFlags, Propagation, bind, mounted, remount, tmpfs, umount
from nsprim.fs.mountinfo import find_mount, is_mount_point, mountinfo, parse_mountinfo

SAMPLE = (
    "36 35 98:0 /mnt1 /mnt/with\\040space rw,noatime master:1 shared:7 - ext3 /dev/root rw,errors=continue\n"
    "40 36 0:44 / /merged rw,relatime - overlay overlay rw,lowerdir=/a:/b,upperdir=/u,workdir=/w,index=on\n"
    "41 36 0:45 / /x ro - tmpfs tmpfs ro\n"
)


def test_parse_mountinfo() -> None:
    a, b, c = parse_mountinfo(SAMPLE)
    assert (a.mount_id, a.parent_id, a.major, a.minor) == (36, 35, 98, 0)
    assert a.root == "/mnt1" and a.mount_point == "/mnt/with space"
    assert a.optional == ("master:1", "shared:7") and a.propagation is Propagation.SHARED
    assert a.fstype == "ext3" and a.source == "/dev/root" and a.super_option("errors") == "continue"
    assert b.super_option("lowerdir") == "/a:/b" and b.super_option("index") == "on"
    assert b.super_option("missing") is None and b.propagation is Propagation.PRIVATE
    assert c.readonly and c.super_option("ro") == ""
    with pytest.raises(ConfigError, match="malformed"):
        parse_mountinfo("1 2 3\n")


def test_mountinfo_of_self_and_pid() -> None:
    mine = mountinfo()
    assert any(m.mount_point == "/" for m in mine)
    assert mountinfo(os.getpid()) == mine


def test_tmpfs_bind_remount_umount(tmp_path: Path) -> None:
    t, b = tmp_path / "t", tmp_path / "b"
    t.mkdir()
    b.mkdir()
    tmpfs(t, size="1m", mode=0o700)
    try:
        info = find_mount(t)
        assert info is not None and info.fstype == "tmpfs" and info.super_option("size") == "1024k"
        assert oct(os.stat(t).st_mode & 0o777) == "0o700"
        (t / "f").write_text("x")
        bind(t, b, readonly=True, flags=MountFlags.NOEXEC)
        try:
            bi = find_mount(b)
            assert bi is not None and bi.readonly and "noexec" in bi.options and "nosuid" in bi.options
            assert (b / "f").read_text() == "x"
            with pytest.raises(OSError):
                (b / "g").write_text("y")
            remount(b, MountFlags.NONE)  # keeps what it has: still read-only
            assert find_mount(b).readonly  # type: ignore[union-attr]
        finally:
            umount(b)
    finally:
        umount(t)
    assert not is_mount_point(t) and not is_mount_point(b)


def test_mounted_context_and_errors(tmp_path: Path) -> None:
    with mounted("tmpfs", tmp_path, "tmpfs") as p:
        assert is_mount_point(p)
    assert not is_mount_point(tmp_path)
    with pytest.raises(SyscallError, match=rf"mount `tmpfs` on `{tmp_path}/missing`: No such file or directory"):
        tmpfs(tmp_path / "missing")
    with pytest.raises(ConfigError):
        from nsprim.fs.mount import private_root

        private_root("shared")


@pytest.mark.parametrize("odd", ["\x0b", "\x0c", "\x1c", "\x1d", "\x1e", "\x85", "\u2028"])
def test_parse_mountinfo_ends_lines_at_newline_only(odd: str) -> None:
    # the kernel escapes only space, tab, newline and backslash: other separators str.splitlines knows are a name's own
    text = f"41 36 0:45 / /x{odd}y rw - tmpfs tmp{odd}fs rw\n42 36 0:46 / /z rw - tmpfs tmpfs rw\n"
    first, second = parse_mountinfo(text)
    assert (first.mount_point, first.source, second.mount_point) == (f"/x{odd}y", f"tmp{odd}fs", "/z")
