"""Kept programs: a container's start as plain values, run again without the model that built it.

A command that starts a container again and again (``nsprim-runtime
create``, ``nsprim run``) spends most of its time importing the model that
turns its input into a plan.  A *program* is what that model decided, as
values :mod:`marshal` keeps: the plan's steps as rows for the C core
(:mod:`nsprim._sys.plan_rows`), the group's hierarchies and control file
writes, the clone flags.  Strings that change from one start to the next (an
id, a bundle's path) are placeholders, replaced when the program runs.  This
module runs programs and keeps them; it imports the C core's encoder, the
watcher and nothing of the model.  :mod:`nsprim.oci.runtime.replay` and
:mod:`nsprim.cli.kept` say what their programs hold and when they apply.

Whatever a program did not foresee undoes what it made and raises
:class:`Fallback`: the caller then starts the container the general way.
"""

from __future__ import annotations

import marshal
import os

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Iterable, Sequence

    from .cgroup import Controller, Resources
    from .cgroup.host import Hierarchy

__all__ = [
    "MARK",
    "Fallback",
    "QuickProcess",
    "code_stamp",
    "read_bytes",
    "substitute",
    "patched",
    "templated",
    "program_rows",
    "group_program",
    "mentions",
    "load_from",
    "store_program_in",
    "make_groups",
    "remove_groups",
    "remove_or_kill_groups",
    "spawn_program",
    "write_control",
]

#: Placeholders are this private-use character, a letter, and it again; a spec holding it is never kept.
MARK = "\ue000"
#: The most programs kept in one directory; the oldest half goes when there are more.
PLANS_MAX = 256
_PACKAGE = os.path.dirname(os.path.abspath(__file__))
# The packages a program is built from (the compilers' imports, and theirs).
_STAMPED = ("", "oci", "oci/runtime", "_sys", "cgroup", "fs", "security", "security/seccomp", "container", "cli")


class Fallback(Exception):
    """The program could not run as kept: what it did is undone; create the general way."""


class QuickProcess:
    """A kept program's init: its pid and a pidfd (this process is its parent until it exits)."""

    __slots__ = ("pid", "pidfd")

    def __init__(self, pid: int, pidfd: int) -> None:
        self.pid = pid
        self.pidfd = pidfd

    def send_signal(self, sig: int) -> None:
        """Signal the init through its pidfd (never a reused pid)."""
        if TYPE_CHECKING:
            from signal import pidfd_send_signal
        else:
            from _signal import pidfd_send_signal
        if self.pidfd >= 0:
            try:
                pidfd_send_signal(self.pidfd, sig)
            except ProcessLookupError:
                pass

    def kill(self) -> None:
        """SIGKILL the init."""
        self.send_signal(9)

    def wait(self) -> int:
        """Reap the init: its exit status, or minus the signal that ended it."""
        try:
            _pid, status = os.waitpid(self.pid, 0)  # (retried after a signal's handler, PEP 475)
        except ChildProcessError:  # reaped already (this process ignores SIGCHLD): no status to tell
            status = 0
        self.release()
        return os.waitstatus_to_exitcode(status)

    def release(self) -> None:
        """Close the pidfd without reaping (the engine, a subreaper, reaps the init)."""
        if self.pidfd >= 0:
            os.close(self.pidfd)
            self.pidfd = -1


def code_stamp() -> list[int]:
    """The modification times of nsprim's modules that build programs (a changed module is a new key)."""
    out: list[int] = []
    for sub in _STAMPED:
        try:
            with os.scandir(os.path.join(_PACKAGE, sub)) as it:
                out += sorted(e.stat().st_mtime_ns for e in it if e.name.endswith((".py", ".so")))
        except OSError:
            out.append(-1)
    return out


def read_bytes(path: str) -> bytes:
    """The whole file at *path*, or nothing when it cannot be read."""
    try:
        with open(path, "rb") as f:
            return f.read()
    except OSError:
        return b""


