"""A plan as C structs, from plain rows: the encoding and the clone, without enum or dataclass.

:mod:`nsprim._sys.spawn` names the step kinds and flags (``enum``) and takes
typed :class:`~nsprim._sys.spawn.RawStep` values; both lower to the rows
here.  A runtime command that replays a plan it kept (``nsprim-runtime
create`` with a cached plan) holds only rows, and imports this module alone.

A row is ``(kind, flags, a, b, c, path, path2, str, str2, strv, strv2, ints)``:
the fields of ``struct nsp_step`` (``_native/nsprim.h``), byte strings or
``None``, tuples of byte strings, a tuple of ints.
"""

from __future__ import annotations

from ._lib import ffi as _ffi
from ._lib import lib

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable, Sequence

    from ._lib import CData

    Row = tuple[
        int, int, int, int, int, "bytes | None", "bytes | None", "bytes | None", "bytes | None",
        "tuple[bytes, ...] | None", "tuple[bytes, ...] | None", "tuple[int, ...] | None",
    ]  # fmt: skip

__all__ = ["BINARY_STR_KINDS", "EncodedRows", "spawn_config", "read_report_raw"]

#: Kinds whose ``str`` is data of length ``a``, not a C string (a NUL in it is no truncation).
BINARY_STR_KINDS = frozenset({lib.NSP_STEP_WRITE_FILE, lib.NSP_STEP_SECCOMP})

_FIELDS = ("path", "path2", "str", "str2")


class EncodedRows:
    """A C array of steps plus everything it points to.  Immutable once built."""

    __slots__ = ("_keep", "count", "has_sync", "kinds", "steps")

    def __init__(self, rows: Sequence[Row], kind_name: Callable[[int], str] = str) -> None:
        keep: list[CData] = []
        steps = _ffi.new("struct nsp_step[]", max(len(rows), 1))
        new = _ffi.new
        null = _ffi.NULL

        def cstr(value: bytes | None, field: str, kind: int, check: bool = True) -> CData:
            if value is None:
                return null
            if check and b"\0" in value:
                # C would read up to the first NUL: refuse rather than truncate.
                from ..errors import ConfigError

                name = kind_name(kind)
                raise ConfigError(f"a NUL byte in the {field} of a {name} step", what=field)
            buf = new("char[]", value)
            keep.append(buf)
            return buf

        for i, (kind, flags, a, b, c, path, path2, text, text2, strv, strv2, ints) in enumerate(rows):
            s = steps[i]
            s.kind = kind
            s.flags = flags
            s.a = a
            s.b = b
            s.c = c
            s.path = cstr(path, "path", kind)
            s.path2 = cstr(path2, "path2", kind)
            s.str = cstr(text, "str", kind, kind not in BINARY_STR_KINDS)
            s.str2 = cstr(text2, "str2", kind)
            for field, values in (("strv", strv), ("strv2", strv2)):
                if values is not None:
                    vec = new("char *[]", [*(cstr(v, field, kind) for v in values), null])
                    keep.append(vec)
                    setattr(s, field, vec)
            if ints:
                buf = new("int[]", list(ints))
                keep.append(buf)
                s.ints = buf
                s.nints = len(ints)
        self.steps = steps
        self.count = len(rows)
        self.kinds = tuple(row[0] for row in rows)  # to check a report against
        self.has_sync = lib.NSP_STEP_SYNC in self.kinds
        self._keep = keep


def spawn_config(
    plan: EncodedRows,
    prefix: EncodedRows | None,
    *,
    clone_flags: int,
    cgroup_fd: int = -1,
    pidns_fd: int = -1,
    use_vfork: bool = False,
) -> CData:
    """The ``struct nsp_spawn_config`` for *prefix* then *plan* (vfork mode only when no step syncs)."""
    config = _ffi.new("struct nsp_spawn_config *")
    config.clone_flags = clone_flags
    config.cgroup_fd = cgroup_fd
    config.pidns_fd = pidns_fd
    config.exit_signal = lib.SIGCHLD
    config.steps = plan.steps
    config.nsteps = plan.count
    if prefix is not None:
        config.prefix = prefix.steps
        config.nprefix = prefix.count
    has_sync = plan.has_sync or (prefix is not None and prefix.has_sync)
    config.use_vfork = 1 if use_vfork and not has_sync else 0
    return config


def read_report_raw(native: CData) -> tuple[int, int, int, int, bool] | None:
    """``nsp_read_report``: ``None`` once the child exec'd or waits for its start, else the
    failed step's ``(index, kind, errno, part, died)``."""
    report = _ffi.new("struct nsp_report *")
    ret = lib.nsp_read_report(native, report)
    if ret < 0:
        from ..errors import SyscallError

        raise SyscallError(-ret, "read", detail="read the child's report pipe")
    if ret in (0, 3):
        return None
    return int(report.index), int(report.kind), int(report.err), int(report.part), ret == 2
