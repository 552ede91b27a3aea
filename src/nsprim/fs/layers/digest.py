"""Content digests of layers: ``sha256:<hex>`` of a layer's uncompressed tar form.

That is the OCI *diff id* of a layer (image-spec ``config.md``), so a layer
made here and one pulled from a registry agree on their name when their tars
are byte-for-byte equal.
"""

from __future__ import annotations

import hashlib
import re
from typing import IO, NewType

from ...errors import ConfigError

__all__ = ["Digest", "parse_digest", "HashingWriter", "sha256_file"]

#: A digest string, ``sha256:`` and 64 lowercase hex digits.
Digest = NewType("Digest", str)

_DIGEST = re.compile(r"sha256:[0-9a-f]{64}")


def parse_digest(text: str) -> Digest:
    """Check *text* is a ``sha256:<hex>`` digest (a bare 64-digit hex is accepted too)."""
    if re.fullmatch(r"[0-9a-f]{64}", text):
        text = "sha256:" + text
    if not _DIGEST.fullmatch(text):
        raise ConfigError(f"not a sha256 digest: {text!r}", what="digest")
    return Digest(text)


class HashingWriter:
    """A binary file wrapper that hashes (and counts) everything written through it."""

    def __init__(self, raw: IO[bytes]) -> None:
        self.raw = raw
        self.size = 0
        self._hash = hashlib.sha256()

    def write(self, data: bytes) -> int:
        """Write *data* to the underlying file and feed it to the hash."""
        self._hash.update(data)
        self.size += len(data)
        return self.raw.write(data)

    def flush(self) -> None:
        """Flush the underlying file."""
        self.raw.flush()

    @property
    def digest(self) -> Digest:
        """The digest of what was written so far."""
        return Digest("sha256:" + self._hash.hexdigest())


def sha256_file(f: IO[bytes]) -> Digest:
    """The digest of the rest of file *f*."""
    h = hashlib.sha256()
    while chunk := f.read(1 << 20):
        h.update(chunk)
    return Digest("sha256:" + h.hexdigest())