def substitute(obj: object, pairs: list[tuple[str, str]], *, reverse: bool = False) -> object:
    """*obj* with each placeholder of *pairs* replaced by its value (*reverse*: each value by its placeholder),
    in every string and byte string of the lists, tuples and dicts (values) it is made of."""
    encoded = [(p.encode(), os.fsencode(v)) for p, v in pairs]
    return _substitute(obj, pairs, encoded, reverse)


_MARK_BYTES = MARK.encode()


def _substitute(obj: object, pairs: list[tuple[str, str]], encoded: list[tuple[bytes, bytes]], reverse: bool) -> object:
    if isinstance(obj, str):
        if reverse:
            for placeholder, value in pairs:
                obj = obj.replace(value, placeholder)
        elif MARK in obj:  # (most strings hold no placeholder)
            for placeholder, value in pairs:
                obj = obj.replace(placeholder, value)
        return obj
    if isinstance(obj, bytes):
        if reverse:
            for p, v in encoded:
                obj = obj.replace(v, p)
        elif _MARK_BYTES in obj:
            for p, v in encoded:
                obj = obj.replace(p, v)
        return obj
    if isinstance(obj, (list, tuple)):
        out = [_substitute(item, pairs, encoded, reverse) for item in obj]
        return out if isinstance(obj, list) else tuple(out)
    if isinstance(obj, dict):
        return {k: _substitute(v, pairs, encoded, reverse) for k, v in obj.items()}
    return obj


def patched(kept: dict[str, object], pairs: list[tuple[str, str]]) -> dict[str, object]:
    """A kept program with its placeholders replaced: its steps' where its ``patches`` say (most of
    their hundreds of values have none), everything else wherever one is."""
    program: dict[str, object] = substitute({k: v for k, v in kept.items() if k != "rows"}, pairs)  # type: ignore[assignment]
    rows: list[tuple[object, ...]] = list(kept["rows"])  # type: ignore[call-overload]
    for at, field in kept["patches"]:  # type: ignore[attr-defined]
        row = list(rows[at])
        row[field] = substitute(row[field], pairs)
        rows[at] = tuple(row)
    program["rows"] = rows
    return program


def templated(program: dict[str, object], pairs: list[tuple[str, str]]) -> dict[str, object]:
    """*program* with each value of *pairs* replaced by its placeholder, and the ``patches`` that
    :func:`patched` follows."""
    kept: dict[str, object] = substitute(program, pairs, reverse=True)  # type: ignore[assignment]
    rows: list[tuple[object, ...]] = kept["rows"]  # type: ignore[assignment]
    kept["patches"] = [(i, f) for i, row in enumerate(rows) for f, value in enumerate(row) if mentions(value, MARK)]
    return kept


def program_rows(steps: Sequence[object]) -> list[tuple[object, ...]]:
    """Typed plan steps as the rows a program keeps."""
    from ._sys.spawn import row
    from .plan import Step

    out: list[tuple[object, ...]] = []
    for s in steps:
        assert isinstance(s, Step)
        out.append(row(s.lower()))
    return out


def group_program(
    hierarchies: Sequence[Hierarchy], resources: Resources, v2_controllers: Iterable[Controller]
) -> dict[str, object]:
    """The cgroup part of a program, as :meth:`nsprim.cgroup.CGroup.create` would make the group in
    *hierarchies* with *resources* and the v2 *v2_controllers* enabled above it: the ``hierarchies``
    (mount point, version, a v1 cpuset), the control file ``writes`` (each once) and the
    ``v2_wanted`` controllers its parents must have enabled (see :func:`make_groups`)."""
    from .cgroup import Controller
    from .cgroup.host import cached_host_info
    from .cgroup.tree import resource_writes
    from .cgroup.v1 import MemoryNow

    info = cached_host_info()
    serving = info.controllers
    seen: set[tuple[object, ...]] = set()
    writes: list[tuple[int, list[str], str, list[int]]] = []
    for w in resource_writes(resources, info, set(hierarchies), MemoryNow.fresh()):
        if (w.controller, w.names, w.value) in seen:
            continue  # a repeat for ordering's sake: once the first took, a no-op
        seen.add((w.controller, w.names, w.value))
        writes.append((list(hierarchies).index(serving[w.controller]), list(w.names), w.value, sorted(w.tolerate)))
    wanted = set(v2_controllers)
    return {
        "hierarchies": [
            (os.fspath(h.mount_point), h.version, Controller.CPUSET in h.controllers and h.version == 1)
            for h in hierarchies
        ],
        "writes": writes,
        "v2_wanted": sorted(
            str(c.v2_name) for h in hierarchies if h.version == 2 for c in wanted if serving.get(c) == h and c.v2_name
        ),
    }


