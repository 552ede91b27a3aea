"""The commands of ``nsprim-runtime`` that work on containers the store records.

``state``, ``list``, ``kill``, ``delete``, ``ps``, ``pause``, ``resume`` and
``spec``.  Each is a function ``cmd_NAME(globals, options, arguments)``
returning the exit status.  The rules of the runtime spec's lifecycle
(``runtime.md``), with runc's additions where engines rely on them:

* ``kill`` needs a ``created``, ``running`` or ``paused`` container (the spec:
  kill of a stopped one is an error), except ``kill --all``, which signals
  whatever is left in the container's cgroup whatever its status (the shim
  uses it to clean up after the init ended).
* ``delete`` needs a ``stopped`` container, or ``--force`` (SIGKILL first);
  a ``created`` one is killed and deleted without ``--force``, as runc does.
  ``delete --force`` of an unknown id succeeds, as runc's, and removes a
  directory left by a ``create`` killed before its first record.
* ``pause`` needs ``running``, ``resume`` needs ``paused``.
"""

from __future__ import annotations

import os
import sys

from . import jsonio
from .features import SPEC_VERSION_MAX
from .store import (
    CREATING,
    PAUSED,
    RUNNING,
    STOPPED,
    ContainerRecord,
    LockedContainer,
    Store,
    live_status,
    process_alive,
    remove_default_parent_dirs,
)

TYPE_CHECKING = False  # typing itself is not imported: `state` and `list` must start fast
if TYPE_CHECKING:
    from ...cgroup import CGroup
    from .cli import Globals

__all__ = [
    "cmd_state",
    "cmd_list",
    "cmd_kill",
    "cmd_delete",
    "cmd_ps",
    "cmd_pause",
    "cmd_resume",
    "cmd_spec",
    "state_document",
    "signal_init",
    "delete_container",
    "container_group",
]

SIGKILL = 9  # the same on every architecture Linux runs on

#: How long ``delete`` waits for a killed container's processes to end.
KILL_TIMEOUT = 10.0


def state_error(verb: str, record: ContainerRecord, status: str, hint: str = "") -> Exception:
    from ...errors import ContainerStateError

    tail = f" ({hint})" if hint else ""
    return ContainerStateError(
        f"{verb} container `{record.id}`: it is {status}{tail}", container_id=record.id, status=status
    )


def state_document(record: ContainerRecord, status: str, owner: str = "") -> dict[str, object]:
    """The container's state as ``state`` prints it: the spec's fields in runc's order, and runc's extras."""
    out: dict[str, object] = {
        "ociVersion": SPEC_VERSION_MAX,
        "id": record.id,
        "pid": record.pid if status != STOPPED else 0,
        "status": status,
        "bundle": record.bundle,
        "rootfs": record.rootfs,
        "created": record.created,
    }
    if record.annotations:
        out["annotations"] = record.annotations
    out["owner"] = owner
    return out


def _owner_name(uid: int) -> str:
    import pwd

    try:
        return pwd.getpwuid(uid).pw_name
    except KeyError:
        return f"#{uid}"


def cmd_state(g: Globals, opts: dict[str, object], args: list[str]) -> int:
    """``state ID``: the state document, with the status checked against the kernel."""
    store = Store(g.root)
    record = store.load(args[0])
    doc = state_document(record, live_status(record))
    sys.stdout.write(jsonio.dumps(doc, indent=2) + "\n")
    return 0


def cmd_list(g: Globals, opts: dict[str, object], args: list[str]) -> int:
    """``list [--format table|json] [-q]``."""
    fmt = str(opts.get("format", "table"))
    if fmt not in ("table", "json"):
        from ...errors import ConfigError

        raise ConfigError(f"invalid --format `{fmt}`: table or json", what="format")
    store = Store(g.root)
    rows = []
    owners: dict[int, str] = {}
    for record in store.records():
        try:
            uid = store.owner(record.id)
        except OSError:
            continue  # deleted meanwhile
        if uid not in owners:
            owners[uid] = _owner_name(uid)
        rows.append(state_document(record, live_status(record), owners[uid]))
    out = sys.stdout
    if opts.get("quiet"):
        out.write("".join(f"{row['id']}\n" for row in rows))
    elif fmt == "json":
        out.write(jsonio.dumps(rows) + "\n")
    else:
        out.write(_table(["ID", "PID", "STATUS", "BUNDLE", "CREATED", "OWNER"], rows))
    return 0


def _table(header: list[str], rows: list[dict[str, object]]) -> str:
    """runc's table (Go's tabwriter: minimum width 12, padding 3; the last column not padded)."""
    cells = [header] + [
        [str(r["id"]), str(r["pid"]), str(r["status"]), str(r["bundle"]), str(r["created"]), str(r["owner"])]
        for r in rows
    ]
    widths = [max(12, *(len(row[i]) + 3 for row in cells)) for i in range(len(header) - 1)]
    return "".join("".join(c.ljust(w) for c, w in zip(row[:-1], widths, strict=True)) + row[-1] + "\n" for row in cells)


