"""Signals as ``kill`` takes them: numbers, or names with or without ``SIG``, in any case.

``TERM``, ``SIGTERM``, ``sigterm`` and ``15`` are one signal (as runc and
kill(1) read them); ``RTMIN+3`` and ``SIGRTMAX-1`` name real-time signals.
Numbers are the host's (``signal.SIG*``): they differ between architectures.
"""

from __future__ import annotations

TYPE_CHECKING = False
if TYPE_CHECKING:
    import signal
else:
    import _signal as signal  # the same numbers as plain ints: `signal` makes an enum class at import

__all__ = ["parse_signal", "signal_names", "SIGNAL_MAX"]

#: The largest signal number (``SIGRTMAX``).
SIGNAL_MAX = int(signal.SIGRTMAX)

# runc's table (golang.org/x/sys/unix), less the names this host lacks.
_NAMES = [
    "ABRT",
    "ALRM",
    "BUS",
    "CHLD",
    "CLD",
    "CONT",
    "FPE",
    "HUP",
    "ILL",
    "INT",
    "IO",
    "IOT",
    "KILL",
    "PIPE",
    "POLL",
    "PROF",
    "PWR",
    "QUIT",
    "SEGV",
    "STKFLT",
    "STOP",
    "SYS",
    "TERM",
    "TRAP",
    "TSTP",
    "TTIN",
    "TTOU",
    "URG",
    "USR1",
    "USR2",
    "VTALRM",
    "WINCH",
    "XCPU",
    "XFSZ",
]


def signal_names() -> dict[str, int]:
    """Every name without ``SIG`` (``TERM``) and its number on this host, real-time ones as ``RTMIN+N``."""
    names = {n: int(getattr(signal, "SIG" + n)) for n in _NAMES if hasattr(signal, "SIG" + n)}
    low, high = int(signal.SIGRTMIN), int(signal.SIGRTMAX)
    names["RTMIN"], names["RTMAX"] = low, high
    for i in range(1, high - low):
        names[f"RTMIN+{i}"] = low + i
        names[f"RTMAX-{i}"] = high - i
    return names


def parse_signal(text: str) -> int:
    """The signal number *text* names; :class:`~nsprim.errors.ConfigError` if it names none.

    0 is accepted (it checks that the process exists, as for kill(2)).
    """
    value = text
    if value.isascii() and value.isdigit():
        number = int(value)
        if number <= SIGNAL_MAX:
            return number
    else:
        name = value.upper()
        if name.startswith("SIG"):
            name = name[3:]
        found = _lookup(name)
        if found is not None:
            return found
    from ...errors import ConfigError

    raise ConfigError(
        f"unknown signal `{text[:40]}`: a number from 0 to {SIGNAL_MAX}, or a name such as TERM, SIGKILL, RTMIN+1",
        what="signal",
    )


def _lookup(name: str) -> int | None:
    if name in _NAMES:
        number = getattr(signal, "SIG" + name, None)
        return None if number is None else int(number)
    for base, sign in (("RTMIN", 1), ("RTMAX", -1)):
        if not name.startswith(base):
            continue
        low, high = int(signal.SIGRTMIN), int(signal.SIGRTMAX)
        rest = name[len(base) :]
        if not rest:
            return low if sign > 0 else high
        op, digits = rest[:1], rest[1:]
        if op != ("+" if sign > 0 else "-") or not (digits.isascii() and digits.isdigit()) or len(digits) > 3:
            return None
        number = (low + int(digits)) if sign > 0 else (high - int(digits))
        return number if low <= number <= high else None
    return None
