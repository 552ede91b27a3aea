"""Compiled seccomp programs kept by content, so that a profile is compiled once per host.

An engine hands the runtime the same profile for every container (podman's
default is 400 rules): parsing and compiling it, and importing the parser,
the compiler and the system call tables to do so, is most of what a
container's ``create`` spends in Python.  A :class:`ProgramCache` keeps each
compiled program in a file named by a digest of everything the program
depends on: the profile's JSON, this host's architecture and kernel release
(rules may name a minimum kernel), and nsprim's version and the compiler's
source files (so that a changed checkout compiles again).

The directory is the caller's (``nsprim-runtime`` keeps it in its state
root, ``<root>/@seccomp``: no container id has an ``@``).  It is used only
when it belongs to this user and nobody else may write to it; a file that
is not a program is a miss, and the program is compiled again.
"""

from __future__ import annotations

import contextlib
import os
import stat
import struct

from ..._paths import StrPath
from ..._version import __version__
from .program import Program

__all__ = ["ProgramCache"]

_MAGIC = b"nsprim seccomp 1\n"
_FLAGS = struct.Struct("<I")


class ProgramCache:
    """Compiled programs (and their filter flags) in *directory*, by the digest of their profile."""

    def __init__(self, directory: StrPath) -> None:
        self.directory = os.fspath(directory)

    def key(self, profile: object) -> str:
        """The name of the program compiled from *profile* on this host: a JSON value, or a
        string that names a profile of nsprim's own (its source is in the compiler's)."""
        text = profile if isinstance(profile, str) else _canonical_json(profile)
        host = os.uname()
        material = "\0".join((__version__, _compiler_stamp(), host.machine, host.release, text))
        return _sha256(material.encode())

    def get(self, key: str) -> tuple[Program, int] | None:
        """The program and flags stored under *key*, or ``None``."""
        if not self._trusted():
            return None
        try:
            fd = os.open(os.path.join(self.directory, key), os.O_RDONLY | os.O_CLOEXEC | os.O_NOFOLLOW)
        except OSError:
            return None
        try:
            st = os.fstat(fd)
            if not stat.S_ISREG(st.st_mode) or st.st_uid != os.geteuid() or st.st_size > 1 << 20:
                return None
            data = os.read(fd, st.st_size + 1)
        finally:
            os.close(fd)
        head = len(_MAGIC) + _FLAGS.size
        if not data.startswith(_MAGIC) or len(data) <= head or (len(data) - head) % 8:
            return None
        (flags,) = _FLAGS.unpack_from(data, len(_MAGIC))
        from ...errors import BPFError

        try:
            return Program.from_bytes(data[head:]), flags
        except BPFError:
            return None

    def put(self, key: str, program: Program, flags: int) -> None:
        """Store *program* under *key* (a failure to write is not an error: the next one compiles again)."""
        try:
            os.mkdir(self.directory, 0o700)
        except FileExistsError:
            pass
        except OSError:
            return
        if not self._trusted():
            return
        tmp = os.path.join(self.directory, f".{key}.{os.getpid()}")
        try:
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC | os.O_NOFOLLOW, 0o600)
            try:
                view = memoryview(_MAGIC + _FLAGS.pack(flags) + program.to_bytes())
                while view:
                    view = view[os.write(fd, view) :]
            finally:
                os.close(fd)
            os.rename(tmp, os.path.join(self.directory, key))
        except OSError:
            with contextlib.suppress(OSError):
                os.unlink(tmp)

    def _trusted(self) -> bool:
        try:
            st = os.lstat(self.directory)
        except OSError:
            return False
        return stat.S_ISDIR(st.st_mode) and st.st_uid == os.geteuid() and not st.st_mode & 0o022


#: The modules a compiled program depends on, besides its profile.
_COMPILER = ("arch", "bpf", "default", "interp", "parse", "profile", "program")


def _sha256(data: bytes) -> str:
    # The interpreter's own SHA-256 where it has one: hashlib loads OpenSSL's library (~2.5 ms).
    try:
        from _sha2 import sha256  # type: ignore[import-not-found]  # Python 3.12 and later
    except ImportError:
        try:
            from _sha256 import sha256  # type: ignore[import-not-found]
        except ImportError:
            from hashlib import sha256
    digest: str = sha256(data).hexdigest()
    return digest


def _canonical_json(value: object) -> str:
    import json  # only here: nsprim's own profiles are named by a string

    return json.dumps(value, sort_keys=True, separators=(",", ":"))


def _compiler_stamp() -> str:
    """The size and modification time of each of the compiler's source files, this module's siblings."""
    here = os.path.dirname(os.path.abspath(__file__))
    stamps = []
    for name in _COMPILER:
        try:
            st = os.stat(os.path.join(here, f"{name}.py"))
            stamps.append(f"{name}:{st.st_size}:{st.st_mtime_ns}")
        except OSError:
            stamps.append(f"{name}:-")
    return ",".join(stamps)