def mentions(obj: object, text: str) -> bool:
    """Whether *text* occurs in a string or byte string of *obj* (as :func:`substitute` walks it)."""
    if isinstance(obj, str):
        return text in obj
    if isinstance(obj, bytes):
        return os.fsencode(text) in obj
    if isinstance(obj, (list, tuple)):
        return any(mentions(item, text) for item in obj)
    if isinstance(obj, dict):
        return any(mentions(v, text) for v in obj.values())
    return False


def load_from(directory: str, key: str, version: int) -> dict[str, object] | None:
    """The program of *version* kept under *key* in *directory*, or None: also when the directory or
    the file is not this user's alone (a program says what to do as this user; only we may write one)."""
    try:
        with open(os.path.join(directory, key), "rb") as f:
            if not (_ours(os.stat(directory)) and _ours(os.fstat(f.fileno()))):
                return None
            program = marshal.loads(f.read())  # (load() reads a file object in small pieces: 10x slower)
    except (OSError, EOFError, ValueError, TypeError):
        return None
    if not isinstance(program, dict) or program.get("version") != version:
        return None
    return program


def _ours(st: os.stat_result) -> bool:
    return st.st_uid == os.geteuid() and not st.st_mode & 0o022


def store_program_in(directory: str, key: str, program: dict[str, object]) -> None:
    """Keep *program* under *key* in *directory* (0700; written whole, then renamed: a reader never
    sees half of one); a program that cannot be kept is built again next time."""
    try:
        os.makedirs(directory, 0o700, exist_ok=True)
        names = os.listdir(directory)
        if len(names) >= PLANS_MAX:
            aged = sorted(names, key=lambda n: _mtime(os.path.join(directory, n)))
            for name in aged[: len(aged) // 2]:
                try:
                    os.unlink(os.path.join(directory, name))
                except OSError:
                    pass
        tmp = os.path.join(directory, f".{key}.{os.getpid()}")
        with open(os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o600), "wb") as f:
            f.write(marshal.dumps(program))
        os.rename(tmp, os.path.join(directory, key))
    except OSError:
        pass


def _mtime(path: str) -> int:
    try:
        return os.stat(path).st_mtime_ns
    except OSError:
        return 0


def remove_groups(dirs: list[str] | tuple[str, ...]) -> bool:
    """rmdir each of a container's (empty) group directories; False at the first that is busy."""
    for d in dirs:
        try:
            os.rmdir(d)
        except FileNotFoundError:
            pass
        except OSError:
            return False
    return True


def remove_or_kill_groups(dirs: list[str] | tuple[str, ...], cgroup: str | None) -> None:
    """Remove a container's group directories; if one still has a process (of the container's),
    kill what is in the group at *cgroup* and remove it the cgroup layer's way.  Never raises."""
    if not dirs or remove_groups(dirs) or cgroup is None:
        return
    try:
        from .cgroup import CGroup

        group = CGroup.open(cgroup)
        group.kill()
        group.delete(recursive=True, timeout=5.0)
    except Exception:
        pass


def _read_text(path: str) -> str:
    with open(path) as f:
        return f.read()


def write_control(path: str, value: str) -> None:
    """Write *value* to the control file *path* (one write, as the kernel wants it)."""
    fd = os.open(path, os.O_WRONLY | os.O_CLOEXEC)
    try:
        os.write(fd, value.encode())
    finally:
        os.close(fd)


