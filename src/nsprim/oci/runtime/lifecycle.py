"""``create``, ``start`` and ``run``: a bundle's container from its spec to its running process.

``create`` checks the spec (what nsprim cannot honour is refused by name,
before anything is made), records the container as ``creating`` (the record
names the cgroup before the group exists, so ``delete --force`` can clean up
after a runtime killed half-way), makes its group, and clones the init with
the plan of :func:`nsprim.oci.convert.bundle_plan`, which ends in a
:class:`~nsprim.handoff.WaitStart` on ``<state dir>/start.sock``.  Once the
init says it is ready it records ``created``, writes ``--pid-file`` and exits:
the init is reparented to the engine, its subreaper.  While ``create`` runs,
the cleanup watcher removes the group should ``create`` be killed; it forgets
the group before ``create`` exits.

``start`` connects to ``start.sock`` and sends one byte; the init's exec
closes the connection, a failure after the start writes its record to it.
``run`` is both in one process, which is then the init's parent: it waits
for it, passes signals on, and deletes the container after it ended (not
with ``--keep``; ``--detach`` returns after the start).
"""

from __future__ import annotations

import os

from .created import LIFT as _LIFT
from .created import SECCOMP_CACHE, START_SOCKET, Created, start_socket
from .created import unix_socket as _unix_socket
from .store import (
    CREATED,
    CREATING,
    RUNNING,
    STOPPED,
    ContainerRecord,
    LockedContainer,
    Store,
    live_status,
    process_starttime,
)

TYPE_CHECKING = False
if TYPE_CHECKING:
    import socket

    from ...cgroup import CGroup
    from ...kept import QuickProcess
    from ...process import Process
    from ..spec import Spec
    from .cli import Globals

__all__ = [
    "cmd_create",
    "cmd_start",
    "cmd_run",
    "create_container",
    "Created",
    "START_SOCKET",
    "SPEC_FILE",
    "write_pid_file",
    "start_failure",
    "connect_console",
    "lift_fd",
    "open_console",
    "engine_error",
    "start_created",
]

#: The spec as ``create`` read it, kept for ``exec`` and the ``poststop`` hooks.
SPEC_FILE = "config.json"


def write_pid_file(path: str, pid: int) -> None:
    """Write *pid* to *path* through a temporary file renamed over it (a reader never sees half)."""
    path = os.path.abspath(path)
    tmp = os.path.join(os.path.dirname(path), f".{os.path.basename(path)}.{os.getpid()}.tmp")
    try:
        with open(tmp, "w") as f:
            f.write(str(pid))
        os.rename(tmp, path)
    except OSError as exc:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        from ...errors import SyscallError

        raise SyscallError(exc.errno or 0, "write", path) from None


