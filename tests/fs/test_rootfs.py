"""RootFS: the container root assembled by plan steps in C, seen from inside the container."""

from __future__ import annotations

import errno
import os
import shutil
import stat
from collections.abc import Sequence
from pathlib import Path

import pytest

import nsprim
from nsprim import _sys
from nsprim.errors import ConfigError, StepError
from nsprim.fs.mountinfo import parse_mountinfo
from nsprim.fs.overlay import OverlayMount
from nsprim.fs.rootfs import Bind, RootFS, Tmpfs
from nsprim.fs.steps import CreateInRoot, MountInRoot
from nsprim.plan import Step

from ..tools import static_busybox

BUSYBOX = shutil.which("busybox")


@pytest.fixture(autouse=True)
def _static_busybox() -> None:
    global BUSYBOX
    BUSYBOX = static_busybox()


APPLETS = ("sh", "ls", "cat", "echo", "touch", "wc", "grep", "readlink", "mkdir", "stat", "id", "sort", "tr")
NEW = {"mnt", "pid", "uts", "ipc"}


def busybox_root(path: Path) -> Path:
    (path / "bin").mkdir(parents=True)
    assert BUSYBOX is not None
    shutil.copy2(BUSYBOX, path / "bin" / "busybox")
    for applet in APPLETS:
        os.symlink("busybox", path / "bin" / applet)
    return path


def run_in(rootfs: RootFS, script: str, before: Sequence[Step] = (), **kw: object) -> str:
    r = nsprim.run(
        ["/bin/busybox", "sh", "-c", script],
        new=NEW,
        steps=[*before, *rootfs.steps()],
        env={"PATH": "/bin"},
        capture_output=True,
        timeout=20,
        **kw,  # type: ignore[arg-type]
    )
    assert r.returncode == 0, (r.stdout, r.stderr)
    assert r.stdout is not None
    return r.stdout.decode()


def sections(out: str) -> dict[str, str]:
    parts: dict[str, str] = {}
    for chunk in out.split("=== ")[1:]:
        name, _, body = chunk.partition("\n")
        parts[name.strip()] = body
    return parts


SCRIPT = r"""
echo "=== root"; ls -a /
echo "=== mountinfo"; cat /proc/self/mountinfo
echo "=== pids"; ls /proc | grep -E '^[0-9]+$' | sort -n | tr '\n' ' '; echo
echo "=== kcore"; cat /proc/kcore 2>/dev/null | wc -c
echo "=== keys"; cat /proc/keys | wc -c
echo "=== firmware"; ls -a /sys/firmware
echo "=== procsys"; echo evil > /proc/sys/kernel/hostname 2>&1 && echo WROTE || echo refused
echo "=== dev"; ls /dev
echo "=== devpts"; ls /dev/pts
echo "=== null"; stat -c '%F %t:%T %a' /dev/null
echo "=== host"; ls /tmp 2>&1 || true; cat /etc/hostname 2>&1 || true
"""


def test_assembled_root_is_all_the_process_sees(tmp_path: Path) -> None:
    root = busybox_root(tmp_path / "root")
    out = sections(run_in(RootFS(root), SCRIPT))
    assert out["root"].split() == [".", "..", "bin", "dev", "proc", "sys"]
    mounts = parse_mountinfo(out["mountinfo"])
    points = {m.mount_point for m in mounts}
    assert points >= {"/", "/proc", "/sys", "/dev", "/dev/pts", "/dev/shm", "/proc/keys", "/proc/sys", "/sys/firmware"}
    assert ("/proc/kcore" in points) == os.path.exists("/proc/kcore")  # masked where the kernel has it
    assert all(m.mount_point == "/" or m.mount_point.startswith(("/proc", "/sys", "/dev")) for m in mounts)
    assert sum(1 for m in mounts if m.mount_point == "/") == 1  # the old root is gone
    assert str(tmp_path) not in "".join(m.mount_point for m in mounts)
    assert next(int(p) for p in out["pids"].split()) == 1 and max(int(p) for p in out["pids"].split()) < 20
    assert out["kcore"].strip() == "0" and out["keys"].strip() == "0"
    assert out["firmware"].split() == [".", ".."]
    assert out["procsys"].strip() == "refused"
    assert out["dev"].split() == sorted(
        ["fd", "full", "null", "ptmx", "pts", "random", "shm", "stderr", "stdin", "stdout", "tty", "urandom", "zero"]
    )
    assert out["devpts"].split() == ["ptmx"]
    assert out["null"].strip() == "character special file 1:3 666"
    assert "No such file" in out["host"] and "hostname" not in out["host"].replace("/etc/hostname", "")
    by_point = {m.mount_point: m for m in mounts}
    for ro in ("/sys", "/proc/sys", "/proc/bus", "/proc/sysrq-trigger"):
        assert by_point[ro].readonly if os.path.exists(ro) else ro not in by_point
    assert by_point["/dev/pts"].super_option("ptmxmode") == "666"


