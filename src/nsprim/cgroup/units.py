"""Pure conversions for cgroup values: limits, CPU sets, shares and weights.

Sizes are :mod:`nsprim.units`' (:func:`parse_size`, :func:`format_size`,
:data:`SIZE_MAX`), named here too.

Nothing here touches the file system; every function is total on its domain
and raises :class:`~nsprim.errors.ConfigError` (naming the offending value)
outside it.

Limits
    :func:`parse_limit` takes a size or the word ``"max"`` (also
    ``"unlimited"``; ``-1`` is *not* accepted), meaning no limit, returned as
    :data:`MAX`.

CPU sets
    The kernel's list format: ``"0-3,5,7-8"``.  :func:`parse_cpuset` returns
    a sorted tuple of ints, :func:`format_cpuset` the canonical string.
"""

from __future__ import annotations

import re
from typing import Final, Literal

from nsprim.errors import ConfigError
from nsprim.units import SIZE_MAX, format_size, parse_size

__all__ = [
    "MAX",
    "SIZE_MAX",
    "Limit",
    "parse_size",
    "parse_limit",
    "format_size",
    "parse_cpuset",
    "format_cpuset",
    "shares_to_weight",
    "weight_to_shares",
    "SHARES_MIN",
    "SHARES_MAX",
    "WEIGHT_MIN",
    "WEIGHT_MAX",
    "V1_UNLIMITED",
]

MAX: Final = "max"
"""The value meaning "no limit" (written as ``max`` on cgroup v2)."""


Limit = int | Literal["max"]
"""A normalised limit: a non-negative int, or :data:`MAX`."""

SHARES_MIN: Final = 2
SHARES_MAX: Final = 262144
WEIGHT_MIN: Final = 1
WEIGHT_MAX: Final = 10000

V1_UNLIMITED: Final = 9223372036854771712
"""What cgroup v1 reports for an unlimited memory limit (PAGE_COUNTER_MAX * 4096)."""


def parse_limit(value: int | str, what: str = "limit") -> Limit:
    """Like :func:`parse_size` but also accepts ``"max"``/``"unlimited"`` (returns :data:`MAX`)."""
    if isinstance(value, str) and value.strip().lower() in ("max", "unlimited"):
        return MAX
    return parse_size(value, what)


_RANGE_RE: Final = re.compile(r"^(\d+)(?:-(\d+))?$")


def parse_cpuset(text: str, what: str = "cpuset") -> tuple[int, ...]:
    """Parse a kernel list (``"0-3,5"``) into a sorted tuple of distinct ints.

    The empty string gives ``()``.  Whitespace around items is allowed;
    reversed ranges (``"3-1"``), negative numbers and garbage raise
    :class:`ConfigError`.
    """
    if not isinstance(text, str):
        raise ConfigError(f"{what}: `{text!r}` is not a string like '0-3,5'", what=what)
    stripped = text.strip()
    if not stripped:
        return ()
    result: set[int] = set()
    for item in stripped.split(","):
        m = _RANGE_RE.match(item.strip())
        if m is None:
            raise ConfigError(f"{what}: `{text}` is malformed at `{item.strip()}` (expected e.g. '0-3,5')", what=what)
        lo = int(m.group(1))
        hi = int(m.group(2)) if m.group(2) is not None else lo
        if hi < lo:
            raise ConfigError(f"{what}: `{text}` has a reversed range `{item.strip()}`", what=what)
        if hi - lo > 1 << 20:
            raise ConfigError(f"{what}: `{text}` has an implausibly large range `{item.strip()}`", what=what)
        result.update(range(lo, hi + 1))
    return tuple(sorted(result))


def format_cpuset(items: tuple[int, ...] | list[int] | set[int] | frozenset[int]) -> str:
    """Format ints as the canonical kernel list: ``{0, 1, 2, 3, 5}`` -> ``"0-3,5"``."""
    ordered = sorted(set(items))
    parts: list[str] = []
    i = 0
    while i < len(ordered):
        j = i
        while j + 1 < len(ordered) and ordered[j + 1] == ordered[j] + 1:
            j += 1
        parts.append(str(ordered[i]) if i == j else f"{ordered[i]}-{ordered[j]}")
        i = j + 1
    return ",".join(parts)


def shares_to_weight(shares: int) -> int:
    """Convert cgroup v1 ``cpu.shares`` (2..262144) to v2 ``cpu.weight`` (1..10000).

    Uses the formula of runc and crun: ``1 + ((shares - 2) * 9999) // 262142``.
    """
    if isinstance(shares, bool) or not isinstance(shares, int) or not SHARES_MIN <= shares <= SHARES_MAX:
        raise ConfigError(f"cpu shares: `{shares!r}` is outside {SHARES_MIN}..{SHARES_MAX}", what="cpu.shares")
    return 1 + ((shares - 2) * 9999) // 262142


def weight_to_shares(weight: int) -> int:
    """Convert v2 ``cpu.weight`` (1..10000) to v1 ``cpu.shares``: the inverse of :func:`shares_to_weight`.

    ``2 + ((weight - 1) * 262142) // 9999``; ``shares_to_weight(weight_to_shares(w)) == w`` for every weight.
    """
    if isinstance(weight, bool) or not isinstance(weight, int) or not WEIGHT_MIN <= weight <= WEIGHT_MAX:
        raise ConfigError(f"cpu weight: `{weight!r}` is outside {WEIGHT_MIN}..{WEIGHT_MAX}", what="cpu.weight")
    # Round up so that the forward conversion (which floors) lands on the same weight.
    return 2 + -((-(weight - 1) * 262142) // 9999)
