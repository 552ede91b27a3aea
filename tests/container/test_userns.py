"""Containers in user namespaces with subordinate id ranges: root inside is nobody outside.

The host's /etc/subuid and /etc/subgid are never written: the ``subids`` fixture binds
private copies over them in this test process's own mount namespace (tests/conftest.py
made it private), which the ``nsprim`` subprocesses of the CLI tests inherit.
"""

from __future__ import annotations

import os
import secrets
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

import nsprim
from nsprim.container import Container
from nsprim.fs.mount import bind, umount
from nsprim.idmap import IdMap

from ..conftest import requires_root, run_as_nobody

pytestmark = requires_root

SRC = str(Path(nsprim.__file__).resolve().parent.parent)
# A start unlikely to be anyone's: several slots of it, a fresh offset each session.
BASE = 300_000_000 + secrets.randbelow(1000) * 10 * 65536


@pytest.fixture
def subids(tmp_path: Path) -> Iterator[int]:
    """/etc/subuid and /etc/subgid with 4 slots for root at BASE, one for nobody after them,
    for this test only; yields BASE."""
    files = []
    for kind in ("uid", "gid"):
        private = tmp_path / f"sub{kind}"
        private.write_text(f"root:{BASE}:{4 * 65536}\nnobody:{BASE + 4 * 65536}:65536\n")
        files.append(Path(f"/etc/sub{kind}"))
        bind(private, files[-1], readonly=True)
    try:
        yield BASE
    finally:
        for f in files:
            umount(f)


@pytest.fixture
def open_tmp() -> Iterator[Path]:
    """A directory that anyone can reach (pytest's own are 0700 to root: under a subordinate
    map, root inside is nobody on the host, and a bind source must be searchable by it)."""
    d = Path(tempfile.mkdtemp(prefix="nsprim-userns-"))
    d.chmod(0o755)
    try:
        yield d
    finally:
        shutil.rmtree(d)


@pytest.fixture
def shared_dir(open_tmp: Path) -> Path:
    """A host directory anyone may write to, for the container to leave files in."""
    d = open_tmp / "shared"
    d.mkdir()
    d.chmod(0o777)
    return d


def layer_of(rootfs: Path, where: Path) -> Path:
    """A copy of the busybox root, owned by host root (as an extracted image is)."""
    shutil.copytree(rootfs, where, symlinks=True)
    assert where.stat().st_uid == 0 and (where / "etc/passwd").stat().st_uid == 0
    return where


PROBE = "id -u; id -g; cat /proc/self/uid_map; touch /mnt/made; echo written"


def probe(box: Container, shared_dir: Path) -> tuple[list[str], os.stat_result]:
    # On /mnt, which the host's / has too: its read-only root has no room for new mount points.
    r = box.bind(shared_dir, "/mnt", readonly=False).env(PATH="/bin").run(capture_output=True, timeout=60)
    assert r.returncode == 0, r.stderr
    return (r.stdout or b"").decode().split(), (shared_dir / "made").stat()


@pytest.mark.parametrize("kind", ["directory", "image", "host"])
def test_a_subordinate_range_works_with_every_root(kind: str, rootfs: Path, tmp_path: Path, shared_dir: Path) -> None:
    ids = IdMap.single(0, BASE + 65536, 65536)
    box = Container(["sh", "-c", PROBE]).user_namespace(ids, ids)
    if kind == "directory":
        box = box.rootfs(layer_of(rootfs, tmp_path / "dir"))
    elif kind == "image":
        box = box.image([layer_of(rootfs, tmp_path / "layer")])
    else:
        box = box.host_root()
    out, made = probe(box, shared_dir)
    assert out[:5] == ["0", "0", "0", str(BASE + 65536), "65536"]
    assert out[-1] == "written"
    # What root inside made is owned by the subordinate uid on the host, not by host root.
    assert (made.st_uid, made.st_gid) == (BASE + 65536, BASE + 65536)