def test_binds_tmpfs_and_readonly_root(tmp_path: Path) -> None:
    root = busybox_root(tmp_path / "root")
    for d in ("proc", "sys", "dev", "tmp", "srv/data", "etc"):  # a read-only root must have its mount points
        (root / d).mkdir(parents=True)
    (root / "etc" / "app.conf").write_text("")
    before = sorted(str(p.relative_to(root)) for p in root.rglob("*"))
    data = tmp_path / "data"
    data.mkdir()
    (data / "hello").write_text("from the host\n")
    conf = tmp_path / "app.conf"
    conf.write_text("x=1\n")
    rootfs = RootFS(
        root,
        readonly=True,
        binds=(
            Bind(data, "/srv/data", readonly=True, nosuid=True, nodev=True, noexec=True),
            Bind(conf, "/etc/app.conf"),
            Bind(tmp_path / "missing", "/opt/x", optional=True),
        ),
        tmpfs=(Tmpfs("/tmp", size="1m", mode=0o1777),),
    )
    out = sections(
        run_in(
            rootfs,
            r"""
echo "=== data"; cat /srv/data/hello
echo "=== conf"; cat /etc/app.conf
echo "=== rodata"; touch /srv/data/x 2>/dev/null && echo WROTE || echo refused
echo "=== roroot"; touch /newfile 2>/dev/null && echo WROTE || echo refused
echo "=== tmp"; touch /tmp/ok && stat -c %a /tmp
echo "=== mountinfo"; cat /proc/self/mountinfo
""",
        )
    )
    assert out["data"] == "from the host\n" and out["conf"] == "x=1\n"
    assert out["rodata"].strip() == "refused" and out["roroot"].strip() == "refused"
    assert out["tmp"].strip() == "1777"
    by_point = {m.mount_point: m for m in parse_mountinfo(out["mountinfo"])}
    srv = by_point["/srv/data"]
    assert srv.readonly and {"nosuid", "nodev", "noexec"} <= set(srv.options)
    assert by_point["/tmp"].super_option("size") == "1024k"
    assert "/opt/x" not in by_point
    assert sorted(str(p.relative_to(root)) for p in root.rglob("*")) == before  # nothing written to it


def test_overlay_root_writes_land_in_upper(tmp_path: Path) -> None:
    layer = busybox_root(tmp_path / "layer")
    (layer / "etc").mkdir()
    (layer / "etc" / "motd").write_text("base\n")
    for d in ("upper", "work", "root"):
        (tmp_path / d).mkdir()
    ov = OverlayMount(tmp_path / "root", [layer], tmp_path / "upper", tmp_path / "work")
    out = run_in(RootFS.from_overlay(ov), "echo changed > /etc/motd; echo new > /new; cat /etc/motd")
    assert out == "changed\n"
    assert (tmp_path / "upper" / "etc" / "motd").read_text() == "changed\n"
    assert (tmp_path / "upper" / "new").read_text() == "new\n"
    assert (layer / "etc" / "motd").read_text() == "base\n"
    assert not ov.mounted  # mounted in the child's namespace only


