"""cffi build script (API mode, out of line) for nsprim's native core.

setuptools runs this through ``cffi_modules`` in setup.py; it is also runnable
by hand (``python _native/build_ffi.py``) to compile in place for development.
The C sources and headers here are build inputs only: they are not installed.
"""

from __future__ import annotations

import re
import sys
from pathlib import Path

from cffi import FFI

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent


def _version() -> str:
    text = (ROOT / "src" / "nsprim" / "_version.py").read_text()
    match = re.search(r'__version__\s*=\s*"([^"]+)"', text)
    if not match:
        raise RuntimeError("cannot find __version__ in src/nsprim/_version.py")
    return match.group(1)


def _strip_comments(text: str) -> str:
    return re.sub(r"/\*.*?\*/", "", text, flags=re.S)


SOURCES = [
    "syscalls.c", "spawn.c", "child.c", "rootfs.c", "rootfs_mount.c", "copy_up.c", "security.c", "init.c", "netif.c", "terminal.c",
    "wait_start.c", "netns.c", "watcher.c", "monitor.c", "monitor_image.c",
]  # fmt: skip

ffibuilder = FFI()
ffibuilder.cdef(_strip_comments((HERE / "nsprim.h").read_text()))
ffibuilder.cdef(_strip_comments((HERE / "constants.cdef").read_text()))
ffibuilder.set_source(
    "nsprim._nsprim_native",
    '#include "compat.h"\n',
    sources=[str((HERE / name).relative_to(ROOT)) if Path.cwd() == ROOT else str(HERE / name) for name in SOURCES],
    include_dirs=[str(HERE)],
    define_macros=[("NSPRIM_VERSION", f'"{_version()}"')],
    # No variable-length arrays: child code may run on a vfork child's small stack, in the caller's frame.
    # A switch on an enum without a default must name every value (run_step's on the step kinds).
    extra_compile_args=[
        "-std=gnu11", "-O2", "-Wall", "-Wextra", "-Wno-unused-parameter", "-fno-strict-aliasing", "-Werror=vla",
        "-Werror=switch",
    ],  # fmt: skip
    # The file also runs as a program, the detached containers' monitor (monitor_image.c).
    extra_link_args=["-Wl,-e,nsp_monitor_entry"],
)

if __name__ == "__main__":
    if not sys.platform.startswith("linux"):
        raise SystemExit("nsprim's native core builds on Linux only")
    ffibuilder.compile(tmpdir=str(ROOT / "build" / "cffi"), verbose=True)
