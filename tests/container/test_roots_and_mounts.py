"""Container roots and mounts: read-only sources stay untouched, overlay layers with any name,
tmpfs sizes the kernel would misread, and errors that say which part failed."""

from __future__ import annotations

import errno
import pickle
import secrets
import shutil
import stat
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

import nsprim
from nsprim._sys import C
from nsprim._sys.spawn import Report, StepKind, StepPart
from nsprim.container import Container
from nsprim.errors import ConfigError, StepError, SyscallError
from nsprim.fs.mountinfo import parse_mountinfo
from nsprim.fs.overlay import OverlayMount
from nsprim.fs.rootfs import RootFS, Tmpfs, tmpfs_size_max
from nsprim.fs.steps import CreateInRoot, MountFs, MountInRoot
from nsprim.lowlevel import _died_at, _reported_step
from nsprim.plan import Chdir, Plan, Step

from ..conftest import requires_root, run_as_nobody


def out(result: object) -> str:
    return (result.stdout or b"").decode()  # type: ignore[attr-defined]


# ---- tmpfs sizes --------------------------------------------------------------------------


@pytest.mark.parametrize(
    "size",
    [
        "1.5M",  # parse_size takes fractions; the kernel's memparse stops at the dot
        "1Ki",
        "64MB",
        0,  # the kernel's "no limit"
        "0",
        2**64,  # wraps around to 0 in the kernel
        "16384P",
        tmpfs_size_max() + 1,
        "\u0661\u0662\u0663M",  # Arabic-Indic digits
        "\uff11\uff12M",  # fullwidth digits
        "010m",  # octal to the kernel
        "0x10",
        "-1",
        -1,
        " 64m",
        "50%",
        True,
        1.5,
    ],
)
def test_tmpfs_sizes_the_kernel_would_misread_are_config_errors(size: object) -> None:
    with pytest.raises(ConfigError, match=r"tmpfs `/scratch` size `") as info:
        Container(["/bin/true"]).tmpfs("/scratch", size=size)  # type: ignore[arg-type]
    assert info.value.what is not None and "size" in info.value.what


@pytest.mark.parametrize(
    ("size", "data"),
    [(4096, "size=4096"), ("64m", f"size={64 << 20}"), ("1G", f"size={1 << 30}"), ("7k", "size=7168")],
)
def test_tmpfs_sizes_reach_the_kernel_as_bytes(size: int | str, data: str) -> None:
    assert data in Tmpfs("/t", size=size).data.split(",")
    assert Tmpfs("/t", size=tmpfs_size_max()).data.endswith(f"size={tmpfs_size_max()}")


@requires_root
def test_a_sized_tmpfs_in_a_container_is_that_size() -> None:
    box = Container(["cat", "/proc/self/mountinfo"]).host_root().tmpfs("/tmp", size="3m")
    r = box.run(capture_output=True)
    assert r.returncode == 0, r.stderr
    (tmp,) = [m for m in parse_mountinfo(out(r)) if m.mount_point == "/tmp"]
    assert tmp.super_option("size") == "3072k"


# ---- image layers with any name -------------------------------------------------------------


def _layer(path: Path, marker: str) -> Path:
    path.mkdir(parents=True)
    (path / marker).write_text(marker)
    return path


@requires_root
def test_layer_names_with_colons_and_commas_stay_one_layer_each(rootfs: Path, tmp_path: Path) -> None:
    _layer(tmp_path / "x:y,z", "from-x-y-z")
    _layer(tmp_path / "a:", "from-a")
    _layer(tmp_path / "a", "split-a")  # what a split at the colon would take as a layer
    box = Container(["ls", "/"]).image([tmp_path / "x:y,z", f"{tmp_path}/a:/", rootfs])
    r = box.run(capture_output=True)
    assert r.returncode == 0, r.stderr
    listing = out(r).split()
    assert "from-x-y-z" in listing and "from-a" in listing and "marker" in listing
    assert "split-a" not in listing and "usr" not in listing  # nothing of the host's /