def test_deep_overlay_root_uses_the_new_mount_api_in_the_child(tmp_path: Path) -> None:
    base = busybox_root(tmp_path / "layers" / "base")
    lower = [base]
    for i in range(150):
        p = tmp_path / "layers" / f"a-rather-long-layer-directory-name-{i:04d}"
        p.mkdir()
        (p / f"f{i}").write_text(str(i))
        lower.insert(0, p)
    for d in ("upper", "work", "root"):
        (tmp_path / d).mkdir()
    ov = OverlayMount(tmp_path / "root", lower, tmp_path / "upper", tmp_path / "work")
    assert ov.choose_api() == "new"
    out = run_in(RootFS.from_overlay(ov, sysfs=False), "ls / | wc -l; cat /f0; echo; cat /f149")
    assert out.split() == [str(150 + 3), "0", "149"]  # bin dev proc + 150 files (sys not mounted nor created)


def test_chroot_fallback(tmp_path: Path) -> None:
    root = busybox_root(tmp_path / "root")
    out = sections(run_in(RootFS(root, enter="chroot"), 'echo "=== root"; ls /; echo "=== host"; ls /tmp 2>&1 || true'))
    assert out["root"].split() == ["bin", "dev", "proc", "sys"]
    assert "No such file" in out["host"]


# ---- hostile images ---------------------------------------------------------------------------


@pytest.mark.parametrize("link", ["/proc", "../../../../../../proc", "/"])
def test_image_symlink_cannot_point_proc_at_the_host(tmp_path: Path, link: str) -> None:
    root = busybox_root(tmp_path / "root")
    os.symlink(link, root / "proc")
    with pytest.raises(StepError) as info:
        nsprim.run(["/bin/busybox", "true"], new=NEW, steps=RootFS(root).steps())
    msg = str(info.value)
    assert msg.startswith("mount in root: resolving target `/proc`: Too many levels of symbolic links")
    assert info.value.path == f"{root}/proc"


def test_symlinks_in_bind_targets_stay_inside_the_root(tmp_path: Path) -> None:
    root = busybox_root(tmp_path / "root")
    (root / "etc").mkdir()
    os.symlink("/etc", root / "conf")  # absolute: must mean <root>/etc, never the host's /etc
    os.symlink("../../../../../../etc", root / "conf2")
    data = tmp_path / "data"
    data.mkdir()
    (data / "marker").write_text("bound\n")
    rootfs = RootFS(root, binds=(Bind(data, "/conf/sub"), Bind(data, "/conf2/sub2")))
    out = run_in(rootfs, "cat /etc/sub/marker /etc/sub2/marker; grep -c ' /etc/sub' /proc/self/mountinfo")
    assert out.split() == ["bound", "bound", "2"]
    assert (root / "etc" / "sub").is_dir() and not Path("/etc/sub").exists()


def test_missing_bind_source_and_bad_paths_are_config_errors(tmp_path: Path) -> None:
    root = busybox_root(tmp_path / "root")
    with pytest.raises(ConfigError, match=f"bind source `{tmp_path}/nope`: No such file"):
        RootFS(root, binds=(Bind(tmp_path / "nope", "/x"),)).steps()
    with pytest.raises(ConfigError, match=r"must not contain `\.\.`"):
        Bind(tmp_path, "/a/../../x")
    with pytest.raises(ConfigError, match="absolute path inside"):
        Tmpfs("relative")
    with pytest.raises(ConfigError, match="not a directory"):
        RootFS(tmp_path / "nope").steps()
    with pytest.raises(ConfigError, match="lower dir"):
        (tmp_path / "u").mkdir()
        (tmp_path / "w").mkdir()
        RootFS.from_overlay(OverlayMount(root, [tmp_path / "missing"], tmp_path / "u", tmp_path / "w")).steps()


def test_in_root_steps_alone(tmp_path: Path) -> None:
    """The steps compose with spawn directly; errors name the path inside the root."""
    root = busybox_root(tmp_path / "root")
    steps = [
        CreateInRoot(root, "/a/b/fifo", stat.S_IFIFO | 0o640),
        CreateInRoot(root, "/a/link", stat.S_IFLNK | 0o777, link_target="/nowhere"),
        MountInRoot(root, "tmpfs", "/a/t", fstype="tmpfs", create="dir"),
    ]
    r = nsprim.run(["/bin/true"], new={"mnt"}, steps=steps)
    assert r.returncode == 0
    assert stat.S_ISFIFO(os.lstat(root / "a" / "b" / "fifo").st_mode)
    assert stat.S_IMODE(os.lstat(root / "a" / "b" / "fifo").st_mode) == 0o640  # exact, whatever the umask
    assert os.readlink(root / "a" / "link") == "/nowhere"
    with pytest.raises(StepError, match=r"^mount in root: resolving target `/missing/x`: No such file or directory"):
        nsprim.run(["/bin/true"], new={"mnt"}, steps=[MountInRoot(root, "tmpfs", "/missing/x", fstype="tmpfs")])


