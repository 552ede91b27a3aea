"""Parsing /proc/<pid>/mountinfo and /proc/<pid>/cgroup (pure; Hypothesis round trips)."""

from __future__ import annotations

import errno
import time
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from nsprim.cgroup import CGroupMembership, Controller, parse_proc_cgroup
from nsprim.cgroup.host import Hierarchy, hierarchies
from nsprim.errors import ConfigError
from nsprim.fs.mountinfo import parse_mountinfo

HYBRID = """\
31 23 0:28 / /sys/fs/cgroup rw,relatime - tmpfs tmpfs rw,mode=755
32 31 0:29 / /sys/fs/cgroup/cpu rw,relatime - cgroup cgroup rw,cpu
33 31 0:30 / /sys/fs/cgroup/cpuacct rw,relatime - cgroup cgroup rw,cpuacct
35 31 0:32 / /sys/fs/cgroup/memory rw,relatime shared:5 - cgroup cgroup rw,memory
38 31 0:35 / /sys/fs/cgroup/blkio rw,relatime - cgroup cgroup rw,blkio
40 31 0:37 / /sys/fs/cgroup/systemd rw,relatime - cgroup cgroup rw,name=systemd
41 31 0:38 / /sys/fs/cgroup/unified rw,relatime - cgroup2 cgroup2 rw
99 31 0:32 /process_api /mnt/mem\\040bind rw - cgroup cgroup rw,memory
"""


def test_hybrid_mountinfo() -> None:
    hs = hierarchies(HYBRID)
    assert [(h.version, str(h.mount_point)) for h in hs] == [
        (1, "/sys/fs/cgroup/cpu"),
        (1, "/sys/fs/cgroup/cpuacct"),
        (1, "/sys/fs/cgroup/memory"),
        (1, "/sys/fs/cgroup/blkio"),
        (1, "/sys/fs/cgroup/systemd"),
        (2, "/sys/fs/cgroup/unified"),
    ]
    assert hs[3].controllers == {Controller.IO}
    assert hs[4].name == "systemd" and not hs[4].controllers
    entries = parse_mountinfo(HYBRID)
    assert entries[-1].mount_point == "/mnt/mem bind" and entries[-1].root == "/process_api"
    assert entries[3].options == ("rw", "relatime")


def test_directory_mapping_honours_the_mount_root() -> None:
    h = Hierarchy(1, Path("/mnt/mem"), "/process_api", frozenset({Controller.MEMORY}))
    assert h.directory("/process_api/x/y") == Path("/mnt/mem/x/y")
    assert h.cgroup_path(Path("/mnt/mem/x")) == "/process_api/x"
    assert h.directory("/other (deleted)") == Path("/mnt/mem/other")


_path_part = st.text(
    alphabet=st.characters(blacklist_characters="/\n\0 \t\\", blacklist_categories=("Cs",)), min_size=1, max_size=12
)


def _escape(s: str) -> str:
    return "".join(f"\\{ord(c):03o}" if c in " \t\n\\" else c for c in s)


@given(
    st.lists(
        st.tuples(
            st.lists(_path_part, max_size=3),
            st.lists(_path_part, min_size=1, max_size=3),
            st.sampled_from(["cgroup", "cgroup2", "tmpfs"]),
            st.text(" \\abc", max_size=4),
        ),
        max_size=5,
    )
)
def test_mountinfo_round_trips(mounts: list[tuple[list[str], list[str], str, str]]) -> None:
    lines = []
    for i, (root, point, fs, odd) in enumerate(mounts):
        root_s = "/" + "/".join(root)
        point_s = "/" + "/".join(point) + odd
        lines.append(f"{i + 10} 1 0:{i} {_escape(root_s)} {_escape(point_s)} rw,nosuid - {fs} src{i} rw,memory")
    parsed = parse_mountinfo("\n".join(lines))
    assert [(p.root, p.mount_point, p.fstype) for p in parsed] == [
        ("/" + "/".join(r), "/" + "/".join(m) + o, f) for r, m, f, o in mounts
    ]


