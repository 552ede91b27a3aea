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

from ...kept import (
    MARK,
    Fallback,
    QuickProcess,
    code_stamp,
    load_from,
    make_groups,
    patched,
    read_bytes,
    remove_groups,
    remove_or_kill_groups,
    spawn_program,
    store_program_in,
    substitute,
    write_control,
)
from . import jsonio
from .store import (
    CREATED,
    CREATING,
    DEFAULT_PARENT,
    ContainerRecord,
    Store,
    process_starttime,
    remove_default_parent_dirs,
)

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

PROGRAM_VERSION = 4
#: Kept programs, in the state root (an ``@`` is in no container id).
PLANS = "@plans"
_MIN_TEMPLATED = 8  # shorter strings stay in the key as they are
_HEX = frozenset("0123456789abcdef")


class Lookup:
    """A spec's key and the strings its placeholders stand for in this ``create``."""

    __slots__ = ("annotations", "bundle", "env", "key", "mount_order", "pairs", "raw")

    def __init__(
        self,
        key: str,
        bundle: str,
        pairs: list[tuple[str, str]],
        annotations: dict[str, str],
        raw: bytes,
        env: list[str] | None = None,
        mount_order: list[int] | None = None,
    ) -> None:
        self.key = key
        self.bundle = bundle
        self.pairs = pairs  #: (placeholder, value), in the order they are replaced in a spec
        self.annotations = annotations
        self.raw = raw  #: the spec's bytes, written to the state directory as they are
        #: ``process.env`` with its placeholders, when its names are distinct (its order is then not in the key)
        self.env = env
        #: the spec's mounts in the order the key has them (and the program is built with), by index
        self.mount_order = mount_order


def _mount_order(mounts: object, rootfs: str) -> list[int] | None:
    """The mounts' canonical order: the same for every order of them that makes the same tree.

    Two mounts keep their order when one's destination is the other's or lies under it; the others
    commute, unless a destination goes through a symbolic link in the root (the tree would then
    depend on where it leads: the spec's order is kept).  Of those free to go next, the least
    destination goes first."""
    if not isinstance(mounts, list) or not all(
        isinstance(m, dict) and isinstance(m.get("destination"), str) for m in mounts
    ):
        return None
    dests = [os.path.normpath("/" + m["destination"]).rstrip("/") + "/" for m in mounts]
    for d in set(dests):
        at = rootfs
        for part in d.strip("/").split("/")[:-1]:
            at = os.path.join(at, part)
            if os.path.islink(at):
                return None
    after = [{i for i in range(j) if dests[i].startswith(dests[j]) or dests[j].startswith(dests[i])}
             for j in range(len(dests))]  # fmt: skip
    left, order = set(range(len(dests))), []
    while left:
        j = min((j for j in left if not after[j] & left), key=lambda j: (dests[j], j))
        order.append(j)
        left.remove(j)
    return order


def _placeholder(letter: str) -> str:
    return f"{MARK}{letter}{MARK}"


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
    except (ValueError, RecursionError):
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
    # An engine may write the environment in any order (podman: a Go map's): with distinct names the
    # order is the same environment, so the key has it sorted and the program is given this one.
    env = None
    process = templated.get("process") if isinstance(templated, dict) else None
    if isinstance(process, dict) and isinstance(process.get("env"), list):
        names = [e.partition("=")[0] for e in process["env"] if isinstance(e, str)]
        if len(names) == len(process["env"]) and len(set(names)) == len(names):
            env = list(process["env"])
            process["env"] = sorted(env)
    # ... and its mounts: those that do not lie on one another may go in any order (see _mount_order).
    order = _mount_order(templated.get("mounts") if isinstance(templated, dict) else None, rootfs)
    if order is not None:
        templated["mounts"] = [templated["mounts"][i] for i in order]  # type: ignore[index]
    facts = (
        PROGRAM_VERSION,
        code_stamp(),
        read_bytes("/proc/sys/kernel/random/boot_id"),
        # The caller's groups, where a relative cgroupsPath goes; an engine's monitor may be in one named
        # after the container (podman's conmon), as are the strings of its spec.
        substitute(read_bytes("/proc/self/cgroup"), pairs, reverse=True),
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
    return Lookup(key, bundle, pairs, annotations, raw, env, order)


def load(root: str, key: str) -> dict[str, object] | None:
    """The program kept under *key* in *root*'s ``@plans``, or None."""
    return load_from(os.path.join(root, PLANS), key, PROGRAM_VERSION)


def store_program(root: str, key: str, program: dict[str, object]) -> None:
    """Keep *program* under *key* in *root*'s ``@plans``."""
    store_program_in(os.path.join(root, PLANS), key, program)


def execute(g: Globals, opts: dict[str, object], container_id: str, found: Lookup, kept: dict[str, object]) -> object:
    """Create the container of the kept program *kept* (see the module's documentation): a
    :class:`~nsprim.oci.runtime.lifecycle.Created`, or :class:`Fallback` with nothing left behind."""
    program = patched(_in_order(kept, found.env), found.pairs)
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
        make_groups(program, parts, leaves, made)
        proc = _spawn(program, locked, leaves, opened)
        devices = int(program["devices_at"])  # type: ignore[call-overload]
        for name, line in program["devices"]:  # type: ignore[attr-defined]
            try:
                write_control(os.path.join(leaves[devices], name), line)
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
    g.log.debug(f"created container `{container_id}` from its program (built now, or kept): init pid {proc.pid}")
    from .created import Created

    return Created(locked, locked.record, proc, None, tuple(leaves))


def _in_order(kept: dict[str, object], env: list[str] | None) -> dict[str, object]:
    """*kept* with the environment in *env*'s order, where its spec had another (see :func:`lookup`)."""
    was = kept.get("env")
    if env is None or was == env:
        return kept
    if not isinstance(was, list) or sorted(was) != sorted(env):
        raise Fallback("the environment of the kept program is not this spec's")
    old, new = tuple(e.encode() for e in was), tuple(e.encode() for e in env)
    rows: list[tuple[object, ...]] = kept["rows"]  # type: ignore[assignment]
    ordered = [tuple(new if value == old else value for value in row) for row in rows]
    if ordered == rows:
        raise Fallback("the environment is in no step of the kept program")
    return dict(kept, rows=ordered)


def _spawn(program: dict[str, object], locked: LockedContainer, leaves: list[str], opened: list[int]) -> QuickProcess:
    """The init cloned with the program's plan, waiting for its start on the start socket."""
    from .created import start_socket

    try:
        fd = start_socket(locked.dirfd, listen=True, floor=int(program["floor"]))  # type: ignore[call-overload]
    except OSError as exc:
        raise Fallback(f"the start socket: {exc.strerror}") from None
    opened.append(fd)
    if fd != program["floor"]:  # the plan hands the init this descriptor
        raise Fallback(f"the start socket is descriptor {fd}, the plan's {program['floor']}")
    return spawn_program(program, leaves)


def undo(locked: LockedContainer, proc: QuickProcess | None, made: list[str], cgroup: str | None) -> None:
    """What a failed :func:`execute` made, undone: the init killed and reaped, the groups and the directory."""
    if proc is not None:
        proc.kill()
        proc.wait()
    if made:
        from ..._sys import watcher

        remove_or_kill_groups(made, cgroup)
        remove_default_parent_dirs(cgroup, made)
        try:
            watcher.forget_cgroups(made)
        except Exception:
            pass
    try:
        locked.remove()
    except Exception:
        pass
    locked.close()