def test_copy_up_of_a_host_root_file_through_idmapped_layers(rootfs: Path, tmp_path: Path) -> None:
    upper_layer = tmp_path / "top"
    (upper_layer / "etc").mkdir(parents=True)
    (upper_layer / "etc/motd").write_text("from the top layer\n")
    (upper_layer / "etc/motd").chmod(0o644)
    lower = layer_of(rootfs, tmp_path / "base")
    ids = IdMap.single(0, BASE, 65536)
    script = (
        "ls -ln /etc/passwd /etc/motd /tmp -d; echo guest2:x:406:100::/tmp:/bin/sh >> /etc/passwd; "
        "echo changed > /etc/motd; cat /etc/motd; mkdir /tmp/new && ls -lnd /tmp/new"
    )
    box = Container(["sh", "-c", script]).image([upper_layer, lower]).user_namespace(ids, ids).env(PATH="/bin")
    r = box.run(capture_output=True, timeout=60)
    assert r.returncode == 0, r.stderr
    lines = (r.stdout or b"").decode().splitlines()
    owners = [line.split()[2:4] for line in lines[:3]]
    assert owners == [["0", "0"]] * 3  # host root's files show as the container's root
    assert lines[3] == "changed"
    assert lines[4].split()[2:4] == ["0", "0"]
    # The layers themselves are untouched (the copy-up went to the container's upper layer).
    assert (upper_layer / "etc/motd").read_text() == "from the top layer\n"
    assert "guest2" not in (lower / "etc/passwd").read_text()


def test_a_payload_user_in_the_namespace(rootfs: Path, tmp_path: Path, shared_dir: Path) -> None:
    ids = IdMap.single(0, BASE, 65536)
    box = Container(["sh", "-c", PROBE]).image([layer_of(rootfs, tmp_path / "l")]).user_namespace(ids, ids)
    out, made = probe(box.user("guest"), shared_dir)
    assert out[:2] == ["405", "100"]
    assert (made.st_uid, made.st_gid) == (BASE + 405, BASE + 100)


def test_an_unmapped_payload_user_is_refused_before_anything_runs(rootfs: Path) -> None:
    ids = IdMap.single(0, BASE, 100)
    box = Container(["id"]).rootfs(rootfs).user_namespace(ids, ids).user(405)
    with pytest.raises(nsprim.ConfigError, match=r"uid 405 is not mapped in the container's user namespace"):
        box.run()


def test_a_map_without_root_is_refused() -> None:
    ids = IdMap.single(1, BASE, 100)
    with pytest.raises(nsprim.ConfigError, match=r"uid map 1->\d+\+100 does not map 0"):
        Container(["id"]).user_namespace(ids, IdMap.single(0, BASE, 100)).run()


def test_a_layer_that_cannot_be_idmapped_is_a_clear_error(rootfs: Path, tmp_path: Path) -> None:
    from nsprim.fs.mount import mounted

    ramfs = tmp_path / "ramfs"
    ramfs.mkdir()
    with mounted("ramfs", ramfs, "ramfs"):  # no idmapped mounts on ramfs
        layer = layer_of(rootfs, ramfs / "layer")
        ids = IdMap.single(0, BASE, 65536)
        with pytest.raises(nsprim.SyscallError) as info:
            Container(["true"]).image([layer]).user_namespace(ids, ids).run()
    text = str(info.value)
    assert f"make an idmapped mount of `{layer}`" in text and "cannot be idmapped" in text, text


def test_auto_picks_a_free_slot_per_running_container(subids: int, rootfs: Path, tmp_path: Path) -> None:
    box = Container(["sh", "-c", "cat /proc/self/uid_map; read x"]).image([layer_of(rootfs, tmp_path / "l")])
    box = box.user_namespace(auto=True).env(PATH="/bin")
    with box.start(stdin=nsprim.PIPE, stdout=nsprim.PIPE) as first, box.start(stdin=nsprim.PIPE) as second:
        maps = [IdMap.read(c.pid, "uid") for c in (first, second)]
        gids = [IdMap.read(c.pid, "gid") for c in (first, second)]
        assert first.config.uid_map == maps[0]
        for c in (first, second):
            assert c.process.stdin is not None
            c.process.stdin.write(b"\n")
            c.process.stdin.close()
        assert first.wait(30) == 0 and second.wait(30) == 0
    starts = sorted(m.ranges[0].outside for m in maps)
    assert all(len(m.ranges) == 1 and m.ranges[0].count == 65536 and m.ranges[0].inside == 0 for m in maps)
    assert starts[0] != starts[1] and all(subids <= s < subids + 4 * 65536 for s in starts)
    assert [g.ranges[0].outside for g in gids] == [m.ranges[0].outside for m in maps]
    # Once they ended, the first slot is free again.
    again = box.command("cat", "/proc/self/uid_map").run(capture_output=True, timeout=60)
    assert (again.stdout or b"").split()[1] == str(subids).encode()