def test_in_a_user_namespace_devices_are_bound(tmp_path: Path) -> None:
    from nsprim.idmap import IdMap

    root = busybox_root(tmp_path / "root")
    ids = IdMap.single(0, 0, 65536)
    r = nsprim.run(
        ["/bin/busybox", "sh", "-c", "ls /dev; cat /proc/self/uid_map; echo x > /dev/null && echo ok"],
        new={"user", "mnt", "pid", "net"},  # sysfs in a user namespace needs its own network namespace
        uid_map=ids,
        gid_map=ids,
        steps=RootFS(root, devices="bind").steps(),
        env={"PATH": "/bin"},
        capture_output=True,
        timeout=20,
    )
    assert r.returncode == 0, r.stderr
    out = (r.stdout or b"").decode().split()
    assert out[:13] == sorted(
        ["fd", "full", "null", "ptmx", "pts", "random", "shm", "stderr", "stdin", "stdout", "tty", "urandom", "zero"]
    )
    assert out[-1] == "ok"


def test_recursive_readonly_bind_covers_submounts(tmp_path: Path) -> None:
    from nsprim.fs.mount import tmpfs, umount

    root = busybox_root(tmp_path / "root")
    data = tmp_path / "data"
    (data / "sub").mkdir(parents=True)
    tmpfs(data / "sub")  # a submount, in the test's private namespace
    try:
        rootfs = RootFS(root, binds=(Bind(data, "/data", readonly=True),))
        out = run_in(
            rootfs,
            "touch /data/x 2>/dev/null && echo WROTE || echo refused; "
            "touch /data/sub/y 2>/dev/null && echo WROTE || echo refused",
        )
        assert out.split() == ["refused", "refused"]
    finally:
        umount(data / "sub")


def test_without_openat2_the_careful_walk_refuses_symlinks(tmp_path: Path) -> None:
    """A kernel without openat2 (made so by a seccomp filter answering ENOSYS) gets the O_NOFOLLOW walk."""
    import errno

    seccomp = pytest.importorskip("nsprim.security.seccomp")
    steps_mod = pytest.importorskip("nsprim.security.steps")
    no_openat2 = steps_mod.LoadSeccomp(seccomp.compile_profile(seccomp.Seccomp.deny("openat2", errno=errno.ENOSYS)))
    root = busybox_root(tmp_path / "root")
    data = tmp_path / "data"
    data.mkdir()
    (data / "m").write_text("bound\n")
    r = nsprim.run(
        ["/bin/busybox", "sh", "-c", "ls /dev | wc -l; cat /data/m"],
        new=NEW,
        steps=[no_openat2, *RootFS(root, binds=(Bind(data, "/data"),)).steps()],
        env={"PATH": "/bin"},
        capture_output=True,
        timeout=20,
    )
    assert r.returncode == 0, r.stderr
    assert (r.stdout or b"").decode().split() == ["13", "bound"]
    os.symlink("/srv", root / "link")  # would be followed inside the root by openat2; the walk refuses it
    with pytest.raises(
        StepError, match=r"^mount in root: resolving target `/link/x`: Too many levels of symbolic links"
    ):
        nsprim.run(
            ["/bin/true"], new={"mnt"}, steps=[no_openat2, *RootFS(root, binds=(Bind(data, "/link/x"),)).steps()]
        )


