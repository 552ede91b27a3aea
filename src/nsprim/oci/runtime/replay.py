"""``create`` from a kept plan: the same container, without importing the model that built it.

Engines call ``create`` once per container with a new id and a spec that,
from one container to the next, differs only in strings derived from the id,
the bundle and the root file system (podman: the hostname, the mount sources
under its per-container directory, the cgroup path, a layer path, the
``Created`` annotation).  Building the plan from the spec imports the spec
model, the plan layer and the cgroup layer: most of what ``create`` costs.

So a bundle's create is split in two.  :mod:`~nsprim.oci.runtime.program`
builds, with the full model, a *program*: plain values (the plan's steps as
rows, the cgroup directories and control file writes, the device rules, the
record's fields), with every occurrence of those derived strings replaced by
a placeholder.  This module runs a program, imports only the store, the
watcher and the C core's encoder, and keeps programs in ``<root>/@plans`` by
the key of the spec they came from, with the same strings replaced in it (and
the annotations, which only the record holds, left out).  The next ``create``
whose spec has the same key runs the kept program with its own strings.

The key also covers what the program was built against: this host's boot,
its cgroup layout (``/proc/self/cgroup``), the effective ids, the create
options, and the files of this package.  A placeholder stands only for a
string long enough not to occur by chance (an id only when it is 64 hex
digits, as engines make them); a shorter one stays in the key as it is.

Anything the program did not foresee (a missing parent group, controllers
not yet enabled, a descriptor number taken, a failed step) undoes what was
done and raises :class:`Fallback`: the caller then creates the container the
general way, which makes what was missing or raises the error that names it.
"""

from __future__ import annotations

import marshal
import os

from . import jsonio
from .created import QuickProcess
from .store import CREATED, CREATING, DEFAULT_PARENT, ContainerRecord, Store, process_starttime

TYPE_CHECKING = False
if TYPE_CHECKING:
    from .cli import Globals
    from .store import LockedContainer

__all__ = [
    "PROGRAM_VERSION",
    "PLANS",
    "MARK",
    "Fallback",
    "Lookup",
    "lookup",
    "load",
    "store_program",
    "substitute",
    "execute",
    "remove_groups",
    "undo",
]

PROGRAM_VERSION = 2
#: Kept programs, in the state root (an ``@`` is in no container id).
PLANS = "@plans"
#: The most programs kept; the oldest half goes when there are more.
PLANS_MAX = 256
#: Placeholders are this private-use character, a letter, and it again; a spec holding it is never kept.
MARK = "\ue000"
_MIN_TEMPLATED = 8  # shorter strings stay in the key as they are
_HEX = frozenset("0123456789abcdef")
_PACKAGE = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
# The packages a program is built from (oci.runtime.program's imports, and theirs).
_STAMPED = ("", "oci", "oci/runtime", "_sys", "cgroup", "fs", "security", "security/seccomp")


class Fallback(Exception):
    """The program could not run as kept: what it did is undone; create the general way."""


class Lookup:
    """A spec's key and the strings its placeholders stand for in this ``create``."""

    __slots__ = ("annotations", "bundle", "key", "pairs", "raw")

    def __init__(
        self, key: str, bundle: str, pairs: list[tuple[str, str]], annotations: dict[str, str], raw: bytes
    ) -> None:
        self.key = key
        self.bundle = bundle
        self.pairs = pairs  #: (placeholder, value), in the order they are replaced in a spec
        self.annotations = annotations
        self.raw = raw  #: the spec's bytes, written to the state directory as they are


def _placeholder(letter: str) -> str:
    return f"{MARK}{letter}{MARK}"


def _code_stamp() -> list[int]:
    """The modification times of this package's modules (a changed module is a new key)."""
    out: list[int] = []
    for sub in _STAMPED:
        try:
            with os.scandir(os.path.join(_PACKAGE, sub)) as it:
                out += sorted(e.stat().st_mtime_ns for e in it if e.name.endswith((".py", ".so")))
        except OSError:
            out.append(-1)
    return out


def _read(path: str) -> bytes:
    try:
        with open(path, "rb") as f:
            return f.read()
    except OSError:
        return b""