@requires_root
def test_a_layer_name_cannot_smuggle_in_the_host_root(rootfs: Path, tmp_path: Path) -> None:
    # ".../x:/:.../y" split at its colons would be ".../x", "/" and ".../y": the host's / as a layer.
    hostile = _layer(Path(f"{tmp_path}/x:/:{tmp_path}/y"), "hostile-layer")
    _layer(tmp_path / "x", "split-x")
    _layer(tmp_path / "y", "split-y")
    r = Container(["ls", "/"]).image([hostile, rootfs]).run(capture_output=True)
    assert r.returncode == 0, r.stderr
    listing = out(r).split()
    assert "hostile-layer" in listing and "marker" in listing
    assert not {"usr", "split-x", "split-y"} & set(listing), listing


# ---- which part failed ----------------------------------------------------------------------


def _parts_root(tmp_path: Path) -> Path:
    root = tmp_path / "root"
    (root / "mnt").mkdir(parents=True)
    (root / "file").write_text("")
    (root / "dangling").symlink_to("/nowhere")  # followed inside the root: to a missing /nowhere
    (tmp_path / "not-null").write_text("")
    return root


PART_CASES = [
    # (the step, given root and tmp_path; the part; how the message starts)
    (lambda r, t: MountInRoot(r, "proc", "/proc", fstype="proc"), StepPart.TARGET,
     "mount in root: resolving target `/proc`: No such file or directory"),
    (lambda r, t: MountInRoot(r, t / "gone", "/mnt", flags=C.MS_BIND), StepPart.SOURCE,
     "mount in root: resolving source `{t}/gone`: No such file or directory"),
    (lambda r, t: MountInRoot(r, "tmpfs", "/file/x", fstype="tmpfs", create="dir"), StepPart.TARGET,
     "mount in root: resolving target `/file/x`: Not a directory"),
    (lambda r, t: MountInRoot(r, "tmpfs", "/dangling/x", fstype="tmpfs", create="dir"), StepPart.CREATE,
     "mount in root: creating target `/dangling/x`: No such file or directory"),
    (lambda r, t: MountInRoot(r, "none", "/mnt", fstype="nsprim-no-such-fs"), StepPart.ATTACH,
     "mount in root: mounting `none` on `/mnt`: No such device"),
    (lambda r, t: MountInRoot(t / "no-root", "tmpfs", "/mnt", fstype="tmpfs"), StepPart.ROOT,
     "mount in root: opening root `{t}/no-root`: No such file or directory"),
    (lambda r, t: MountInRoot(r, t / "not-null", "/file", mask=True), StepPart.NULL,
     "mask in root: checking the null device `{t}/not-null`: Operation not permitted"),
    (lambda r, t: CreateInRoot(r, "/file/x", stat.S_IFREG | 0o644), StepPart.PARENT,
     "create in root: creating the directories above `/file/x`: Not a directory"),
    (lambda r, t: MountFs("overlay", (("source", "overlay"), ("lowerdir+", f"{t}/gone:/")), r / "mnt"),
     StepPart.FS_PARAM + 1, "mount `overlay` on `{r}/mnt`: setting `lowerdir+` to `{t}/gone:/`: No such file"),
]  # fmt: skip


@requires_root
@pytest.mark.parametrize(("make", "part", "message"), PART_CASES)
def test_a_composite_step_says_which_of_its_parts_failed(
    tmp_path: Path, make: Callable[[Path, Path], Step], part: int, message: str
) -> None:
    root = _parts_root(tmp_path)
    step = make(root, tmp_path)
    with pytest.raises(StepError) as info:
        nsprim.run(["/bin/true"], new={"mnt"}, steps=[step])
    assert str(info.value).startswith(message.format(t=tmp_path, r=root)), str(info.value)
    assert info.value.part == part and info.value.step is step
    again = pickle.loads(pickle.dumps(info.value))
    assert str(again) == str(info.value) and again.part == part