# ---- signals -----------------------------------------------------------------------------------


def signal_init(record: ContainerRecord, sig: int) -> bool:
    """Send *sig* to the container's init if it is still the recorded process; False if it is gone.

    The pidfd is opened first and the start time checked after: the
    descriptor then names that very process even if its pid is reused later.
    """
    try:
        fd = os.pidfd_open(record.pid)
    except OSError:
        return False
    try:
        if not process_alive(record.pid, record.starttime):
            return False
        if TYPE_CHECKING:
            from signal import pidfd_send_signal
        else:
            from _signal import pidfd_send_signal  # (`signal` makes an enum class at import)

        pidfd_send_signal(fd, sig)
        return True
    except ProcessLookupError:
        return False
    finally:
        os.close(fd)


def container_group(record: ContainerRecord) -> CGroup | None:
    """The container's cgroup, if it has one that still exists."""
    if record.cgroup is None:
        return None
    from ...cgroup import CGroup
    from ...errors import SyscallError

    try:
        return CGroup.open(record.cgroup)
    except SyscallError:
        return None


def _signal_all(record: ContainerRecord, sig: int) -> None:
    """Send *sig* to every process of the container's cgroup (frozen meanwhile, so none forks away)."""
    group = container_group(record)
    if group is None:
        signal_init(record, sig)
        return
    was_frozen = group.frozen
    if not was_frozen:
        group.freeze()
    try:
        for pid in group.procs(recursive=True):
            try:
                os.kill(pid, sig)
            except ProcessLookupError:
                pass
    finally:
        if not was_frozen or sig == SIGKILL:
            group.thaw()  # a killed process must run to die


def cmd_kill(g: Globals, opts: dict[str, object], args: list[str]) -> int:
    """``kill [--all] ID [SIGNAL]``."""
    from .signals import parse_signal

    sig = parse_signal(args[1] if len(args) > 1 else "TERM")
    with Store(g.root).lock(args[0]) as locked:
        record = locked.record
        status = live_status(record)
        if opts.get("all"):
            _signal_all(record, sig)
            return 0
        if status in (STOPPED, CREATING):
            raise state_error("kill", record, status, "a container is signalled while created, running or paused")
        if not signal_init(record, sig):
            raise state_error("kill", record, STOPPED)
    return 0


# ---- delete ------------------------------------------------------------------------------------


def _wait_gone(record: ContainerRecord, timeout: float) -> bool:
    """Wait until the init has ended (a zombie counts: its parent reaps it)."""
    import select

    try:
        fd = os.pidfd_open(record.pid)
    except OSError:
        return True
    try:
        if not process_alive(record.pid, record.starttime):
            return True
        poller = select.poll()
        poller.register(fd, select.POLLIN)
        return bool(poller.poll(int(timeout * 1000)))
    finally:
        os.close(fd)


def _destroy(g: Globals, locked: LockedContainer) -> None:
    """Kill what is left of the container, remove its cgroup and its directory."""
    record = locked.record
    if record.cgroup_dirs and not (record.pid > 0 and process_alive(record.pid, record.starttime)):
        # The usual delete: the init has ended and its groups are empty, so rmdir is all there is to do
        # (without the cgroup layer); a busy group is killed and removed below.
        from ...kept import remove_groups

        if remove_groups(record.cgroup_dirs):
            remove_default_parent_dirs(record.cgroup, record.cgroup_dirs)
            g.log.debug(f"deleted container `{record.id}` ({record.status}, pid {record.pid})")
            locked.remove()
            return
    if record.pid > 0:
        signal_init(record, SIGKILL)
    group = container_group(record)
    if group is not None:
        if group.frozen:
            group.thaw()
        group.kill(SIGKILL, timeout=KILL_TIMEOUT)
    if record.pid > 0 and not _wait_gone(record, KILL_TIMEOUT):
        import errno

        from ...errors import SyscallError

        raise SyscallError(errno.EBUSY, "delete", locked.path, hint=f"pid {record.pid} did not end after SIGKILL")
    if group is not None:
        group.delete(recursive=True, timeout=KILL_TIMEOUT)
    from .cgroups import remove_default_parent

    remove_default_parent(record.cgroup)
    g.log.debug(f"deleted container `{record.id}` ({record.status}, pid {record.pid})")
    locked.remove()


def _poststop(g: Globals, locked: LockedContainer) -> object:
    """The ``poststop`` hooks the kept spec has (read before the directory goes), or None."""
    if not locked.record.extra.get("poststop"):
        return None
    from ..spec import Spec

    try:
        return Spec.load(os.path.join(locked.path, "config.json")).hooks
    except Exception as exc:  # the hooks cannot be found: say so, delete all the same
        g.log.warning(f"delete container `{locked.id}`: its poststop hooks: {exc}")
        return None