def test_auto_falls_back_to_chroot_only_from_a_ram_root(tmp_path: Path) -> None:
    """Chrooted into a tmpfs that is not a mount point, pivot_root says EINVAL, as from an initramfs."""
    from nsprim.fs.mount import tmpfs, umount
    from nsprim.fs.steps import EnterRoot
    from nsprim.plan import Chroot, Mount

    ram = tmp_path / "ram"
    ram.mkdir()
    tmpfs(ram)
    try:
        busybox_root(ram / "sub" / "newroot")

        def steps(method: str) -> list[object]:
            return [
                Chroot(ram / "sub"),  # now "/" is a tmpfs directory, not a mount point
                Mount("/newroot", "/newroot", None, 0x1000 | 0x4000),  # MS_BIND | MS_REC
                EnterRoot("/newroot", method),  # type: ignore[arg-type]
            ]

        r = nsprim.run(["/bin/busybox", "ls", "/"], new={"mnt"}, steps=steps("auto"), capture_output=True)
        assert (r.stdout or b"").split() == [b"bin"]
        with pytest.raises(StepError, match="pivot_root `/newroot`: Invalid argument"):
            nsprim.run(["/bin/busybox", "true"], new={"mnt"}, steps=steps("pivot_root"))
    finally:
        umount(ram)


def test_auto_does_not_hide_other_pivot_errors(tmp_path: Path) -> None:
    from nsprim.fs.steps import EnterRoot
    from nsprim.plan import Chroot

    root = busybox_root(tmp_path / "sub" / "newroot")
    steps = [Chroot(tmp_path / "sub"), EnterRoot("/newroot", "auto")]  # not a mount point: pivot_root refuses
    with pytest.raises(StepError, match=r"pivot_root `/newroot`: (Invalid argument|Device or resource busy)"):
        nsprim.run(["/bin/busybox", "true"], new={"mnt"}, steps=steps)
    assert root.exists()


@pytest.mark.parametrize("source", ["/dev/zero", "symlink"])
def test_a_mask_must_be_the_null_device(tmp_path: Path, source: str) -> None:
    """CVE-2025-31133 class: the mask's source is checked through its descriptor, symlinks refused."""
    (tmp_path / "secret").write_text("do not show")
    if source == "symlink":
        link = tmp_path / "null-link"
        link.symlink_to("/dev/null")
        source = str(link)
    step = MountInRoot(tmp_path, source=source, target="/secret", mask=True)
    with pytest.raises(StepError) as info:
        nsprim.run(["true"], new={"mnt"}, steps=[step])
    assert info.value.errno == errno.EPERM


@pytest.mark.parametrize("target", ["/", "/self"])
def test_steps_after_a_mount_onto_the_root_itself_land_in_the_new_mount(tmp_path: Path, target: str) -> None:
    """The core keeps the root open across in-root steps: a mount onto the root (here a tmpfs, named
    directly or through a symlink resolving to it) must send the next steps into the new mount."""
    from nsprim.fs.steps import EnterRoot
    from nsprim.plan import Mount

    root = tmp_path / "root"
    root.mkdir()
    os.symlink("/", root / "self")
    host_bin = busybox_root(tmp_path / "host") / "bin"
    steps = [
        Mount(None, "/", None, 0x4000 | 0x40000),  # MS_REC | MS_PRIVATE
        MountInRoot(root, "tmpfs", target, fstype="tmpfs", data="mode=755"),
        CreateInRoot(root, "/dev/marker", stat.S_IFREG | 0o600),
        CreateInRoot(root, "/dev/other", stat.S_IFREG | 0o600),
        MountInRoot(root, host_bin, "/bin", flags=0x1000, create="dir"),  # MS_BIND
        EnterRoot(root, "pivot_root"),
    ]
    r = nsprim.run(["/bin/busybox", "ls", "/", "/dev"], new={"mnt"}, steps=steps, capture_output=True, timeout=20)
    assert r.returncode == 0, r.stderr
    assert (r.stdout or b"").decode().split() == ["/:", "bin", "dev", "/dev:", "marker", "other"]
    assert sorted(os.listdir(root)) == ["self"]  # nothing went below the tmpfs


