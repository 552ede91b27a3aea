"""Sizes in bytes: :func:`parse_size` and :func:`format_size`, for every part of the package.

Pure conversions that raise :class:`~nsprim.errors.ConfigError` (naming the
offending value); they sit below the primitives, so that cgroup limits and
file system sizes share them without importing each other.

An ``int`` is a number of bytes.  A string is a decimal number (an
optional fraction is allowed) followed by an optional *binary* unit:
``K``, ``M``, ``G``, ``T``, ``P`` (also written ``Ki``, ``KiB``, ``KB``
and so on, case-insensitive) meaning 1024**n, or ``B`` for bytes.  The
result must be a whole number of bytes: ``"1.5G"`` is accepted
(1610612736), ``"0.3K"`` is not.  Negative numbers, empty strings, unknown
units, ``bool`` and ``float`` values are rejected, and so are digits and
spaces other than ASCII ones (Arabic-Indic or fullwidth digits), which the
kernel does not read.  The result is at most :data:`SIZE_MAX` (the
largest 64-bit value: beyond it the kernel's own parsing wraps around).
(:func:`nsprim.cgroup.units.parse_limit` also takes ``"max"``.)
"""

from __future__ import annotations

import re
from typing import Final

from .errors import ConfigError

__all__ = ["SIZE_MAX", "parse_size", "format_size"]

SIZE_MAX: Final = 2**64 - 1
"""The largest size :func:`parse_size` accepts (the kernel keeps sizes in 64 bits)."""

_UNITS: Final[dict[str, int]] = {"": 0, "k": 1, "m": 2, "g": 3, "t": 4, "p": 5, "e": 6}
# ASCII only: in a str pattern, \d and \s would also match other scripts' digits and spaces.
_SIZE_RE: Final = re.compile(r"^\s*(\d+(?:\.\d+)?|\.\d+)\s*([kmgtpe]?)(i?)(b?)\s*$", re.IGNORECASE | re.ASCII)


def parse_size(value: int | str, what: str = "size") -> int:
    """Parse *value* as a number of bytes (see the module docs for the syntax).

    >>> parse_size("1.5G"), parse_size("512M"), parse_size("1Ki"), parse_size(42)
    (1610612736, 536870912, 1024, 42)

    Raises :class:`ConfigError` naming *what* and the value when it is
    negative, malformed, not a whole number of bytes or above :data:`SIZE_MAX`.
    """
    if isinstance(value, bool) or not isinstance(value, (int, str)):
        raise ConfigError(f"{what}: `{value!r}` is not a size (an int of bytes or a string like '512M')", what=what)
    if isinstance(value, int):
        if value < 0:
            raise ConfigError(f"{what}: `{value}` is negative", what=what)
        return _in_range(value, value, what)
    m = _SIZE_RE.match(value)
    if m is None:
        raise ConfigError(f"{what}: `{value}` is not a size (expected e.g. '4096', '512M', '1.5G', '1Ki')", what=what)
    number, unit, _i, _b = m.groups()
    whole, _dot, fraction = number.partition(".")
    # Exact in integers: the digits as one number, over 10 to the number of decimals.
    scaled = int(whole + fraction or "0") * 1024 ** _UNITS[unit.lower()]
    amount, rest = divmod(scaled, 10 ** len(fraction))
    if rest:
        raise ConfigError(f"{what}: `{value}` is not a whole number of bytes", what=what)
    return _in_range(amount, value, what)


def _in_range(size: int, value: int | str, what: str) -> int:
    if size > SIZE_MAX:
        raise ConfigError(f"{what}: `{value}` is more than 2**64 - 1 bytes", what=what)
    return size


def format_size(value: int) -> str:
    """Format a byte count with the largest exact binary unit: 1610612736 -> ``"1536M"``, 1024 -> ``"1K"``."""
    if value < 0:
        raise ConfigError(f"size: `{value}` is negative", what="size")
    if value == 0:
        return "0"
    for suffix, power in (("E", 6), ("P", 5), ("T", 4), ("G", 3), ("M", 2), ("K", 1)):
        unit = 1024**power
        if value % unit == 0:
            return f"{value // unit}{suffix}"
    return str(value)
