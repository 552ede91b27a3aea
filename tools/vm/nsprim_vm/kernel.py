"""Find the host's Debian kernel and extract the uncompressed ELF ``vmlinux`` from its bzImage.

QEMU boots an uncompressed ELF kernel directly through its PVH entry point, which under TCG saves the ~5 s the
kernel's own decompressor and the firmware would take.
"""

from __future__ import annotations

import hashlib
import lzma
import os
import re
import shutil
import struct
import subprocess
import zlib
from dataclasses import dataclass
from pathlib import Path

from . import VMError

BOOT_DIR = Path("/boot")
MODULES_DIR = Path("/lib/modules")

# Offsets in the x86 boot protocol's setup header (Documentation/arch/x86/boot.rst).
_SETUP_SECTS = 0x1F1
_HDR_MAGIC = 0x202
_PAYLOAD_OFFSET = 0x248
_PAYLOAD_LENGTH = 0x24C

_MAGICS: tuple[tuple[bytes, str], ...] = (
    (b"\xfd7zXZ\x00", "xz"),
    (b"\x1f\x8b", "gzip"),
    (b"\x28\xb5\x2f\xfd", "zstd"),
)


@dataclass(frozen=True)
class Kernel:
    """A bootable kernel image of the host, with its modules directory."""

    release: str
    image: Path
    modules: Path


def _version_key(release: str) -> list[int | str]:
    """Sort key for kernel release strings such as ``6.1.0-57-amd64`` (numbers compare numerically)."""
    return [int(part) if part.isdigit() else part for part in re.split(r"(\d+)", release)]


def find_kernel(release: str | None = None) -> Kernel:
    """Return the newest ``/boot/vmlinuz-*`` that has a matching ``/lib/modules`` tree (or the given release)."""
    candidates = []
    for image in BOOT_DIR.glob("vmlinuz-*"):
        rel = image.name.removeprefix("vmlinuz-")
        if (MODULES_DIR / rel / "modules.dep").is_file() and (release is None or rel == release):
            candidates.append(rel)
    if not candidates:
        wanted = f" for release {release}" if release else ""
        raise VMError(
            f"cannot find a kernel image{wanted} in {BOOT_DIR} with modules in {MODULES_DIR}: install linux-image-amd64"
        )
    rel = max(candidates, key=_version_key)
    return Kernel(release=rel, image=BOOT_DIR / f"vmlinuz-{rel}", modules=MODULES_DIR / rel)


def file_digest(path: Path) -> str:
    """Return the hex SHA-256 of a file's content."""
    digest = hashlib.sha256()
    with path.open("rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _payload(bzimage: bytes) -> tuple[bytes, str]:
    """Return the compressed payload of a bzImage and its format, from the setup header or by scanning magics."""
    if len(bzimage) > _PAYLOAD_LENGTH + 4 and bzimage[_HDR_MAGIC : _HDR_MAGIC + 4] == b"HdrS":
        setup_sects = bzimage[_SETUP_SECTS] or 4
        start = (setup_sects + 1) * 512
        offset, length = struct.unpack_from("<II", bzimage, _PAYLOAD_OFFSET)
        blob = bzimage[start + offset : start + offset + length]
        for magic, fmt in _MAGICS:
            if blob.startswith(magic):
                return blob, fmt
    # Fallback: the first magic that is followed by a payload we can decompress (like scripts/extract-vmlinux).
    for magic, fmt in _MAGICS:
        pos = bzimage.find(magic)
        if pos >= 0:
            return bzimage[pos:], fmt
    raise VMError("no xz, gzip or zstd payload found in the kernel image")


def _decompress(blob: bytes, fmt: str) -> bytes:
    """Decompress one stream, ignoring trailing bytes after it."""
    if fmt == "xz":
        return lzma.LZMADecompressor(format=lzma.FORMAT_XZ).decompress(blob)
    if fmt == "gzip":
        return zlib.decompressobj(wbits=31).decompress(blob)
    zstd = shutil.which("zstd")
    if zstd is None:
        raise VMError("the kernel is zstd-compressed: install the zstd package")
    out = subprocess.run([zstd, "-dc"], input=blob, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, check=False)
    if not out.stdout:
        raise VMError("zstd could not decompress the kernel payload")
    return out.stdout


def extract_vmlinux(image: Path) -> bytes:
    """Return the uncompressed ELF vmlinux contained in a bzImage."""
    try:
        blob, fmt = _payload(image.read_bytes())
        elf = _decompress(blob, fmt)
    except (OSError, lzma.LZMAError, zlib.error) as exc:
        raise VMError(f"cannot extract vmlinux from {image}: {exc}") from exc
    if not elf.startswith(b"\x7fELF"):
        raise VMError(f"the payload of {image} ({fmt}) is not an ELF file")
    return elf


def write_atomically(path: Path, data: bytes) -> None:
    """Write ``data`` to ``path`` through a temporary file and a rename (safe against concurrent builders)."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        tmp.write_bytes(data)
        tmp.replace(path)
    finally:
        tmp.unlink(missing_ok=True)


def prune(cache: Path, prefix: str, keep: Path) -> None:
    """Remove older cache entries named ``prefix*`` (QEMU reads its images at start, so running VMs do not mind)."""
    for old in cache.glob(f"{prefix}*"):
        if old != keep and old.is_file():
            old.unlink(missing_ok=True)


def cached_vmlinux(kernel: Kernel, cache: Path) -> tuple[Path, bool]:
    """Return the cached vmlinux for ``kernel`` (building it if needed) and whether it was built now."""
    key = file_digest(kernel.image)[:12]
    path = cache / f"vmlinux-{kernel.release}-{key}"
    if path.is_file():
        return path, False
    cache.mkdir(parents=True, exist_ok=True)
    write_atomically(path, extract_vmlinux(kernel.image))
    prune(cache, f"vmlinux-{kernel.release}-", path)
    return path, True