def lookup(bundle: str, container_id: str, opts: dict[str, object]) -> Lookup | None:
    """The key of *bundle*'s spec for this ``create``; None if it cannot be kept (no program applies)."""
    if opts.get("console_socket"):
        return None
    try:
        with open(os.path.join(bundle, "config.json"), "rb") as f:
            raw = f.read()
        text = raw.decode()
    except (OSError, UnicodeDecodeError):
        return None
    if MARK in text or "\\ue000" in text.lower():  # the mark itself, or escaped
        return None
    try:
        spec = jsonio.loads(text)
        root = spec["root"]["path"] if isinstance(spec, dict) and isinstance(spec.get("root"), dict) else None
    except (ValueError, RecursionError):
        return None
    if not isinstance(root, str) or not root or root.startswith("..") or "\0" in root:
        return None
    rootfs = os.path.normpath(os.path.join(bundle, root))
    values = [("R", rootfs), ("B", bundle), ("G", f"/{DEFAULT_PARENT}/{container_id}")]
    if len(container_id) == 64 and _HEX.issuperset(container_id):
        values += [("I", container_id), ("i", container_id[:12])]
    pairs: list[tuple[str, str]] = []
    literal: list[tuple[str, str]] = []
    for letter, value in values:
        (pairs if len(value) >= _MIN_TEMPLATED else literal).append((_placeholder(letter), value))
    for placeholder, value in pairs:
        text = text.replace(value, placeholder)
    try:
        templated = jsonio.loads(text)
    except Exception:
        return None
    annotations = templated.pop("annotations", None) if isinstance(templated, dict) else None
    if annotations is None:
        annotations = {}
    if not isinstance(annotations, dict) or not all(
        isinstance(k, str) and isinstance(v, str) for k, v in annotations.items()
    ):
        return None
    # The annotations as the spec says them: their placeholders back.
    annotations = {k: substitute(v, pairs) for k, v in annotations.items()}
    facts = (
        PROGRAM_VERSION,
        _code_stamp(),
        _read("/proc/sys/kernel/random/boot_id"),
        _read("/proc/self/cgroup"),
        os.geteuid(),
        os.getegid(),
        bool(opts.get("no_pivot")),
        bool(opts.get("no_new_keyring")),
        int(opts.get("preserve_fds") or 0),  # type: ignore[call-overload]
        literal,
        templated,
    )
    from _blake2 import blake2b

    key = blake2b(marshal.dumps(facts), digest_size=20).hexdigest()  # type: ignore[arg-type]
    return Lookup(key, bundle, pairs, annotations, raw)


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


def load(root: str, key: str) -> dict[str, object] | None:
    """The program kept under *key*, or None."""
    try:
        with open(os.path.join(root, PLANS, key), "rb") as f:
            program = marshal.loads(f.read())  # (load() reads a file object in small pieces: 10x slower)
    except (OSError, EOFError, ValueError, TypeError):
        return None
    if not isinstance(program, dict) or program.get("version") != PROGRAM_VERSION:
        return None
    return program


def store_program(root: str, key: str, program: dict[str, object]) -> None:
    """Keep *program* under *key* (written whole, then renamed: a reader never sees half of one)."""
    directory = os.path.join(root, PLANS)
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
        pass  # a program not kept is built again next time


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


def _read_text(path: str) -> str:
    with open(path) as f:
        return f.read()


def _write(path: str, value: str) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CLOEXEC)
    try:
        os.write(fd, value.encode())
    finally:
        os.close(fd)


def _make_groups(program: dict[str, object], parts: list[str], leaves: list[str], made: list[str]) -> None:
    """The container's group in each hierarchy, as :meth:`nsprim.cgroup.CGroup.create` makes it when its
    parents exist: Fallback when one is missing or lacks what the kernel needs of a parent."""
    from ..._sys import watcher

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
            raise Fallback(f"mkdir `{leaf}`: {exc.strerror}") from None
        made.append(leaf)
        if cpuset:
            parent = os.path.dirname(leaf)
            for name in ("cpuset.cpus", "cpuset.mems"):
                _write(os.path.join(leaf, name), _read_text(os.path.join(parent, name)).strip())
    writes: list[tuple[int, list[str], str, list[int]]] = program["writes"]  # type: ignore[assignment]
    for index, names, value, tolerate in writes:
        for name in names:  # alternatives: the first file that exists
            try:
                _write(os.path.join(leaves[index], name), value)
                break
            except FileNotFoundError:
                continue
            except OSError as exc:
                if exc.errno in tolerate:
                    break
                raise Fallback(f"write `{value}` to `{name}`: {exc.strerror}") from None
        else:
            raise Fallback(f"none of {names} exists")


