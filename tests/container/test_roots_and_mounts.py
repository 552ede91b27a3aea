"""Container roots and mounts: read-only sources stay untouched, overlay layers with any name,
tmpfs sizes the kernel would misread, and errors that say which part failed."""

from __future__ import annotations

import pytest

from nsprim.container import Container
from nsprim.errors import ConfigError
from nsprim.mount import parse_mountinfo
from nsprim.rootfs import Tmpfs, tmpfs_size_max

from ..conftest import requires_root


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
