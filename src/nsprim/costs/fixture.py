"""The small image the measured containers run: a static busybox, and a file to read.

Every measured container gets the same root, made once per run in a scratch
directory on a disk file system (not tmpfs: its page cache must be the kind
that containers of one image share, and that can be dropped before measuring).
"""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from .._dataclass import dataclass
from ..container import Container
from ..errors import UnsupportedError
from ..fs.mountinfo import mountinfo

__all__ = ["ScratchImage", "scratch_image", "static_busybox", "fstype_of", "has_overlay"]

#: The applets the measured payloads use.
APPLETS = ("true", "sh", "sleep", "cat")
#: Where the shared file is, inside the image.
DATA = "/data/blob"


@dataclass(frozen=True)
class ScratchImage:
    """A one-layer image: *root* has ``/bin/{true,sh,sleep,cat}`` and the file :data:`DATA` of *data_bytes*;
    *fstype* is the file system it is on."""

    root: Path
    data_bytes: int
    fstype: str = ""

    def container(self, *argv: str) -> Container:
        """A default container of this image running *argv*: the image as an overlay's lower layer
        (a bind of the root where the kernel has no overlay file system: :func:`has_overlay`)."""
        box = Container(list(argv))
        return box.image([self.root]) if has_overlay() else box.rootfs(self.root)

    @property
    def in_memory(self) -> bool:
        """Whether its files are memory already (tmpfs): their pages are charged when written, not read."""
        return self.fstype in ("tmpfs", "ramfs")

    @property
    def data(self) -> Path:
        """The shared file, on the host."""
        return self.root / DATA.lstrip("/")


def static_busybox() -> Path:
    """A statically linked busybox on this host (one the image can hold alone)."""
    for candidate in (shutil.which("busybox"), "/bin/busybox", "/usr/bin/busybox"):
        if candidate and os.path.exists(candidate) and _is_static(candidate):
            return Path(candidate)
    raise UnsupportedError(
        "no statically linked busybox found (Debian: apt-get install busybox-static)", feature="busybox"
    )


def _is_static(path: str) -> bool:
    """Whether the ELF at *path* has no program interpreter."""
    try:
        with open(path, "rb") as f:
            head = f.read(4096)
    except OSError:
        return False
    return head[:4] == b"\x7fELF" and b"/ld-linux" not in head and b"ld-musl" not in head


def has_overlay() -> bool:
    """Whether this kernel has the overlay file system (``/proc/filesystems``: loaded or built in)."""
    try:
        with open("/proc/filesystems") as f:
            return any(line.split()[-1:] == ["overlay"] for line in f)
    except OSError:
        return False


def fstype_of(path: Path) -> str:
    """The type of the file system *path* is on (the innermost mount above it)."""
    target = os.path.realpath(path)
    found = ""
    best = -1
    for m in mountinfo():
        mp = m.mount_point
        inside = target == mp or target.startswith(mp.rstrip("/") + "/")
        if inside and len(mp) >= best:
            found, best = m.fstype, len(mp)
    return found


def _scratch_dir(base: str | None) -> Path:
    """A new directory under *base*, else ``/var/tmp`` (a disk, usually), else the temporary directory."""
    candidates = [base] if base else ["/var/tmp", tempfile.gettempdir()]
    error: OSError | None = None
    for where in candidates:
        try:
            return Path(tempfile.mkdtemp(prefix="nsprim-cost-", dir=where))
        except OSError as exc:  # read-only (a VM's root), missing
            error = exc
    assert error is not None
    raise error


@contextmanager
def scratch_image(data_bytes: int, *, base: str | None = None) -> Iterator[ScratchImage]:
    """Make a :class:`ScratchImage` in a new directory under *base* (default: ``/var/tmp``, else the temporary
    directory); remove it after."""
    busybox = static_busybox()
    top = _scratch_dir(base)
    try:
        root = top / "root"
        for d in ("bin", "proc", "dev", "sys", "tmp", "etc", "root", "data"):
            (root / d).mkdir(parents=True)
        shutil.copy2(busybox, root / "bin/busybox")
        for applet in APPLETS:
            (root / "bin" / applet).symlink_to("busybox")
        (root / "etc/passwd").write_text("root:x:0:0:root:/root:/bin/sh\n")
        (root / "etc/group").write_text("root:x:0:\n")
        image = ScratchImage(root, data_bytes, fstype_of(root))
        chunk = os.urandom(1 << 16)
        with open(image.data, "wb") as f:
            for _ in range(data_bytes // len(chunk)):
                f.write(chunk)
            f.write(chunk[: data_bytes % len(chunk)])
            f.flush()
            os.fsync(f.fileno())
        yield image
    finally:
        shutil.rmtree(top, ignore_errors=True)