def make_groups(program: dict[str, object], parts: list[str], leaves: list[str], made: list[str]) -> None:
    """The container's group in each hierarchy, as :meth:`nsprim.cgroup.CGroup.create` makes it when its
    parents exist: Fallback when one is missing or lacks what the kernel needs of a parent."""
    from ._sys import watcher

    hierarchies: list[tuple[str, int, bool]] = program["hierarchies"]  # type: ignore[assignment]
    wanted_v2: list[str] = program["v2_wanted"]  # type: ignore[assignment]
    for mount_point, version, cpuset in hierarchies:
        parent = mount_point
        for part in parts[:-1]:
            parent = os.path.join(parent, part)
            if not os.path.isdir(parent):
                raise Fallback(f"the parent group `{parent}` does not exist")
            if cpuset and not all(_read_text(os.path.join(parent, f)).strip() for f in ("cpuset.cpus", "cpuset.mems")):
                raise Fallback(f"the parent group `{parent}` has no CPUs or memory nodes")
        if version == 2 and wanted_v2:
            d = mount_point
            for part in ["", *parts[:-1]]:
                d = os.path.join(d, part) if part else d
                enabled = set(_read_text(os.path.join(d, "cgroup.subtree_control")).split())
                if not enabled.issuperset(wanted_v2):
                    raise Fallback(f"controllers to enable in `{d}`")
    watcher.watch_cgroups(leaves)
    for (_mp, _version, cpuset), leaf in zip(hierarchies, leaves, strict=True):
        try:
            os.mkdir(leaf, 0o755)
        except OSError as exc:
            # Not ours (another container's, say): the watcher must not clean it up after us.
            watcher.forget_cgroups([d for d in leaves if d not in made])
            raise Fallback(f"mkdir `{leaf}`: {exc.strerror}") from None
        made.append(leaf)
        if cpuset:
            parent = os.path.dirname(leaf)
            for name in ("cpuset.cpus", "cpuset.mems"):
                write_control(os.path.join(leaf, name), _read_text(os.path.join(parent, name)).strip())
    writes: list[tuple[int, list[str], str, list[int]]] = program["writes"]  # type: ignore[assignment]
    for index, names, value, tolerate in writes:
        for name in names:  # alternatives: the first file that exists
            try:
                write_control(os.path.join(leaves[index], name), value)
                break
            except FileNotFoundError:
                continue
            except OSError as exc:
                if exc.errno in tolerate:
                    break
                raise Fallback(f"write `{value}` to `{name}`: {exc.strerror}") from None
        else:
            raise Fallback(f"none of {names} exists")


def spawn_program(program: dict[str, object], leaves: list[str]) -> QuickProcess:
    """The program's plan cloned, born in its group: returns once it exec'd (or waits for its start);
    :class:`Fallback` (the child reaped) if a step failed."""
    from ._sys._lib import ffi, lib
    from ._sys.plan_rows import EncodedRows, read_report_raw, spawn_config

    prefix = EncodedRows(program["prefix"])  # type: ignore[arg-type]
    body = EncodedRows(program["rows"])  # type: ignore[arg-type]
    into = int(program["clone_into"])  # type: ignore[call-overload]
    cgroup_fd = os.open(leaves[into], os.O_PATH | os.O_DIRECTORY | os.O_CLOEXEC) if into >= 0 else -1
    try:
        config = spawn_config(
            body, prefix, clone_flags=int(program["clone_flags"]), cgroup_fd=cgroup_fd,  # type: ignore[call-overload]
            use_vfork=bool(program["vfork"]),
        )  # fmt: skip
        result = ffi.new("struct nsp_spawn_result *")
        ret = lib.nsp_spawn(config, result)
    finally:
        if cgroup_fd >= 0:
            os.close(cgroup_fd)
    if ret < 0:
        raise Fallback(f"clone: {os.strerror(-ret)}")
    proc = QuickProcess(result.pid, result.pidfd)
    try:
        report = read_report_raw(result)
    except BaseException:
        proc.kill()
        proc.wait()
        raise
    finally:
        lib.nsp_spawn_release(result)
        os.close(result.report_fd)
    if report is not None:
        proc.wait()
        raise Fallback(f"step {report[0]} failed: {os.strerror(report[2])}")
    return proc