def delete_container(g: Globals, container_id: str, *, force: bool) -> None:
    """Delete a container (``delete``'s work): see the module's documentation."""
    try:
        locked = Store(g.root).lock(container_id, missing_ok=force)
    except Exception as exc:  # (the errors module is imported only for an error)
        from ...errors import ContainerNotFoundError

        if force and isinstance(exc, ContainerNotFoundError):
            return
        raise
    with locked:
        if not locked.has_record:
            locked.remove()  # a create that died before it wrote anything
            return
        record = locked.record
        status = live_status(record)
        if status in (RUNNING, PAUSED, CREATING) and not force:
            raise state_error("delete", record, status, "stop it first, or use --force")
        hooks = _poststop(g, locked)
        _destroy(g, locked)
        if hooks is not None:
            from .hooks import run_hooks

            run_hooks("poststop", hooks.poststop, state_document(record, STOPPED), g.log)  # type: ignore[attr-defined]


def cmd_delete(g: Globals, opts: dict[str, object], args: list[str]) -> int:
    """``delete [--force] ID``."""
    delete_container(g, args[0], force=bool(opts.get("force")))
    return 0


# ---- processes, freezer ------------------------------------------------------------------------


def cmd_ps(g: Globals, opts: dict[str, object], args: list[str]) -> int:
    """``ps [--format table|json] ID [ps options]``: the container's processes (its cgroup's)."""
    fmt = str(opts.get("format", "table"))
    if fmt not in ("table", "json"):
        from ...errors import ConfigError

        raise ConfigError(f"invalid --format `{fmt}`: table or json", what="format")
    record = Store(g.root).load(args[0])
    group = container_group(record)
    if group is not None:
        pids = group.procs(recursive=True)
    else:
        pids = [record.pid] if process_alive(record.pid, record.starttime) else []
    if fmt == "json":
        sys.stdout.write(jsonio.dumps(pids) + "\n")
        return 0
    import subprocess

    ps_args = args[1:] or ["-ef"]
    try:
        output = subprocess.run(["ps", *ps_args], capture_output=True, check=True, text=True).stdout
    except FileNotFoundError:
        from ...errors import UnsupportedError

        raise UnsupportedError(
            "ps: `ps` is not installed (Debian package procps); --format json works without it"
        ) from None
    except subprocess.CalledProcessError as exc:
        from ...errors import ConfigError

        raise ConfigError(f"ps {' '.join(ps_args)}: {exc.stderr.strip() or 'failed'}", what="ps options") from None
    lines = output.splitlines()
    if not lines:
        return 0
    header = lines[0].split()
    if "PID" not in header:
        from ...errors import ConfigError

        raise ConfigError(f"ps {' '.join(ps_args)}: its output has no PID column", what="ps options")
    column = header.index("PID")
    wanted = {str(p) for p in pids}
    rows = [line for line in lines[1:] if len(f := line.split()) > column and f[column] in wanted]
    sys.stdout.write("\n".join([lines[0], *rows]) + "\n")
    return 0


def _freezer(verb: str, g: Globals, args: list[str], wanted: str, new_status: str) -> int:
    with Store(g.root).lock(args[0]) as locked:
        record = locked.record
        status = live_status(record)
        if status != wanted:
            raise state_error(verb, record, status, f"{verb} needs a {wanted} container")
        group = container_group(record)
        if group is None:
            from ...errors import UnsupportedError

            raise UnsupportedError(f"{verb} container `{record.id}`: it has no cgroup to freeze", feature="freezer")
        if new_status == PAUSED:
            group.freeze()
        else:
            group.thaw()
        locked.save(record.replace(status=new_status))
    return 0


def cmd_pause(g: Globals, opts: dict[str, object], args: list[str]) -> int:
    """``pause ID``: freeze the container's cgroup."""
    return _freezer("pause", g, args, RUNNING, PAUSED)


def cmd_resume(g: Globals, opts: dict[str, object], args: list[str]) -> int:
    """``resume ID``: thaw it."""
    return _freezer("resume", g, args, PAUSED, RUNNING)


# ---- spec --------------------------------------------------------------------------------------


def cmd_spec(g: Globals, opts: dict[str, object], args: list[str]) -> int:
    """``spec [--rootless] [--bundle DIR]``: write ``config.json`` as runc does, never over an existing one."""
    from ..generate import default_spec

    bundle = str(opts.get("bundle") or ".")
    path = os.path.join(bundle, "config.json")
    text = jsonio.dumps(default_spec(rootless=bool(opts.get("rootless"))).to_dict(), indent="\t")
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC | os.O_NOFOLLOW, 0o644)
    except FileExistsError:
        from ...errors import ConfigError

        raise ConfigError(f"write `{path}`: File exists (remove it first)", what="bundle") from None
    except OSError as exc:
        from ...errors import SyscallError

        raise SyscallError(exc.errno or 0, "write", path) from None
    with os.fdopen(fd, "w") as f:
        f.write(text)
    return 0
