"""Layer blobs uncompressed as they are read: :func:`decompressed` (none, gzip or zstd).

gzip is the standard library's.  zstd has three decompressors, the first one
there taken: Python 3.14's :mod:`compression.zstd`, the ``zstandard`` package
(``pip install nsprim[zstd]``), or the ``zstd`` command (Debian package
``zstd``), fed through a pipe.  Each reads every frame of the stream (a
layer may be several, as zstd:chunked writes them), keeps zstd's default
limit on the memory a frame may ask for, and holds little of what it
uncompressed at a time (a small piece of zstd can stand for a great deal).
A stream that is not what its compression says (not zstd, empty, cut off
inside a frame) is a :class:`~nsprim.errors.CorruptLayerError` naming the
blob and the decompressor.
"""

from __future__ import annotations

import contextlib
import gzip
import importlib
import io
import shutil
import subprocess
import threading
from collections.abc import Callable, Iterator
from typing import BinaryIO, Protocol, cast

from ..errors import ConfigError, CorruptLayerError, ImageError

__all__ = ["ZSTD_DECOMPRESSORS", "zstd_decompressors", "decompressed"]

#: The zstd decompressors, in the order they are looked for.
ZSTD_DECOMPRESSORS = ("compression.zstd", "zstandard", "zstd")
_CHUNK = 1 << 20
_PIECE = 2048  # at most about 64 MiB uncompressed at once


def zstd_decompressors() -> list[str]:
    """The zstd decompressors this host has, in the order of :data:`ZSTD_DECOMPRESSORS`."""
    found = []
    for name in ZSTD_DECOMPRESSORS[:2]:
        try:
            importlib.import_module(name)
        except ImportError:
            continue
        found.append(name)
    if shutil.which("zstd"):
        found.append("zstd")
    return found


@contextlib.contextmanager
def decompressed(stream: BinaryIO, compression: str, what: str, *, zstd: str | None = None) -> Iterator[BinaryIO]:
    """*stream* uncompressed as *compression* (``""``, ``"gzip"``, ``"zstd"``) says; *what* names the
    blob in errors.  *zstd* picks one of :data:`ZSTD_DECOMPRESSORS` (default: the first there).

    Read it to its end inside the block: at the block's end a decompressor that
    failed is a :class:`~nsprim.errors.CorruptLayerError`.
    """
    if compression == "":
        yield stream
    elif compression == "gzip":
        with gzip.GzipFile(fileobj=stream, mode="rb") as plain:
            yield cast(BinaryIO, plain)
    elif compression == "zstd":
        with _zstd(stream, what, zstd) as plain:
            yield plain
    else:
        raise ImageError(f"{what}: no decompressor for `{compression}`", blob=None)


@contextlib.contextmanager
def _zstd(stream: BinaryIO, what: str, choice: str | None) -> Iterator[BinaryIO]:
    if choice is not None and choice not in ZSTD_DECOMPRESSORS:
        raise ConfigError(f"zstd decompressor `{choice}`: not one of {', '.join(ZSTD_DECOMPRESSORS)}", what="zstd")
    available = zstd_decompressors()
    if choice is None:
        if not available:
            raise ImageError(f"{what}: a zstd layer, and no zstd decompressor here (Python 3.14's compression.zstd, "
                             "the `zstandard` package: pip install nsprim[zstd], or the `zstd` command)",
                             blob=None)  # fmt: skip
        choice = available[0]
    elif choice not in available:
        raise ImageError(f"{what}: the zstd decompressor `{choice}` is not installed", blob=None)
    try:
        if choice == "zstd":
            with _zstd_command(stream, what) as plain:
                yield plain
            return
        module = importlib.import_module(choice)
        if choice == "zstandard":
            context = module.ZstdDecompressor()
            new: Callable[[], _Decompressor] = context.decompressobj
        else:
            new = module.ZstdDecompressor
        yield cast(BinaryIO, _Frames(stream, new, what, choice))
    except (CorruptLayerError, ImageError):
        raise
    except Exception as exc:
        if type(exc).__module__.partition(".")[0] not in ("zstandard", "compression", "_zstd"):
            raise
        raise CorruptLayerError(f"{what}: not a zstd stream ({choice}: {exc})", layer=what) from None