def test_a_report_that_does_not_match_its_step_is_refused() -> None:
    plan = Plan((Chdir("/"),))
    with pytest.raises(SyscallError, match=r"does not match the plan \(step 0 is of kind"):
        _reported_step(Report(0, int(StepKind.MOUNT), errno.ENOENT), plan.steps, None, plan)
    with pytest.raises(SyscallError, match=r"no such step"):
        _reported_step(Report(3, int(StepKind.CHDIR), errno.ENOENT), plan.steps, None, plan)
    assert _reported_step(Report(0, int(StepKind.CHDIR), errno.ENOENT), plan.steps, None, plan) == Chdir("/")


def test_a_death_record_names_its_step_only_when_the_kinds_agree() -> None:
    plan = Plan((Chdir("/"),))
    assert _died_at(Report(0, int(StepKind.CHDIR), 0, died=True), plan.steps, None, plan) == Chdir("/")
    assert _died_at(Report(0, int(StepKind.MOUNT), 0, died=True), plan.steps, None, plan) is None
    assert _died_at(Report(1, 0, 0, died=True), plan.steps, None, plan) is None  # ran to its end


@requires_root
def test_an_overlay_that_fails_in_the_child_names_the_missing_layer(tmp_path: Path) -> None:
    layers = [_layer(tmp_path / "top", "t"), _layer(tmp_path / "gone", "g")]
    for name in ("upper", "work", "merged"):
        (tmp_path / name).mkdir()
    step = OverlayMount(tmp_path / "merged", layers, tmp_path / "upper", tmp_path / "work").mount_step()
    (tmp_path / "gone" / "g").unlink()
    (tmp_path / "gone").rmdir()  # after the plan was made, before the child mounts
    with pytest.raises(StepError) as info:
        nsprim.run(["/bin/true"], new={"mnt"}, steps=[step])
    assert str(info.value).startswith(
        f"mount `overlay` on `{tmp_path}/merged`: lower dir `{tmp_path}/gone`: No such file or directory"
    )


@pytest.mark.parametrize("ro", [[], ["--ro"]])
def test_cli_rootfs_that_is_not_a_directory_says_so(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], ro: list[str]
) -> None:
    from nsprim.cli import main

    (tmp_path / "file").write_text("not a root")
    assert main(["run", *ro, "--rootfs", str(tmp_path / "file"), "--", "/bin/true"]) == 125
    assert capsys.readouterr().err == f"nsprim run: --rootfs `{tmp_path}/file`: not a directory\n"
    assert main(["run", *ro, "--rootfs", str(tmp_path / "nothing"), "--", "/bin/true"]) == 125
    assert capsys.readouterr().err == f"nsprim run: --rootfs `{tmp_path}/nothing`: No such file or directory\n"


# ---- read-only roots are never written ------------------------------------------------------


def _tree(root: Path) -> list[str]:
    return sorted(str(p.relative_to(root)) for p in root.rglob("*"))


@pytest.fixture
def image(rootfs: Path) -> Iterator[Path]:
    """A copy of the busybox root without /proc, /sys and /dev, where an unprivileged user can reach it."""
    top = Path(tempfile.mkdtemp(prefix="nsprim-test-image-"))
    try:
        top.chmod(0o755)
        shutil.copytree(rootfs, top / "image", symlinks=True)
        for name in ("proc", "sys", "dev"):
            (top / "image" / name).rmdir()
        yield top / "image"
    finally:
        shutil.rmtree(top)


SHOW_NEW = "grep -c ' /new ' /proc/self/mountinfo; cat /new/data 2>/dev/null; touch /x 2>/dev/null || echo ro"


