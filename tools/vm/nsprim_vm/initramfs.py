"""Build the guest's initramfs: busybox-static, the 9p/virtio modules of the kernel and the ``/init`` script.

The archive is an uncompressed cpio "newc" archive written in Python (no root needed for ``/dev/console``), cached
under a name keyed by the kernel release and a hash of everything that goes into it.
"""

from __future__ import annotations

import hashlib
import lzma
import shutil
import stat
import subprocess
from pathlib import Path

from . import VMError
from .kernel import Kernel, prune, write_atomically

INIT_SCRIPT = Path(__file__).with_name("init.sh")
BUSYBOX = Path("/bin/busybox")
# Modules needed to reach the host over virtio-9p; their dependencies come from modprobe.
MODULES = ("virtio_pci", "9pnet_virtio", "9p")
# Applets the /init script calls by name (busybox "sh" runs the script).
APPLETS = (
    "base64",
    "cat",
    "chroot",
    "dmesg",
    "echo",
    "insmod",
    "mkdir",
    "mount",
    "poweroff",
    "sh",
    "sleep",
    "sync",
    "tail",
)
FORMAT_VERSION = "1"


def module_files(kernel: Kernel) -> list[Path]:
    """Return the module files to load for 9p over virtio-pci, dependencies first, without duplicates."""
    modprobe = shutil.which("modprobe") or "/sbin/modprobe"
    try:
        out = subprocess.run(
            [modprobe, "-a", "-S", kernel.release, "--show-depends", *MODULES],
            capture_output=True,
            text=True,
            check=True,
        )
    except FileNotFoundError as exc:
        raise VMError("modprobe not found: install kmod") from exc
    except subprocess.CalledProcessError as exc:
        wanted = " ".join(MODULES)
        raise VMError(f"modprobe cannot resolve {wanted} for {kernel.release}: {exc.stderr.strip()}") from exc
    files: list[Path] = []
    for line in out.stdout.splitlines():
        words = line.split()
        if len(words) >= 2 and words[0] == "insmod" and Path(words[1]) not in files:
            files.append(Path(words[1]))  # "builtin X" lines need nothing
    return files


def _module_bytes(path: Path) -> bytes:
    """Return an uncompressed module (``.ko``, ``.ko.xz``, ``.ko.gz`` or ``.ko.zst``)."""
    data = path.read_bytes()
    if path.suffix == ".xz":
        return lzma.decompress(data)
    if path.suffix == ".gz":
        import gzip

        return gzip.decompress(data)
    if path.suffix == ".zst":
        zstd = shutil.which("zstd")
        if zstd is None:
            raise VMError(f"{path} is zstd-compressed: install the zstd package")
        return subprocess.run([zstd, "-dc", str(path)], capture_output=True, check=True).stdout
    return data


def _module_name(path: Path) -> str:
    """Return ``foo.ko`` for ``.../foo.ko[.xz]``."""
    name = path.name
    return name[: name.index(".ko") + 3]


class Cpio:
    """A minimal writer of cpio "newc" archives (the format the kernel unpacks into the initramfs)."""

    def __init__(self) -> None:
        """Start an empty archive."""
        self._parts: list[bytes] = []
        self._ino = 1

    def _entry(self, name: str, mode: int, data: bytes = b"", rdev: tuple[int, int] = (0, 0)) -> None:
        """Append one entry (``name`` without a leading slash)."""
        encoded = name.encode() + b"\0"
        fields = (self._ino, mode, 0, 0, 1, 0, len(data), 0, 0, rdev[0], rdev[1], len(encoded), 0)
        header = b"070701" + b"".join(b"%08X" % f for f in fields)
        self._ino += 1
        self._parts += [header, encoded, b"\0" * (-(len(header) + len(encoded)) % 4), data, b"\0" * (-len(data) % 4)]

    def directory(self, name: str) -> None:
        """Add a directory (mode 0755)."""
        self._entry(name, stat.S_IFDIR | 0o755)

    def file(self, name: str, data: bytes, mode: int = 0o644) -> None:
        """Add a regular file."""
        self._entry(name, stat.S_IFREG | mode, data)

    def symlink(self, name: str, target: str) -> None:
        """Add a symbolic link."""
        self._entry(name, stat.S_IFLNK | 0o777, target.encode())

    def chardev(self, name: str, major: int, minor: int, mode: int = 0o600) -> None:
        """Add a character device node."""
        self._entry(name, stat.S_IFCHR | mode, rdev=(major, minor))

    def finish(self) -> bytes:
        """Return the archive bytes, with the trailer."""
        self._entry("TRAILER!!!", 0)
        return b"".join(self._parts)


def build(kernel: Kernel, modules: list[Path]) -> bytes:
    """Return the initramfs archive for ``kernel``."""
    if not BUSYBOX.is_file():
        raise VMError(f"{BUSYBOX} not found: install busybox-static")
    archive = Cpio()
    for directory in ("bin", "dev", "proc", "sys", "newroot", "modules"):
        archive.directory(directory)
    archive.chardev("dev/console", 5, 1)
    archive.chardev("dev/null", 1, 3, 0o666)
    archive.file("bin/busybox", BUSYBOX.read_bytes(), 0o755)
    for applet in APPLETS:
        archive.symlink(f"bin/{applet}", "busybox")
    names = [_module_name(path) for path in modules]
    for path, name in zip(modules, names, strict=True):
        archive.file(f"modules/{name}", _module_bytes(path))
    archive.file("modules/order", "".join(f"{name}\n" for name in names).encode())
    archive.file("init", INIT_SCRIPT.read_bytes(), 0o755)
    return archive.finish()


def cache_key(kernel: Kernel, modules: list[Path]) -> str:
    """Hash everything that goes into the initramfs, so that any change rebuilds it."""
    digest = hashlib.sha256(FORMAT_VERSION.encode())
    digest.update(INIT_SCRIPT.read_bytes())
    digest.update(Path(__file__).read_bytes())
    for path in (BUSYBOX, *modules):
        st = path.stat()
        digest.update(f"{path}\0{st.st_size}\0{st.st_mtime_ns}\0".encode())
    return digest.hexdigest()[:12]


def cached_initramfs(kernel: Kernel, cache: Path) -> tuple[Path, bool]:
    """Return the cached initramfs for ``kernel`` (building it if needed) and whether it was built now."""
    modules = module_files(kernel)
    path = cache / f"initramfs-{kernel.release}-{cache_key(kernel, modules)}.cpio"
    if path.is_file():
        return path, False
    cache.mkdir(parents=True, exist_ok=True)
    write_atomically(path, build(kernel, modules))
    prune(cache, f"initramfs-{kernel.release}-", path)
    return path, True