@given(
    st.lists(
        st.tuples(
            st.integers(0, 20),
            st.lists(st.sampled_from(["cpu", "memory", "name=systemd"]), max_size=2, unique=True),
            st.lists(st.text(alphabet="abc:-_ 1", min_size=1, max_size=6), max_size=3),
        ),
        max_size=6,
    )
)
def test_proc_cgroup_round_trips(lines: list[tuple[int, list[str], list[str]]]) -> None:
    text = "\n".join(f"{i}:{','.join(c)}:/{'/'.join(p)}" for i, c, p in lines)
    assert parse_proc_cgroup(text) == [CGroupMembership(i, tuple(c), "/" + "/".join(p)) for i, c, p in lines]


def test_proc_cgroup_v2_and_hybrid() -> None:
    entries = parse_proc_cgroup("4:memory:/process_api/abc\n0::/\n")
    assert not entries[0].is_unified and entries[1].is_unified


@pytest.mark.parametrize("bad", ["x:memory:/", "1:memory", "1:memory:relative"])
def test_malformed_proc_cgroup(bad: str) -> None:
    with pytest.raises(ConfigError):
        parse_proc_cgroup(bad)


def test_malformed_mountinfo() -> None:
    with pytest.raises(ConfigError):
        parse_mountinfo("1 2 3\n")


def test_control_file_readers(tmp_path: Path) -> None:
    from nsprim.cgroup import files
    from nsprim.errors import SyscallError

    (tmp_path / "n").write_text("42\n")
    (tmp_path / "m").write_text("max\n")
    (tmp_path / "bad").write_text("4x\n")
    (tmp_path / "big").write_text("\n".join(str(i) for i in range(40000)))  # more than one read
    assert files.try_read_int(tmp_path / "n") == 42 and files.read_int(str(tmp_path / "n")) == 42
    assert files.try_read_int(tmp_path / "m") is None  # "max"
    assert files.try_read_int(tmp_path / "gone") == files.MISSING
    assert files.try_read_text(tmp_path / "gone") is None
    assert files.read_text(tmp_path / "big").split()[-1] == "39999"
    with pytest.raises(SyscallError) as info:
        files.read_int(tmp_path / "bad")
    assert "parse `4x`" in str(info.value)
    with pytest.raises(SyscallError) as info:
        files.read_text(tmp_path / "gone")
    assert info.value.errno == errno.ENOENT and "gone" in str(info.value)


def test_old_cgroup_names_warn_and_name_the_one_parser() -> None:
    import nsprim.cgroup
    import nsprim.cgroup.procfs
    from nsprim.fs import mountinfo

    for module, name, new in [
        (nsprim.cgroup, "CgroupEntry", CGroupMembership),
        (nsprim.cgroup, "MountEntry", mountinfo.MountInfo),
        (nsprim.cgroup, "parse_mountinfo", mountinfo.parse_mountinfo),
        (nsprim.cgroup.procfs, "unescape_mount_field", mountinfo.unescape),
    ]:
        with pytest.warns(DeprecationWarning, match=f"{module.__name__}.{name} is deprecated"):
            assert getattr(module, name) is new
    with pytest.raises(AttributeError):
        nsprim.cgroup.no_such_name  # noqa: B018


def test_the_host_info_cache_lives_in_the_cgroup_layer() -> None:
    from nsprim.cgroup.host import cached_host_info, host_info
    from nsprim.container import build

    first = cached_host_info()
    assert cached_host_info() is first  # same mount namespace, within seconds: not read again
    assert first.hierarchies == host_info().hierarchies
    assert build.cached_host_info is cached_host_info  # the container layer's old name is the same function


def test_the_host_info_read_again_but_unchanged_is_the_same_object(monkeypatch: pytest.MonkeyPatch) -> None:
    """What is cached by the layout's object (the builder's plan bodies) outlives the cache's few seconds."""
    from nsprim.cgroup import host

    first = host.cached_host_info()
    real = time.monotonic
    monkeypatch.setattr(host.time, "monotonic", lambda: real() + 60.0)  # past the cache's seconds
    assert host.cached_host_info() is first