def connect_console(path: str) -> socket.socket:
    """A socket connected to the engine's ``--console-socket`` *path* (any length)."""
    parent = os.open(os.path.dirname(os.path.abspath(path)) or "/", os.O_PATH | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        raw = _unix_socket(parent, os.path.basename(path), listen=False)
    except OSError as exc:
        from ...errors import SyscallError

        raise SyscallError(exc.errno or 0, "connect", path, hint="the --console-socket") from None
    finally:
        os.close(parent)
    import socket

    return socket.socket(fileno=raw.detach())


def lift_fd(fd: int, floor: int) -> int:
    """A close-on-exec copy of *fd* at or above *floor* (out of the way of the fds a plan places)."""
    import fcntl

    return fcntl.fcntl(fd, fcntl.F_DUPFD_CLOEXEC, floor)


def open_console(console: object, floor: int, opened: list[int]) -> int:
    """The ``--console-socket`` connected and lifted above *floor* (added to *opened*); -1 without one."""
    if not console:
        return -1
    sock = connect_console(str(console))
    try:
        fd = lift_fd(sock.fileno(), floor)
    finally:
        sock.close()
    opened.append(fd)
    return fd


def engine_error(exc: BaseException) -> BaseException:
    """A failed exec or lookup in the words engines map to exit codes (podman's 126 and 127)."""
    from ...errors import ExecutableNotFoundError, SyscallError
    from ...plan import Exec

    if isinstance(exc, ExecutableNotFoundError) and isinstance(exc.step, Exec):
        file = os.fspath(exc.step.file)
        if "/" not in str(file):
            return SyscallError(
                exc.errno, "exec", detail=f"exec `{file}`: executable file not found in $PATH `{exc.step.searched()}`"
            )
    return exc


def start_failure(record: ContainerRecord, index: int, kind: int, err: int) -> Exception:
    """The error for a step that failed after the start, in the words engines map to exit codes."""
    from ...errors import SyscallError

    table = record.extra.get("start_steps")
    text = os.strerror(err)
    if isinstance(table, list) and table:
        base = int(table[0][0])
        if 0 <= index - base < len(table) - 1:
            k, words, file, searched = table[index - base + 1]
            if k == kind:
                if file and err == 2 and "/" not in str(file):  # (podman's 127: "executable file not found")
                    return SyscallError(
                        err, "exec", detail=f"exec `{file}`: executable file not found in $PATH `{searched}`"
                    )
                return SyscallError(err, str(words).split(" ", 1)[0], detail=f"{words}: {text}")
    return SyscallError(err, "start", detail=f"start container `{record.id}`: step {index} failed: {text}")


def _state(record: ContainerRecord, status: str) -> dict[str, object]:
    from .commands import state_document

    return state_document(record, status)


def _cleanup(
    locked: LockedContainer, proc: Process | QuickProcess | None, group: CGroup | None, dirs: tuple[str, ...] = ()
) -> None:
    """Undo a failed create: the init killed and reaped, the group and the directory removed."""
    import contextlib

    if proc is not None:
        with contextlib.suppress(Exception):
            proc.kill()
            proc.wait()
    if group is None and dirs:
        from .replay import undo

        undo(locked, None, list(dirs), locked.record.cgroup if locked.has_record else None)
        return
    if group is not None:
        with contextlib.suppress(Exception):
            group.kill()
            group.delete(recursive=True, timeout=5.0)
        from .cgroups import remove_default_parent

        remove_default_parent(group.path)
        from ..._sys import watcher

        with contextlib.suppress(Exception):
            watcher.forget_cgroups(group.directories.values())
    with contextlib.suppress(Exception):
        locked.remove()
    locked.close()


def create_container(g: Globals, opts: dict[str, object], container_id: str) -> Created:
    """Everything ``create`` does but its last words (the pid file, the watcher let go).

    A spec whose program is kept (:mod:`.replay`) is created from it; one that can have a program gets
    it built and kept; any other, and a program that met what it did not foresee, the general way."""
    from .store import validate_id

    validate_id(container_id)
    bundle = os.path.abspath(str(opts.get("bundle") or "."))
    if os.path.isdir(bundle):
        from . import replay

        found = replay.lookup(bundle, container_id, opts)
        if found is not None:
            kept = replay.load(g.root, found.key)
            if kept is None:
                from .program import compile_program

                try:
                    compiled = compile_program(g, opts, container_id, found)
                except Exception as exc:
                    from ...errors import NsprimError

                    if isinstance(exc, NsprimError):
                        raise  # the spec's error, as the general way would raise it
                    g.log.debug(f"create `{container_id}`: no program ({type(exc).__name__}: {exc})")
                    compiled = None
                if compiled is not None:
                    kept, keep = compiled
                    if keep:
                        replay.store_program(g.root, found.key, kept)
            if kept is not None:
                try:
                    created = replay.execute(g, opts, container_id, found, kept)
                    assert isinstance(created, Created)
                    return created
                except replay.Fallback as why:
                    g.log.debug(f"create `{container_id}`: its kept program does not apply ({why})")
    return _create_general(g, opts, container_id)


def _create_general(g: Globals, opts: dict[str, object], container_id: str) -> Created:
    from pathlib import Path

    from ..convert import Handoff, bundle_plan
    from ..honour import check_spec
    from ..spec import Spec
    from .cgroups import apply_devices, check_resources
    from .store import validate_id

    validate_id(container_id)
    bundle = Path(os.path.abspath(str(opts.get("bundle") or ".")))
    if not bundle.is_dir():
        from ...errors import SpecError

        raise SpecError(f"bundle `{bundle}`: No such directory", field="bundle")
    spec = Spec.load(bundle / "config.json")
    rootfs = check_spec(spec, bundle)
    limits = check_resources(spec.linux.resources if spec.linux is not None else None)
    process = spec.process
    assert process is not None
    console = opts.get("console_socket")
    if process.terminal and not console:
        from ...errors import SpecError

        raise SpecError("process.terminal: a terminal needs --console-socket", field="process.terminal")
    preserve = int(opts.get("preserve_fds") or 0)  # type: ignore[call-overload]
    from .cgroups import cgroup_path

    me = os.getpid()
    record = ContainerRecord(
        id=container_id, bundle=str(bundle), status=CREATING, creator_pid=me,
        creator_starttime=process_starttime(me) or 0, rootfs=str(rootfs), cgroup=cgroup_path(spec, container_id),
        annotations=dict(spec.annotations),
    )  # fmt: skip
    locked = Store(g.root).create(record)
    proc: Process | None = None
    group: CGroup | None = None
    opened: list[int] = []
    try:
        with open(os.path.join(locked.path, SPEC_FILE), "w") as f:
            f.write(spec.dumps(indent=None))
        from ..._sys import watcher
        from .cgroups import create_group

        group = create_group(spec, container_id, watcher.watch_cgroups, limits, forget=watcher.forget_cgroups)
        record = record.replace(cgroup_dirs=tuple(str(d) for d in group.directories.values()))
        locked.save(record)
        floor = _LIFT + preserve
        listener = _unix_socket(locked.dirfd, START_SOCKET, listen=True)
        opened.append(lift_fd(listener.fileno(), floor))
        listener.close()
        console_fd = open_console(console, floor, opened)
        hooks = spec.hooks
        early = bool(hooks and (hooks.prestart or hooks.create_runtime))
        handoff = Handoff(opened[0], console_fd, preserve, bool(opts.get("no_pivot")))
        own = {str(h.mount_point): d for h, d in group.directories.items()}
        cache = os.path.join(g.root, SECCOMP_CACHE)
        plan = bundle_plan(spec, bundle, handoff, hooks=early, cgroup_dirs=own, seccomp_cache=cache)
        proc, record = _spawn(g, spec, plan, group, record, locked, early)
        apply_devices(group, limits.devices)  # the init waits for `start`, its /dev made
        for fd in opened:
            os.close(fd)
        opened.clear()
        if hooks and hooks.create_container:
            from .hooks import run_hooks

            run_hooks("createContainer", hooks.create_container, _state(record, CREATED), g.log)
        locked.save(record.replace(status=CREATED))
        return Created(locked, locked.record, proc, group)
    except BaseException:
        for fd in opened:
            os.close(fd)
        _cleanup(locked, proc, group)
        raise


def _spawn(
    g: Globals, spec: Spec, plan: object, group: CGroup, record: ContainerRecord, locked: LockedContainer, early: bool
) -> tuple[Process, ContainerRecord]:
    from ... import lowlevel
    from ...handoff import WaitStart
    from ...plan import Plan
    from ..convert import BundlePlan
    from .cgroups import placement
    from .program import start_steps

    assert isinstance(plan, BundlePlan)
    joins, cgroup_fd = placement(group)
    actions: list[lowlevel.ParentAction] = []
    if plan.uid_map is not None or plan.gid_map is not None:
        from ...idmap import write_id_maps  # (not spawning's id_map_writer: that module costs 3 ms to import)

        uid_map, gid_map, deny = plan.uid_map, plan.gid_map, os.geteuid() != 0
        actions.append(lambda pid: write_id_maps(pid, uid_map, gid_map, deny_setgroups=deny))
    if early:
        from .hooks import run_hooks

        hooks = spec.hooks
        assert hooks is not None

        def runtime_hooks(pid: int) -> None:
            state = _state(record.replace(pid=pid, starttime=process_starttime(pid) or 0, status=CREATED), CREATING)
            run_hooks("prestart", hooks.prestart, state, g.log)
            run_hooks("createRuntime", hooks.create_runtime, state, g.log)

        actions.append(runtime_hooks)
    prefix = Plan(tuple(joins))
    body = Plan(plan.steps)
    try:
        proc = lowlevel.start(
            body, prefix=prefix, clone_flags=plan.clone_flags, cgroup_fd=cgroup_fd, pidns_fd=plan.pidns_fd,
            parent_actions=actions,
        )  # fmt: skip
    except Exception as exc:
        raise engine_error(exc) from None
    finally:
        if cgroup_fd >= 0:
            os.close(cgroup_fd)
        for ns in plan.joined:
            ns.close()
    base = len(prefix.steps) + next(i for i, s in enumerate(plan.steps) if isinstance(s, WaitStart)) + 1
    after = plan.steps[base - len(prefix.steps) :]
    extra = dict(record.extra, start_steps=start_steps(after, base))
    if spec.hooks is not None and spec.hooks.poststop:
        extra["poststop"] = True
    record = record.replace(pid=proc.pid, starttime=process_starttime(proc.pid) or 0, status=CREATED, extra=extra)
    locked.save(record.replace(status=CREATING))
    g.log.debug(f"created container `{record.id}`: init pid {proc.pid}")
    return proc, record


def _let_go(created: Created, opts: dict[str, object]) -> None:
    """The last words of create: the pid file, and nothing of ours left to end the container."""
    pid_file = opts.get("pid_file")
    if pid_file:
        write_pid_file(str(pid_file), created.record.pid)
    if created.cgroup_dirs:
        from ..._sys import watcher

        watcher.forget_cgroups(created.cgroup_dirs)


def cmd_create(g: Globals, opts: dict[str, object], args: list[str]) -> int:
    """``create [--bundle B] [--pid-file F] [--console-socket S] [--no-pivot] [--preserve-fds N] ID``."""
    created = create_container(g, opts, args[0])
    try:
        _let_go(created, opts)
    except BaseException:
        _cleanup(created.locked, created.proc, created.group, created.cgroup_dirs)
        raise
    created.locked.close()
    created.proc.release()  # the engine (a subreaper) reaps the init: its exit status is the engine's
    return 0


def _start(g: Globals, locked: LockedContainer, *, native: bool = False) -> None:
    """Release a created container's init; raise if a step after the start failed.  *native*: connect
    through the C core (loaded already by a create in this process; ``start`` alone loads ``_socket``)."""
    from ..._start_report import read_start_report

    record = locked.record
    status = live_status(record)
    if status != CREATED:
        from ...errors import ContainerStateError

        raise ContainerStateError(
            f"start container `{record.id}`: it is {status} (start needs a created container)",
            container_id=record.id, status=status,
        )  # fmt: skip
    spec = _spec_if(locked, record, "startContainer")
    if spec is not None and spec.hooks is not None and spec.hooks.start_container:
        from .hooks import run_hooks

        try:
            run_hooks("startContainer", spec.hooks.start_container, _state(record, CREATED), g.log)
        except BaseException:
            _stop(record)
            raise
    try:
        if native:
            conn = start_socket(locked.dirfd, listen=False)
        else:
            conn = _unix_socket(locked.dirfd, START_SOCKET, listen=False).detach()
    except OSError as exc:
        from ...errors import SyscallError

        raise SyscallError(exc.errno or 0, "connect", os.path.join(locked.path, START_SOCKET),
                           hint="the init's start socket") from None  # fmt: skip
    try:
        os.write(conn, b"s")
        report = read_start_report(conn)
    finally:
        os.close(conn)
    try:
        os.unlink(START_SOCKET, dir_fd=locked.dirfd)
    except OSError:
        pass
    if report is not None:
        locked.save(record.replace(status=STOPPED))
        raise start_failure(record, report.index, report.kind, report.errno)
    locked.save(record.replace(status=RUNNING))
    if spec is not None and spec.hooks is not None and spec.hooks.poststart:
        from .hooks import run_hooks

        run_hooks("poststart", spec.hooks.poststart, _state(record, RUNNING), g.log)


def _spec_if(locked: LockedContainer, record: ContainerRecord, kind: str) -> Spec | None:
    """The spec ``create`` kept, if it has hooks (read only then: start must stay cheap)."""
    try:
        with open(os.path.join(locked.path, SPEC_FILE), "rb") as f:
            data = f.read()
    except OSError:
        return None
    if b'"hooks"' not in data:
        return None
    from ..spec import Spec

    return Spec.loads(data, source=os.path.join(locked.path, SPEC_FILE))


def _stop(record: ContainerRecord) -> None:
    from .commands import SIGKILL, signal_init

    signal_init(record, SIGKILL)


def cmd_start(g: Globals, opts: dict[str, object], args: list[str]) -> int:
    """``start ID``."""
    with Store(g.root).lock(args[0]) as locked:
        _start(g, locked)
    return 0


_FORWARDED = ("SIGTERM", "SIGINT", "SIGHUP", "SIGQUIT", "SIGUSR1", "SIGUSR2", "SIGWINCH")


def start_created(g: Globals, created: Created, opts: dict[str, object] | None = None) -> None:
    """``create``'s last words (*opts*' pid file), then ``start``; on a failure nothing is left."""
    try:
        _let_go(created, opts or {})
        _start(g, created.locked, native=True)
    except BaseException:
        _cleanup(created.locked, created.proc, created.group, created.cgroup_dirs)
        raise


def cmd_run(g: Globals, opts: dict[str, object], args: list[str]) -> int:
    """``run [create options] [--detach] [--keep] ID``: create, start, wait, delete."""
    if TYPE_CHECKING:
        import signal
    else:
        import _signal as signal  # (`signal` makes three enum classes at import)

    created = create_container(g, opts, args[0])
    start_created(g, created, opts)
    if opts.get("detach"):
        created.locked.close()
        created.proc.release()
        return 0
    proc = created.proc
    for name in _FORWARDED:
        signal.signal(getattr(signal, name), lambda sig, _frame: proc.send_signal(sig))
    created.locked.close()
    status = proc.wait()
    if not opts.get("keep"):
        from .commands import delete_container

        delete_container(g, args[0], force=True)
    return status if status >= 0 else 128 - status
