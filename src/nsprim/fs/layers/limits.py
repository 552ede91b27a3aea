"""How much one layer tar may unpack to: :class:`ExtractLimits`, checked entry by entry.

A tar is untrusted input and compresses well: a 2 MiB gzip stream of zeros
unpacks to 2 GiB.  The limits are checked on each member's header, which
declares its size (tarfile reads no more and no less for it), during the
pass that checks every name, so a tar over a limit is refused before
anything is written.
"""

from __future__ import annotations

from ..._dataclass import dataclass, fields
from ...errors import ConfigError, LayerLimitError

__all__ = ["ExtractLimits", "DEFAULT_LIMITS", "LimitCounter"]


@dataclass(frozen=True)
class ExtractLimits:
    """Limits on what one layer tar may unpack to.  Raise one by passing a larger value.

    * ``max_size``: bytes of file contents in all (32 GiB; the largest
      layers of the big public images, CUDA or PyTorch, are a few GiB);
    * ``max_entries``: members (one million; a whole distribution is a few
      hundred thousand files);
    * ``max_path_length``: bytes of a member's name or link target (4095,
      ``PATH_MAX`` less its NUL: the kernel takes no longer path);
    * ``max_depth``: components of a member's name (1024; real images are a
      few dozen deep, and recursive tools break far earlier);
    * ``max_ratio``: file contents per byte of tar (100), once the contents
      pass ``ratio_grace`` (1 GiB): a compression bomb, which real layers,
      compressing 2 to 5 times, never come near.  ``None`` turns it off.

    Exceeding one raises :class:`~nsprim.errors.LayerLimitError` naming the
    limit and the entry.
    """

    max_size: int = 32 << 30
    max_entries: int = 1_000_000
    max_path_length: int = 4095
    max_depth: int = 1024
    max_ratio: float | None = 100.0
    ratio_grace: int = 1 << 30

    def __post_init__(self) -> None:
        for f in fields(self):
            value = getattr(self, f.name)
            if f.name == "max_ratio" and value is None:
                continue
            if isinstance(value, bool) or not isinstance(value, (int, float)) or value <= 0:
                raise ConfigError(f"ExtractLimits.{f.name}: {value!r} is not a positive number", what=f.name)
            if f.name != "max_ratio" and not isinstance(value, int):
                raise ConfigError(f"ExtractLimits.{f.name}: {value!r} is not a whole number", what=f.name)

    @property
    def max_tar_size(self) -> int:
        """The most bytes a tar within these limits takes: its contents, and a few KiB of headers an entry."""
        return self.max_size + 4096 * self.max_entries + (1 << 20)


#: The limits used when none are given.
DEFAULT_LIMITS = ExtractLimits()


def _human(n: float) -> str:
    for unit in ("bytes", "KiB", "MiB", "GiB", "TiB"):
        if n < 1024 or unit == "TiB":
            return f"{n:.0f} {unit}" if unit == "bytes" else f"{n:.1f} {unit}"
        n /= 1024
    raise AssertionError("unreachable")  # pragma: no cover


class LimitCounter:
    """Counts one tar's members against :class:`ExtractLimits`; raises :class:`LayerLimitError` past one.

    *tar_size* is the size of the tar as read (compressed or not), for the
    ratio; ``None`` when unknown.
    """

    def __init__(self, limits: ExtractLimits, tar_size: int | None) -> None:
        self.limits = limits
        self.tar_size = tar_size
        self.entries = 0
        self.declared = 0

    def _over(self, entry: str, limit: str, what: str, value: float) -> LayerLimitError:
        maximum = getattr(self.limits, limit)
        shown = _human(maximum) if limit == "max_size" else f"{maximum:g}"
        return LayerLimitError(
            f"tar entry `{entry}`: {what}, over the limit {limit}={shown} (raise it with ExtractLimits({limit}=...))",
            limit=limit,
            value=value,
            maximum=maximum,
            entry=entry,
        )

    def path(self, entry: str, name: str, *, link: bool = False) -> None:
        """Check the length of a member's name (or, with *link*, its link target)."""
        n = len(name.encode("utf-8", "surrogateescape"))
        if n > self.limits.max_path_length:
            raise self._over(entry, "max_path_length", f"{'a link target' if link else 'a name'} of {n} bytes", n)

    def member(self, entry: str, depth: int, size: int) -> None:
        """Count one member *depth* components deep with *size* bytes of contents (0 unless a file)."""
        lim = self.limits
        self.entries += 1
        if self.entries > lim.max_entries:
            raise self._over(entry, "max_entries", f"member {self.entries}", self.entries)
        if depth > lim.max_depth:
            raise self._over(entry, "max_depth", f"a name {depth} components deep", depth)
        self.declared += size
        if self.declared > lim.max_size:
            raise self._over(entry, "max_size", f"{_human(self.declared)} of contents up to here", self.declared)
        if lim.max_ratio is not None and self.tar_size is not None and self.declared > lim.ratio_grace:
            ratio = self.declared / max(self.tar_size, 1)
            if ratio > lim.max_ratio:
                what = (
                    f"{_human(self.declared)} of contents up to here from a tar of {_human(self.tar_size)} "
                    f"({ratio:.0f} to 1, past ratio_grace={_human(lim.ratio_grace)})"
                )
                raise self._over(entry, "max_ratio", what, ratio)