class _Decompressor(Protocol):
    """One frame's decompressor, as both ``zstandard`` and ``compression.zstd`` have it."""

    @property
    def eof(self) -> bool: ...

    @property
    def unused_data(self) -> bytes: ...

    def decompress(self, data: bytes, /) -> bytes: ...


class _Frames(io.RawIOBase):
    """The frames of a zstd stream, one after another, uncompressed.

    The input goes in small pieces: a piece of zstd can stand for thousands of
    times its size, and what one piece gives is held in memory until read.  A
    stream that is empty, or that ends inside a frame, is refused (a truncated
    frame gives no error of its own).
    """

    def __init__(self, stream: BinaryIO, new: Callable[[], _Decompressor], what: str, name: str) -> None:
        super().__init__()
        self._stream, self._new, self._what, self._name = stream, new, what, name
        self._frame: _Decompressor | None = None
        self._pending = b""
        self._out = bytearray()
        self._frames = 0
        self._ended = False

    def readable(self) -> bool:
        return True

    def _refuse(self, why: str) -> CorruptLayerError:
        return CorruptLayerError(f"{self._what}: not a zstd stream ({self._name}: {why})", layer=self._what)

    def read(self, n: int = -1) -> bytes:
        while (n < 0 or len(self._out) < n) and not self._ended:
            data = self._pending or self._stream.read(_PIECE)
            self._pending = b""
            if not data:
                if self._frame is not None:
                    raise self._refuse(f"it ends inside frame {self._frames + 1}")
                if not self._frames:
                    raise self._refuse("empty")
                self._ended = True
                break
            if self._frame is None:
                self._frame = self._new()
            self._out += self._frame.decompress(data)
            if self._frame.eof:
                self._pending, self._frame = self._frame.unused_data, None
                self._frames += 1
        size = len(self._out) if n < 0 else min(n, len(self._out))
        chunk = bytes(self._out[:size])
        del self._out[:size]
        return chunk


class _Feeder(threading.Thread):
    """Copies a blob into the ``zstd`` command's standard input."""

    def __init__(self, stream: BinaryIO, process: subprocess.Popen[bytes]) -> None:
        super().__init__(name="nsprim-zstd-feed", daemon=True)
        self.stream, self.process = stream, process
        self.error: BaseException | None = None

    def run(self) -> None:
        sink = self.process.stdin
        assert sink is not None
        try:
            while chunk := self.stream.read(_CHUNK):
                sink.write(chunk)
        except BrokenPipeError:
            pass  # zstd stopped reading: its own error says why
        except BaseException as exc:  # the blob's own error (its digest), raised by the reader
            self.error = exc
        finally:
            with contextlib.suppress(BrokenPipeError):
                sink.close()


@contextlib.contextmanager
def _zstd_command(stream: BinaryIO, what: str) -> Iterator[BinaryIO]:
    command = shutil.which("zstd") or "zstd"
    process = subprocess.Popen([command, "-d", "-c", "-q"], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                               stderr=subprocess.PIPE)  # fmt: skip
    feeder = _Feeder(stream, process)
    feeder.start()
    assert process.stdout is not None and process.stderr is not None
    failed = True
    try:
        yield cast(BinaryIO, process.stdout)
        failed = False
    finally:
        process.stdout.close()
        if failed:
            process.kill()
        feeder.join()
        errors = process.stderr.read().decode(errors="replace").strip()
        process.stderr.close()
        code = process.wait()
    if feeder.error is not None:
        raise feeder.error
    if code != 0:
        reason = errors.splitlines()[-1] if errors else f"exit status {code}"
        raise CorruptLayerError(f"{what}: not a zstd stream (zstd: {reason})", layer=what)