def execute(g: Globals, opts: dict[str, object], container_id: str, found: Lookup, kept: dict[str, object]) -> object:
    """Create the container of the kept program *kept* (see the module's documentation): a
    :class:`~nsprim.oci.runtime.lifecycle.Created`, or :class:`Fallback` with nothing left behind."""
    # The steps' placeholders are where the program says (most of its hundreds of values have none).
    program: dict[str, object] = substitute({k: v for k, v in kept.items() if k != "rows"}, found.pairs)  # type: ignore[assignment]
    rows: list[tuple[object, ...]] = list(kept["rows"])  # type: ignore[call-overload]
    for at, field in kept["patches"]:  # type: ignore[attr-defined]
        row = list(rows[at])
        row[field] = substitute(row[field], found.pairs)
        rows[at] = tuple(row)
    program["rows"] = rows
    rootfs = str(program["rootfs"])
    if not os.path.isdir(rootfs):
        raise Fallback(f"root `{rootfs}` is not a directory")
    parts = [p for p in str(program["cgroup"]).split("/") if p]
    hierarchies: list[tuple[str, int, bool]] = program["hierarchies"]  # type: ignore[assignment]
    leaves = [os.path.join(mount_point, *parts) for mount_point, _v, _c in hierarchies]
    me = os.getpid()
    record = ContainerRecord(
        id=container_id, bundle=found.bundle, status=CREATING, creator_pid=me,
        creator_starttime=process_starttime(me) or 0, rootfs=rootfs, cgroup=str(program["cgroup"]),
        cgroup_dirs=tuple(leaves), annotations=found.annotations,
    )  # fmt: skip
    # The record names the groups before they exist: `delete --force` cleans up after a create killed
    # half-way (and the watcher, should this process die, kills what is in them).
    locked = Store(g.root).create(record)  # an existing id is create's error, not a fallback
    made: list[str] = []
    opened: list[int] = []
    proc: QuickProcess | None = None
    try:
        with open(os.path.join(locked.path, "config.json"), "wb") as f:
            f.write(found.raw)
        _make_groups(program, parts, leaves, made)
        proc = _spawn(program, locked, leaves, opened)
        devices = int(program["devices_at"])  # type: ignore[call-overload]
        for name, line in program["devices"]:  # type: ignore[attr-defined]
            try:
                _write(os.path.join(leaves[devices], name), line)
            except OSError as exc:
                raise Fallback(f"write `{line}` to `{name}`: {exc.strerror}") from None
        for fd in opened:
            os.close(fd)
        opened.clear()
        locked.save(
            record.replace(
                pid=proc.pid, starttime=process_starttime(proc.pid) or 0, status=CREATED,
                extra={"start_steps": program["start_steps"]},
            )
        )  # fmt: skip
    except BaseException:
        for fd in opened:
            os.close(fd)
        undo(locked, proc, made, record.cgroup)
        raise
    from .created import Created

    return Created(locked, locked.record, proc, None, tuple(leaves))


def undo(locked: LockedContainer, proc: QuickProcess | None, made: list[str], cgroup: str | None) -> None:
    """What a failed :func:`execute` made, undone: the init killed and reaped, the groups and the directory."""
    if proc is not None:
        proc.kill()
        proc.wait()
    if made:
        from ..._sys import watcher

        if not remove_groups(made) and cgroup is not None:  # a process of the init's is still in it
            try:
                from ...cgroup import CGroup

                group = CGroup.open(cgroup)
                group.kill()
                group.delete(recursive=True, timeout=5.0)
            except Exception:
                pass
        try:
            watcher.forget_cgroups(made)
        except Exception:
            pass
    try:
        locked.remove()
    except Exception:
        pass
    locked.close()


def _spawn(program: dict[str, object], locked: LockedContainer, leaves: list[str], opened: list[int]) -> QuickProcess:
    """The init cloned with the program's plan, waiting for its start."""
    from ..._sys.plan_rows import EncodedRows, read_report_raw, spawn_config
    from .created import start_socket

    try:
        fd = start_socket(locked.dirfd, listen=True, floor=int(program["floor"]))  # type: ignore[call-overload]
    except OSError as exc:
        raise Fallback(f"the start socket: {exc.strerror}") from None
    opened.append(fd)
    if fd != program["listen_fd"]:
        raise Fallback(f"the start socket is descriptor {fd}, the plan's {program['listen_fd']}")
    from ..._sys._lib import ffi, lib

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
