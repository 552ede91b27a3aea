"""``tmpcopyup``: a tmpfs mount filled with what the directory it covers held (as podman's
``--read-only`` asks for /tmp, /var/tmp and /run), the image's directory left as it was."""

from __future__ import annotations

import os
from pathlib import Path

from ..conftest import requires_root
from .bundles import make_bundle
from .conftest import Runtime, unique

pytestmark = requires_root

SHOW = (
    "cd /data && stat -c '%A %u %g' a/b/file; cat a/b/file; readlink link; test -p fifo && echo fifo; "
    "stat -c '%A %u %g' a; echo new > new && cat new; grep ' /data ' /proc/self/mounts | cut -d' ' -f3"
)


def _image_dir(rootfs: Path) -> None:
    (rootfs / "data/a/b").mkdir(parents=True)
    (rootfs / "data/a/b/file").write_text("from the image\n")
    os.chown(rootfs / "data/a/b/file", 1000, 1001)
    (rootfs / "data/a/b/file").chmod(0o604)
    (rootfs / "data/a").chmod(0o705)
    os.chown(rootfs / "data/a", 7, 8)
    os.symlink("/etc/shadow-of-the-host", rootfs / "data/link")
    os.mkfifo(rootfs / "data/fifo")


def test_a_tmpfs_is_filled_with_the_directory_it_covers(runtime: Runtime, tmp_path: Path) -> None:
    cid = unique("cu")
    bundle = make_bundle(
        tmp_path / "b",
        cid,
        "sh",
        "-c",
        SHOW,
        mounts=[
            *make_bundle_mounts(),
            {"destination": "/data", "type": "tmpfs", "source": "tmpfs", "options": ["nosuid", "tmpcopyup"]},
        ],
    )
    _image_dir(bundle / "rootfs")
    r = runtime("run", "--bundle", str(bundle), cid)
    lines = r.stdout.splitlines()
    assert r.returncode == 0, r.stderr
    assert lines == [
        "-rw----r-- 1000 1001",
        "from the image",
        "/etc/shadow-of-the-host",
        "fifo",
        "drwx---r-x 7 8",
        "new",
        "tmpfs",
    ]
    assert not (bundle / "rootfs/data/new").exists()  # the image's directory is untouched


def test_a_read_only_copy_up_is_filled_then_read_only(runtime: Runtime, tmp_path: Path) -> None:
    cid = unique("cu")
    script = "cat /data/a/b/file; touch /data/x 2>/dev/null || echo read-only"
    mount = {"destination": "/data", "type": "tmpfs", "source": "tmpfs", "options": ["ro", "tmpcopyup"]}
    bundle = make_bundle(tmp_path / "b", cid, "sh", "-c", script, mounts=[*make_bundle_mounts(), mount])
    _image_dir(bundle / "rootfs")
    r = runtime("run", "--bundle", str(bundle), cid)
    assert (r.returncode, r.stdout) == (0, "from the image\nread-only\n"), r.stderr


def test_copy_up_is_for_tmpfs_only(runtime: Runtime, tmp_path: Path) -> None:
    cid = unique("cu")
    mount = {"destination": "/data", "type": "proc", "source": "proc", "options": ["tmpcopyup"]}
    bundle = make_bundle(tmp_path / "b", cid, "true", mounts=[*make_bundle_mounts(), mount])
    message = runtime.fails("run", "--bundle", str(bundle), cid)
    assert message.endswith('.options: "tmpcopyup" is for tmpfs, not proc')
    assert not runtime.store.exists(cid)


def make_bundle_mounts() -> list[dict[str, object]]:
    """The default spec's mounts (``mounts=`` replaces them all)."""
    from .bundles import config

    mounts = config("x")["mounts"]
    assert isinstance(mounts, list)
    return mounts