def test_creates_after_a_mount_on_their_directory_land_in_the_new_mount(tmp_path: Path) -> None:
    """Creates in one directory share its descriptor, but never across a mount on that directory."""
    from nsprim.fs.steps import EnterRoot
    from nsprim.plan import Mount

    root = busybox_root(tmp_path / "root")
    steps = [
        Mount(None, "/", None, 0x4000 | 0x40000),  # MS_REC | MS_PRIVATE
        Mount(root, root, None, 0x1000 | 0x4000),  # MS_BIND | MS_REC: the root a mount point
        CreateInRoot(root, "/d/a", stat.S_IFIFO | 0o600),
        MountInRoot(root, "tmpfs", "/d", fstype="tmpfs"),
        CreateInRoot(root, "/d/b", stat.S_IFIFO | 0o600),
        CreateInRoot(root, "/d/c", stat.S_IFLNK | 0o777, link_target="b"),
        EnterRoot(root, "pivot_root"),
    ]
    r = nsprim.run(["/bin/busybox", "ls", "/d"], new={"mnt"}, steps=steps, capture_output=True, timeout=20)
    assert r.returncode == 0, r.stderr
    assert (r.stdout or b"").decode().split() == ["b", "c"]
    assert os.listdir(root / "d") == ["a"]


MASK_SCRIPT = r"""
for d in /m1 /m2 /m3/sub; do
  echo "=== $d"; stat -c '%a %F' $d; ls -A $d | wc -l
  touch $d/x 2>/dev/null && echo WROTE || echo refused; mkdir $d/y 2>/dev/null && echo WROTE || echo refused
done
echo "=== devs"; stat -c %d /m1 /m2 /m3/sub | sort -u | wc -l
echo "=== file"; stat -c '%F %t:%T' /f; cat /f | wc -c; echo x > /f && echo written
echo "=== mountinfo"; cat /proc/self/mountinfo
"""


def _mask_root(tmp_path: Path) -> Path:
    root = busybox_root(tmp_path / "root")
    for d in ("m1", "m2", "m3/sub"):
        (root / d).mkdir(parents=True)
        (root / d / "secret").write_text("hidden")
    (root / "f").write_text("hidden file")
    return root


def _check_masks(out: dict[str, str]) -> list[str]:
    for d in ("/m1", "/m2", "/m3/sub"):
        assert out[d].split() == ["0", "directory", "0", "refused", "refused"], (d, out[d])
    assert out["file"].split() == ["character", "special", "file", "1:3", "0", "written"]
    by_point = {m.mount_point: m for m in parse_mountinfo(out["mountinfo"])}
    for d in ("/m1", "/m2", "/m3/sub"):
        m = by_point[d]
        assert m.readonly and {"nosuid", "nodev", "noexec"} <= set(m.options), m
        assert m.fstype == "tmpfs" and m.source == "tmpfs" and m.super_option("mode") == "000", m
        assert "ro" in m.super_options, m
    return [out["devs"].strip()]


def test_masked_directories_share_one_empty_read_only_tmpfs(tmp_path: Path) -> None:
    """One read-only empty tmpfs (mode 000) per spawn, attached over every masked directory; a masked
    file is the null device."""
    root = _mask_root(tmp_path)
    rootfs = RootFS(root, masked_paths=("/m1", "/m2", "/m3/sub", "/f", "/missing"), readonly_paths=())
    out = sections(run_in(rootfs, MASK_SCRIPT))
    assert _check_masks(out) == ["1" if _sys.have_new_mount_api() else "3"]
    assert (root / "m1" / "secret").read_text() == "hidden"


def test_without_the_new_mount_api_masks_and_binds_are_classic_mounts(tmp_path: Path) -> None:
    """Where open_tree/move_mount/fsopen/mount_setattr are missing (ENOSYS, from a seccomp filter here),
    masks and read-only binds look the same from inside; each masked directory gets its own tmpfs."""
    seccomp = pytest.importorskip("nsprim.security.seccomp")
    steps_mod = pytest.importorskip("nsprim.security.steps")
    names = ("open_tree", "move_mount", "fsopen", "fsconfig", "fsmount", "mount_setattr")
    no_new_api = steps_mod.LoadSeccomp(seccomp.compile_profile(seccomp.Seccomp.deny(*names, errno=errno.ENOSYS)))
    root = _mask_root(tmp_path)
    data = tmp_path / "data"
    (data / "sub").mkdir(parents=True)
    rootfs = RootFS(
        root,
        masked_paths=("/m1", "/m2", "/m3/sub", "/f"),
        binds=(Bind(data, "/data", readonly=True, nosuid=True), Bind(data / "sub", "/rw")),
    )
    script = MASK_SCRIPT + 'echo "=== ro"; touch /data/x 2>/dev/null && echo WROTE || echo refused; touch /rw/y\n'
    out = sections(run_in(rootfs, script, before=[no_new_api]))
    assert _check_masks(out) == ["3"]
    assert out["ro"].strip() == "refused" and (data / "sub" / "y").exists()
    by_point = {m.mount_point: m for m in parse_mountinfo(out["mountinfo"])}
    assert by_point["/data"].readonly and "nosuid" in by_point["/data"].options
    assert by_point["/proc/sys"].readonly and not by_point["/rw"].readonly