def test_auto_without_a_subordinate_range_says_how_to_add_one(tmp_path: Path) -> None:
    empty = tmp_path / "empty"
    empty.write_text("someoneelse:100000:65536\n")
    bind(empty, "/etc/subuid", readonly=True)
    try:
        with pytest.raises(nsprim.ConfigError, match=r"/etc/subuid has no range for `root`.*usermod --add-subuids"):
            Container(["true"]).user_namespace(auto=True).run()
    finally:
        umount("/etc/subuid")


def cli(*args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONPATH": SRC}
    argv = [sys.executable, "-m", "nsprim", *args]
    return subprocess.run(argv, capture_output=True, text=True, timeout=60, env=env)


@pytest.mark.parametrize("kind", ["directory", "image"])
def test_cli_userns_auto(kind: str, subids: int, rootfs: Path, tmp_path: Path, shared_dir: Path) -> None:
    """`nsprim run --userns=auto --rootfs IMG -- id`: uid 0 inside, a subordinate uid outside."""
    root = layer_of(rootfs, tmp_path / "root")
    how = ["--rootfs", str(root)] + (["--ro"] if kind == "directory" else [])
    r = cli("run", "--userns=auto", *how, "--bind", f"{shared_dir}:/mnt", "-e", "PATH=/bin", "--", "sh", "-c", PROBE)
    assert r.returncode == 0, r.stderr
    out = r.stdout.split()
    assert out[:3] == ["0", "0", "0"] and subids <= int(out[3]) < subids + 4 * 65536 and out[4] == "65536"
    assert (shared_dir / "made").stat().st_uid == int(out[3])


def test_cli_user_runs_the_payload_as_that_user(rootfs: Path) -> None:
    for spec, expected in (("guest", "405 100"), ("405:7", "405 7"), ("1234", "1234 1234")):
        r = cli("run", "--rootfs", str(rootfs), "-u", spec, "-e", "PATH=/bin", "--", "sh", "-c", "id -u; id -g")
        assert (r.returncode, r.stdout.split()) == (0, expected.split()), r.stderr
    r = cli("run", "--rootfs", str(rootfs), "--user", "nosuch", "--", "id")
    assert r.returncode == 125 and r.stderr.count("\n") == 1 and "unknown user `nosuch`" in r.stderr


def test_cli_userns_host_is_no_user_namespace() -> None:
    r = cli("run", "--userns=host", "--", "sh", "-c", "readlink /proc/self/ns/user")
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip() == os.readlink("/proc/self/ns/user")


def test_rootless_auto_maps_itself_as_root_and_a_slot_through_newuidmap(
    subids: int, rootfs: Path, open_tmp: Path
) -> None:
    """An unprivileged caller (nobody) keeps its own uid as root inside, 1.. on its slot (newuidmap)."""
    root = layer_of(rootfs, open_tmp / "root")

    def run() -> str:
        box = Container(["cat", "/proc/self/uid_map", "/proc/self/gid_map"]).rootfs(root).user_namespace(auto=True)
        r = box.env(PATH="/bin").run(capture_output=True, timeout=60)
        return (r.stdout or b"").decode() + (r.stderr or b"").decode()

    out = run_as_nobody(run).split()
    slot = str(subids + 4 * 65536)
    assert out == ["0", "65534", "1", "1", slot, "65535", "0", "65534", "1", "1", slot, "65535"]


def test_doctor_checks_what_auto_needs(subids: int) -> None:
    r = cli("doctor")
    assert "[ok  ] idmapped mounts: work on" in r.stdout, r.stdout
    assert f"[ok  ] subordinate ids: /etc/subuid and /etc/subgid give `root` {4 * 65536} uids" in r.stdout


def test_a_read_only_directory_lacking_a_mount_point(rootfs: Path, tmp_path: Path) -> None:
    """The throwaway overlay that makes a read-only root's missing mount points is of the idmapped copy."""
    root = layer_of(rootfs, tmp_path / "dir")
    ids = IdMap.single(0, BASE, 65536)
    box = Container(["sh", "-c", "ls -lnd /etc/passwd; touch /newdir/x && echo ok; touch /etc/y || echo ro"])
    r = box.rootfs(root).tmpfs("/newdir").user_namespace(ids, ids).env(PATH="/bin").run(capture_output=True)
    assert r.returncode == 0, r.stderr
    lines = (r.stdout or b"").decode().splitlines()
    assert lines[0].split()[2:4] == ["0", "0"] and lines[1:] == ["ok", "ro"], lines
    assert not (root / "newdir").exists()
