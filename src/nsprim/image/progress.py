"""What long image work (a pull, an unpack) reports as it goes: :class:`Progress`."""

from __future__ import annotations

from typing import Protocol

__all__ = ["Progress"]


class Progress(Protocol):
    """A receiver of progress: each blob (by digest) begins, advances by bytes, and ends."""

    def begin(self, digest: str, size: int | None, what: str) -> None:
        """Work on *digest* starts: *size* bytes in all (``None``: unknown); *what* says what is done."""

    def advance(self, digest: str, nbytes: int) -> None:
        """*nbytes* more of *digest* are done."""

    def end(self, digest: str) -> None:
        """Work on *digest* is finished (or given up)."""
