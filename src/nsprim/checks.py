"""Checks of values before they reach the kernel: ids, group lists, UTS names, argv, environment.

Each check raises :class:`~nsprim.errors.ConfigError` naming the field, so
bad input is refused before any system call instead of being wrapped around
(a uid of ``2**32`` is root to a 32-bit ``uid_t``) or cut short (C strings
end at the first NUL byte)::

    >>> check_id(1000, "uid")
    1000
    >>> check_id(-5, "uid")
    Traceback (most recent call last):
    ...
    nsprim.errors.ConfigError: uid -5 is out of range: ids are 0..4294967294
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Final

from .errors import ConfigError
from .idmap import MAX_ID

__all__ = ["NGROUPS_MAX", "UTS_NAME_MAX", "check_id", "check_groups", "check_uts_name", "check_argv", "check_env"]

NGROUPS_MAX: Final = 65536  # the kernel's limit on supplementary groups
UTS_NAME_MAX: Final = 64  # bytes in a host or domain name (__NEW_UTS_LEN)


def check_id(value: object, what: str) -> int:
    """*value* as a uid or gid: an integer from 0 to 4294967294.

    The kernel's ids are 32 bits: a larger value would wrap (``2**32`` is
    root) and 4294967295 (``(uid_t)-1``) means "leave unchanged".
    """
    if isinstance(value, bool) or not isinstance(value, int):
        raise ConfigError(f"{what} must be an integer id, not {value!r}", what=what)
    if not 0 <= value < MAX_ID:
        raise ConfigError(f"{what} {value} is out of range: ids are 0..{MAX_ID - 1}", what=what)
    return value


def check_groups(groups: Iterable[object], what: str = "groups") -> tuple[int, ...]:
    """Supplementary groups as a tuple of valid gids, at most :data:`NGROUPS_MAX` of them."""
    items = tuple(groups)
    if len(items) > NGROUPS_MAX:
        raise ConfigError(f"{len(items)} supplementary groups: the kernel allows at most {NGROUPS_MAX}", what=what)
    return tuple(check_id(gid, what) for gid in items)


def check_uts_name(name: str, what: str) -> str:
    """A host or domain name the kernel takes: at most 64 bytes, no NUL byte."""
    if not isinstance(name, str):
        raise ConfigError(f"{what} must be a string, not {name!r}", what=what)
    if "\0" in name:
        raise ConfigError(f"{what} `{name!r}` contains a NUL byte", what=what)
    size = len(name.encode())
    if size > UTS_NAME_MAX:
        raise ConfigError(f"{what} `{name}` is {size} bytes: the kernel allows at most {UTS_NAME_MAX} bytes", what=what)
    return name


def check_argv(argv: Iterable[str | bytes], what: str = "argv") -> None:
    """No NUL byte in any argument (C strings would end there)."""
    for i, arg in enumerate(argv):
        if (isinstance(arg, str) and "\0" in arg) or (isinstance(arg, bytes) and b"\0" in arg):
            raise ConfigError(f"{what}[{i}] {arg!r} contains a NUL byte", what=what)


def check_env(env: Mapping[str, str] | Iterable[tuple[str, str]], what: str = "env") -> None:
    """Environment keys that are non-empty with no ``=`` or NUL, values with no NUL."""
    items = env.items() if isinstance(env, Mapping) else env
    for key, value in items:
        if not isinstance(key, str) or not isinstance(value, str):
            raise ConfigError(f"{what}: {key!r}={value!r} is not a pair of strings", what=what)
        if not key:
            raise ConfigError(f"{what}: an empty variable name (value {value!r})", what=what)
        if "=" in key or "\0" in key:
            bad = "`=`" if "=" in key else "a NUL byte"
            raise ConfigError(f"{what}: variable name {key!r} contains {bad}", what=what)
        if "\0" in value:
            raise ConfigError(f"{what}: the value of `{key}` contains a NUL byte", what=what)