def test_non_recursive_read_only_bind(tmp_path: Path) -> None:
    """A bind without its submounts: the top mount read-only (and nosuid), the submount left out."""
    from nsprim.fs.mount import tmpfs, umount

    root = busybox_root(tmp_path / "root")
    data = tmp_path / "data"
    (data / "sub").mkdir(parents=True)
    tmpfs(data / "sub")
    (data / "sub" / "in-submount").write_text("x")
    try:
        rootfs = RootFS(root, binds=(Bind(data, "/data", readonly=True, nosuid=True, recursive=False),))
        out = sections(
            run_in(
                rootfs,
                'echo "=== ls"; ls -A /data/sub\n'
                'echo "=== w"; touch /data/x 2>/dev/null && echo WROTE || echo refused\n'
                'echo "=== mountinfo"; cat /proc/self/mountinfo',
            )
        )
    finally:
        umount(data / "sub")
    assert out["ls"].split() == [] and out["w"].strip() == "refused"
    by_point = {m.mount_point: m for m in parse_mountinfo(out["mountinfo"])}
    assert by_point["/data"].readonly and "nosuid" in by_point["/data"].options
    assert "/data/sub" not in by_point


def test_missing_targets_are_made_inside_the_root_and_dangling_links_are_not_followed_out(tmp_path: Path) -> None:
    root = busybox_root(tmp_path / "root")
    (root / "etc").mkdir()
    os.symlink("/etc", root / "conf")
    os.symlink("/nowhere", root / "dangling")
    steps = [
        MountInRoot(root, "tmpfs", "/a/b/c", fstype="tmpfs", create="dir"),
        MountInRoot(root, "tmpfs", "/conf/x/y", fstype="tmpfs", create="dir"),
        CreateInRoot(root, "/d/e/f", stat.S_IFIFO | 0o600),
    ]
    r = nsprim.run(["/bin/true"], new={"mnt"}, steps=steps)
    assert r.returncode == 0
    assert (root / "a" / "b" / "c").is_dir() and (root / "etc" / "x" / "y").is_dir()
    assert stat.S_ISFIFO(os.lstat(root / "d" / "e" / "f").st_mode)
    with pytest.raises(StepError, match=r"^mount in root: creating target `/dangling/x`: No such file or directory"):
        nsprim.run(
            ["/bin/true"], new={"mnt"}, steps=[MountInRoot(root, "tmpfs", "/dangling/x", fstype="tmpfs", create="dir")]
        )
    assert not (root / "nowhere").exists() and not Path("/nowhere").exists()


def test_the_root_in_two_parts(tmp_path: Path) -> None:
    """prepare_steps (root, /sys, /dev: independent of the pid namespace) then finish_steps is steps()."""
    from nsprim.fs.steps import EnterRoot
    from nsprim.plan import Mount

    root = busybox_root(tmp_path / "root")
    rootfs = RootFS(root, binds=(Bind(root / "bin", "/mnt"),))
    first, rest = rootfs.prepare_steps(), rootfs.finish_steps()
    assert first + rest == rootfs.steps()
    described = [s.describe() for s in first]
    assert any("`/sys`" in d for d in described) and any("`/dev`" in d for d in described)
    assert not any("`/proc`" in d or "`/mnt`" in d for d in described)  # /proc and the binds come after
    assert isinstance(first[0], Mount) and any(isinstance(s, EnterRoot) for s in rest)