@requires_root
@pytest.mark.parametrize("kind", ["tmpfs", "bind"])
def test_a_read_only_directory_root_gets_its_missing_mount_points_without_being_written(
    image: Path, tmp_path: Path, kind: str
) -> None:
    before = _tree(image)
    box = Container(["sh", "-c", SHOW_NEW]).rootfs(image)
    if kind == "tmpfs":
        box = box.tmpfs("/new")
    else:
        (tmp_path / "src").mkdir()
        (tmp_path / "src" / "data").write_text("bound\n")
        box = box.bind(tmp_path / "src", "/new")
    r = box.run(capture_output=True)
    assert r.returncode == 0, r.stderr
    assert out(r).split() == ["1", "bound", "ro"] if kind == "bind" else ["1", "ro"]
    assert _tree(image) == before  # no /new, no /proc, /sys or /dev made in it


@requires_root
def test_a_read_only_root_with_every_mount_point_stays_a_read_only_bind(rootfs: Path) -> None:
    r = Container(["sh", "-c", "cat /proc/self/mountinfo"]).rootfs(rootfs).tmpfs("/tmp").run(capture_output=True)
    assert r.returncode == 0, r.stderr
    (top,) = [m for m in parse_mountinfo(out(r)) if m.mount_point == "/"]
    assert top.fstype != "overlay" and top.readonly  # nothing was missing: no overlay needed


@requires_root
def test_a_rootless_read_only_root_gets_its_mount_points_too(image: Path) -> None:
    before = _tree(image)

    def body() -> str:
        r = Container(["sh", "-c", SHOW_NEW]).rootfs(image).tmpfs("/new").run(capture_output=True)
        return out(r) + f"rc={r.returncode}"

    assert run_as_nobody(body).split() == ["1", "ro", "rc=0"]
    assert _tree(image) == before


@requires_root
def test_cli_ro_with_a_tmpfs_the_host_root_lacks_is_refused_and_writes_nothing(
    capsys: pytest.CaptureFixture[str],
) -> None:
    from nsprim.cli import main

    target = Path(f"/nsprim-test-{secrets.token_hex(4)}")
    try:
        assert main(["run", "--ro", "--tmpfs", str(target), "--", "/bin/true"]) == 125
        err = capsys.readouterr().err
        assert err.startswith(
            f"nsprim run: tmpfs target `{target}`: No such file or directory in the read-only root `/`"
        )
        assert not target.exists()
    finally:
        if target.is_dir():  # (only where nsprim wrongly made it)
            target.rmdir()


@requires_root
def test_read_only_root_fs_refuses_a_missing_mount_point_and_the_kernel_backs_it(tmp_path: Path) -> None:
    root = tmp_path / "root"
    for d in ("proc", "sys", "dev", "bin"):
        (root / d).mkdir(parents=True)
    with pytest.raises(
        ConfigError, match=f"tmpfs target `/new`: No such file or directory in the read-only root `{root}`"
    ):
        RootFS(root, readonly=True, tmpfs=(Tmpfs("/new"),)).steps()
    assert not (root / "new").exists()
    # Made while the plan is built, gone before the child mounts: still nothing written.
    (root / "new").mkdir()
    steps = RootFS(root, readonly=True, tmpfs=(Tmpfs("/new"),)).steps()
    (root / "new").rmdir()
    with pytest.raises(StepError, match=r"^mount in root: resolving target `/new`: No such file or directory"):
        nsprim.run(["/bin/true"], new={"mnt", "pid"}, steps=steps)
    assert not (root / "new").exists()
    # Asked for: made in the root.
    RootFS(root, readonly=True, mount_points="create", tmpfs=(Tmpfs("/made"),), proc=False).steps()


@requires_root
def test_a_container_without_a_root_creates_nothing_on_the_host() -> None:
    target = Path(f"/nsprim-test-{secrets.token_hex(4)}")
    try:
        with pytest.raises(ConfigError, match=f"tmpfs target `{target}`: No such file or directory"):
            Container(["/bin/true"]).tmpfs(target).run()
        assert not target.exists()
    finally:
        if target.is_dir():  # (only where nsprim wrongly made it)
            target.rmdir()
