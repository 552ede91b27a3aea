"""OverlayMount: mounting, options, errors, deep stacks and copy-on-write semantics."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest

from nsprim.errors import ConfigError, SyscallError, UnsupportedError
from nsprim.fs.mount import MountFlags
from nsprim.fs.mountinfo import find_mount, mountinfo
from nsprim.fs.overlay import OPAQUE_XATTR, OverlayMount, OverlayOptions, has_lowerdir_append

from .helpers import make_tree, snapshot


@pytest.fixture
def dirs(tmp_path: Path) -> dict[str, Path]:
    d = {name: tmp_path / name for name in ("base", "app", "upper", "work", "merged")}
    for p in d.values():
        p.mkdir()
    make_tree(d["base"], {"etc/passwd": "root:x:0:0\n", "etc/hosts": "127.0.0.1 localhost\n", "bin/sh": "#!sh\n"})
    make_tree(d["app"], {"app/main.py": "print('hi')\n", "etc/app.conf": "x=1\n", "data/d1/f": "1", "data/d2/g": "2"})
    os.symlink("../etc/passwd", d["app"] / "app" / "pw")
    return d


def overlay(d: dict[str, Path], **kw: object) -> OverlayMount:
    return OverlayMount(d["merged"], [d["app"], d["base"]], d["upper"], d["work"], **kw)  # type: ignore[arg-type]


@pytest.mark.parametrize("api", ["classic", "new"])
def test_mount_merges_layers_top_first(dirs: dict[str, Path], api: str) -> None:
    (dirs["base"] / "etc" / "app.conf").write_text("from base\n")
    with overlay(dirs, api=api) as ov:
        m = dirs["merged"]
        assert ov.mounted
        assert sorted(os.listdir(m)) == ["app", "bin", "data", "etc"]
        assert (m / "etc" / "app.conf").read_text() == "x=1\n"  # the top layer wins
        assert (m / "app" / "pw").read_text() == "root:x:0:0\n"
        info = find_mount(m)
        assert info is not None and info.fstype == "overlay"
        assert info.super_option("upperdir") == str(dirs["upper"])
    assert not ov.mounted
    assert find_mount(dirs["merged"]) is None


def test_read_only_overlay(dirs: dict[str, Path]) -> None:
    with OverlayMount(dirs["merged"], [dirs["app"], dirs["base"]]) as ov:
        assert ov.readonly
        with pytest.raises(OSError):
            (dirs["merged"] / "new").write_text("x")
        assert find_mount(dirs["merged"]) is not None


def test_readonly_flag_and_options(dirs: dict[str, Path]) -> None:
    opts = OverlayOptions(index=False, redirect_dir="off", metacopy=False, xino="off", volatile=True)
    with overlay(dirs, options=opts, flags=MountFlags.RDONLY | MountFlags.NOSUID | MountFlags.NODEV) as ov:
        info = find_mount(ov.target)
        assert info is not None and info.readonly and "nosuid" in info.options
        assert info.super_option("volatile") == "" or info.super_option("fsync") == "volatile"
        with pytest.raises(OSError):
            (ov.target / "x").write_text("x")


@pytest.mark.parametrize("api", ["classic", "new"])
def test_options_reach_the_kernel(dirs: dict[str, Path], api: str) -> None:
    opts = OverlayOptions(index=True, redirect_dir="on", metacopy=True, xino="on")
    with overlay(dirs, options=opts, api=api) as ov:
        info = find_mount(ov.target)
        assert info is not None
        for key, value in (("index", "on"), ("redirect_dir", "on"), ("metacopy", "on")):
            assert info.super_option(key) == value


def test_options_string_and_params(dirs: dict[str, Path]) -> None:
    ov = overlay(dirs, options=OverlayOptions(userxattr=True, xino="auto"))
    s = ov.options_string()
    assert s.startswith(f"lowerdir={dirs['app']}:{dirs['base']},upperdir={dirs['upper']},workdir={dirs['work']}")
    assert s.endswith(",xino=auto,userxattr")
    params = ov.fs_params()
    assert params[:3] == [("source", "overlay"), ("lowerdir+", str(dirs["app"])), ("lowerdir+", str(dirs["base"]))]
    assert ("userxattr", None) in params
    assert ov.options.opaque_xattr == "user.overlay.opaque"


# ---- bad input ------------------------------------------------------------------------


def test_missing_lower_dir_is_a_config_error(dirs: dict[str, Path]) -> None:
    missing = dirs["base"].parent / "nope"
    before = mountinfo()
    with pytest.raises(ConfigError, match=f"lower dir `{missing}`: No such file"):
        OverlayMount(dirs["merged"], [missing], dirs["upper"], dirs["work"]).mount()
    assert mountinfo() == before


def test_upper_and_work_on_different_file_systems(dirs: dict[str, Path]) -> None:
    other = Path("/dev/shm")
    if os.stat(other).st_dev == os.stat(dirs["upper"]).st_dev:
        pytest.skip("/dev/shm is on the same file system as tmp_path")
    with pytest.raises(ConfigError, match=r"upper dir `.*upper` and work dir `/dev/shm` are on different file"):
        OverlayMount(dirs["merged"], [dirs["base"]], dirs["upper"], other).mount()
    assert find_mount(dirs["merged"]) is None


def test_config_errors_before_any_syscall(dirs: dict[str, Path]) -> None:
    with pytest.raises(ConfigError, match="at least one lower"):
        OverlayMount(dirs["merged"], [], dirs["upper"], dirs["work"])
    with pytest.raises(ConfigError, match="give both or neither"):
        OverlayMount(dirs["merged"], [dirs["base"]], dirs["upper"])
    with pytest.raises(ConfigError, match="at least two lower"):
        OverlayMount(dirs["merged"], [dirs["base"]])
    with pytest.raises(ConfigError, match="sequence"):
        OverlayMount(dirs["merged"], str(dirs["base"]))  # type: ignore[arg-type]
    with pytest.raises(ConfigError, match="separate subtrees"):
        (dirs["upper"] / "w").mkdir()
        OverlayMount(dirs["merged"], [dirs["base"]], dirs["upper"], dirs["upper"] / "w").mount()
    with pytest.raises(ConfigError):
        OverlayOptions(xino="maybe")  # type: ignore[arg-type]


@pytest.mark.parametrize("api", ["classic", "new"])
def test_kernel_refusal_names_target_and_reason(dirs: dict[str, Path], api: str) -> None:
    bad = OverlayOptions(extra=(("no_such_option", "1"),))
    with pytest.raises(SyscallError) as info:
        overlay(dirs, options=bad, api=api).mount()
    assert str(info.value).startswith(f"mount `overlay` on `{dirs['merged']}`: Invalid argument")
    assert "no_such_option" in str(info.value)  # the kernel's own reason, from the fs context log
    assert find_mount(dirs["merged"]) is None


def test_options_escape_what_the_kernel_splits_at() -> None:
    ov = OverlayMount("/m", ["/l/x:/", "/l/a,b", "/l/b\\c"], "/u/up:1,\\", "/u/work")
    assert ov.options_string() == ("lowerdir=/l/x\\::/l/a\\,b:/l/b\\\\c,upperdir=/u/up\\:1\\,\\\\,workdir=/u/work")
    # lowerdir+ takes a path as it is; upperdir and workdir are unescaped by the kernel
    assert ov.fs_params()[1:4] == [("lowerdir+", "/l/x:"), ("lowerdir+", "/l/a,b"), ("lowerdir+", "/l/b\\c")]
    assert ("upperdir", "/u/up\\:1\\,\\\\") in ov.fs_params()
    with pytest.raises(ConfigError, match="NUL"):
        OverlayMount("/m", ["/l/a\0b"], "/u/u", "/u/w")


@pytest.mark.parametrize("api", ["classic", "new"])
def test_layer_names_with_colons_commas_and_backslashes_stay_one_layer(tmp_path: Path, api: str) -> None:
    if api == "new" and not has_lowerdir_append():
        pytest.skip("this kernel lacks lowerdir+ (Linux 6.8+)")
    names = ["x:y,z", "a:", "b\\c", "x", "a"]  # x and a: what a split at the colon would find
    for name in names:
        (tmp_path / name).mkdir()
        (tmp_path / name / f"in-{name.replace(chr(92), '_')}").write_text(name)
    upper, work, merged = tmp_path / "up:1,\\", tmp_path / "work", tmp_path / "merged"
    for d in (upper, work, merged):
        d.mkdir()
    lower = [tmp_path / "x:y,z", f"{tmp_path}/a:/", tmp_path / "b\\c"]
    ov = OverlayMount(merged, lower, upper, work, api=api)  # type: ignore[arg-type]
    with ov:
        assert sorted(os.listdir(merged)) == ["in-a:", "in-b_c", "in-x:y,z"]
        (merged / "new").write_text("up")
        assert (upper / "new").read_text() == "up"


def test_a_path_neither_interface_can_carry_is_a_config_error_naming_it(tmp_path: Path) -> None:
    short = [tmp_path / f"{i:03d}-{'s' * 150}" for i in range(20)]  # 20 x ~240 bytes: past mount(2)'s page
    long = tmp_path / ("l" * 200) / ("m" * 100)  # one path of more than 255 bytes: past fsconfig's
    for d in (*short, long, tmp_path / "u", tmp_path / "w", tmp_path / "m"):
        d.mkdir(parents=True)
    ov = OverlayMount(tmp_path / "m", [*short, long], tmp_path / "u", tmp_path / "w")
    with pytest.raises(ConfigError, match=f"overlay lower dir `{long}`: {len(str(long))} bytes, more than") as info:
        ov.mount()
    assert info.value.what == "lower dir" and "mount(2)" in str(info.value)
    with pytest.raises(ConfigError, match=f"`{long}`"):
        ov.mount_step()
    assert find_mount(tmp_path / "m") is None


# ---- deep stacks -----------------------------------------------------------------------


def _layers(root: Path, n: int) -> list[Path]:
    out = []
    for i in range(n):
        p = root / f"layer-with-a-reasonably-long-name-{i:04d}"
        p.mkdir(parents=True)
        (p / f"f{i}").write_text(str(i))
        (p / "shared").write_text(str(i))
        out.append(p)
    return out[::-1]  # top first: the highest number on top


def test_deep_stack_of_250_layers(tmp_path: Path) -> None:
    if not has_lowerdir_append():
        pytest.skip("this kernel lacks lowerdir+ (Linux 6.8+)")
    lower = _layers(tmp_path / "layers", 250)
    for name in ("upper", "work", "merged"):
        (tmp_path / name).mkdir()
    ov = OverlayMount(tmp_path / "merged", lower, tmp_path / "upper", tmp_path / "work")
    assert len(ov.options_string()) > 4095
    assert ov.choose_api() == "new"
    with pytest.raises(UnsupportedError, match="more than mount"):
        OverlayMount(tmp_path / "merged", lower, tmp_path / "upper", tmp_path / "work", api="classic").mount()
    with ov:
        names = os.listdir(tmp_path / "merged")
        assert len(names) == 251
        assert (tmp_path / "merged" / "shared").read_text() == "249"
        assert (tmp_path / "merged" / "f0").read_text() == "0"


# ---- copy-on-write ------------------------------------------------------------------------


def test_copy_on_write(dirs: dict[str, Path]) -> None:
    lower_before = {name: snapshot(dirs[name]) for name in ("app", "base")}
    with overlay(dirs) as ov:
        m = ov.target
        (m / "etc" / "hosts").write_text("10.0.0.1 db\n")  # modify a lower file
        (m / "new.txt").write_text("new\n")  # create
        (m / "etc" / "passwd").unlink()  # delete a lower file
        os.rename(m / "app" / "main.py", m / "app" / "run.py")  # rename a lower file
        os.chmod(m / "bin" / "sh", 0o755)  # chmod a lower file
        # replace a lower directory by a new one of the same name
        for child in (m / "data" / "d1").iterdir():
            child.unlink()
        (m / "data" / "d1").rmdir()
        (m / "data" / "d1").mkdir()
        (m / "data" / "d1" / "fresh").write_text("fresh")
        view = snapshot(m)

    assert {name: snapshot(dirs[name]) for name in ("app", "base")} == lower_before  # lower untouched

    up = dirs["upper"]
    entries = {str(p.relative_to(up)) for p in up.rglob("*")}
    assert entries == {
        "etc",
        "etc/hosts",
        "etc/passwd",
        "new.txt",
        "app",
        "app/main.py",
        "app/run.py",
        "bin",
        "bin/sh",
        "data",
        "data/d1",
        "data/d1/fresh",
    }
    assert (up / "etc" / "hosts").read_text() == "10.0.0.1 db\n"
    for whiteout in ("etc/passwd", "app/main.py"):
        st = os.lstat(up / whiteout)
        assert stat.S_ISCHR(st.st_mode) and st.st_rdev == 0, whiteout
    assert os.getxattr(up / "data" / "d1", OPAQUE_XATTR) == b"y"
    assert stat.S_IMODE(os.stat(up / "bin" / "sh").st_mode) == 0o755
    assert "etc/passwd" not in view and "app/run.py" in view and "app/main.py" not in view
    assert view["data/d1/fresh"][0] == stat.S_IFREG and "data/d1/f" not in view


def test_two_containers_of_one_image_are_isolated(tmp_path: Path) -> None:
    base = make_tree(tmp_path / "base", {"shared.txt": "orig", "d/x": "x"})
    app = make_tree(tmp_path / "app", {"app.txt": "app"})
    mounts = []
    for name in ("c1", "c2"):
        for sub in ("upper", "work", "merged"):
            (tmp_path / name / sub).mkdir(parents=True)
        mounts.append(
            OverlayMount(
                tmp_path / name / "merged", [app, base], tmp_path / name / "upper", tmp_path / name / "work"
            ).mount()
        )
    try:
        m1, m2 = (ov.target for ov in mounts)
        (m1 / "shared.txt").write_text("changed by c1")
        (m1 / "only-c1").write_text("1")
        (m2 / "d" / "x").unlink()
        assert (m2 / "shared.txt").read_text() == "orig"
        assert not (m2 / "only-c1").exists()
        assert (m1 / "d" / "x").exists()
        assert (base / "shared.txt").read_text() == "orig" and (base / "d" / "x").exists()
    finally:
        for ov in mounts:
            ov.unmount()


def test_too_deep_a_stack_says_the_kernel_limit(tmp_path: Path) -> None:
    if not has_lowerdir_append():
        pytest.skip("this kernel lacks lowerdir+ (Linux 6.8+)")
    lower = _layers(tmp_path / "layers", 501)
    for name in ("upper", "work", "merged"):
        (tmp_path / name).mkdir()
    with pytest.raises(SyscallError, match=r"Invalid argument \(too many lower directories, limit is 500\)"):
        OverlayMount(tmp_path / "merged", lower, tmp_path / "upper", tmp_path / "work").mount()
    assert find_mount(tmp_path / "merged") is None
